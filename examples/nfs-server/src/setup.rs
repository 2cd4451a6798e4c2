//! Building the NFS and MOUNT services of one export, and the handle key.

use crate::export::Export;
use crate::mount::Mount;
use crate::nfs::{Nfs, NfsConfig};
use rdmaxprt::service::Dispatcher;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// The local directory exported.
    pub dir: PathBuf,
    /// The path clients name in MNT (e.g. `/export`).
    pub mount_path: String,
    /// The handle MAC key (keep it to keep handles valid across restarts).
    pub key: [u8; 16],
    /// Export id, sealed in every handle (and reported as `fsid`).
    pub export_id: u32,
    /// NFS options (read-only, squashing, transfer sizes).
    pub nfs: NfsConfig,
}

/// The two dispatchers of an export: NFS (for the RDMA transport) and
/// MOUNT (for TCP).
#[derive(Debug)]
pub struct Services {
    /// The export both serve.
    pub export: Arc<Export>,
    /// NFS program 100003 v3.
    pub nfs: Dispatcher,
    /// MOUNT program 100005 v3.
    pub mount: Dispatcher,
}

impl Services {
    /// Opens the export and builds its services.
    pub fn new(cfg: &ExportConfig) -> io::Result<Self> {
        let export = Arc::new(Export::open(&cfg.dir, cfg.key, cfg.export_id)?);
        let nfs_cfg = NfsConfig {
            fsid: u64::from(cfg.export_id),
            ..cfg.nfs
        };
        Ok(Self {
            nfs: Dispatcher::new().with(Nfs::new(export.clone(), nfs_cfg)),
            mount: Dispatcher::new().with(Mount::new(export.clone(), cfg.mount_path.clone())),
            export,
        })
    }
}

/// Reads the 16-byte handle key from `path`, creating it (from
/// `/dev/urandom`, mode 0600) if it does not exist.
pub fn load_or_create_key(path: &Path) -> io::Result<[u8; 16]> {
    let mut key = [0u8; 16];
    match std::fs::File::open(path) {
        Ok(mut f) => {
            f.read_exact(&mut key)?;
            return Ok(key);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(key)
}
