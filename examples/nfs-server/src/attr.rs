//! Attributes (`fattr3`, `wcc_attr`) from `statx`, and the AUTH_SYS
//! credential the server acts for.

use nfs3_types::nfs3::{fattr3, ftype3, nfstime3, specdata3, wcc_attr, wcc_data, Nfs3Option};
use rdmaxprt_core::oncrpc::Credential;
use rustix::fs::{FileType, Statx, StatxTimestamp};

fn time(t: &StatxTimestamp) -> nfstime3 {
    nfstime3 {
        seconds: t.tv_sec.clamp(0, i64::from(u32::MAX)) as u32,
        nseconds: t.tv_nsec,
    }
}

/// The NFS type of a `statx` mode.
pub fn ftype(st: &Statx) -> ftype3 {
    match FileType::from_raw_mode(st.stx_mode.into()) {
        FileType::Directory => ftype3::NF3DIR,
        FileType::Symlink => ftype3::NF3LNK,
        FileType::BlockDevice => ftype3::NF3BLK,
        FileType::CharacterDevice => ftype3::NF3CHR,
        FileType::Socket => ftype3::NF3SOCK,
        FileType::Fifo => ftype3::NF3FIFO,
        _ => ftype3::NF3REG,
    }
}

/// `fattr3` of an object; `fsid` is the export id.
pub fn fattr(st: &Statx, fsid: u64) -> fattr3 {
    fattr3 {
        type_: ftype(st),
        mode: u32::from(st.stx_mode) & 0o7777,
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        size: st.stx_size,
        used: st.stx_blocks.saturating_mul(512),
        rdev: specdata3 {
            specdata1: st.stx_rdev_major,
            specdata2: st.stx_rdev_minor,
        },
        fsid,
        fileid: st.stx_ino,
        atime: time(&st.stx_atime),
        mtime: time(&st.stx_mtime),
        ctime: time(&st.stx_ctime),
    }
}

/// `wcc_attr` (pre-operation attributes).
pub fn wcc(st: &Statx) -> wcc_attr {
    wcc_attr {
        size: st.stx_size,
        mtime: time(&st.stx_mtime),
        ctime: time(&st.stx_ctime),
    }
}

/// `wcc_data` from attributes before and after an operation.
pub fn wcc_data(before: Option<&Statx>, after: Option<&Statx>, fsid: u64) -> wcc_data {
    wcc_data {
        before: before.map_or(Nfs3Option::None, |s| Nfs3Option::Some(wcc(s))),
        after: after.map_or(Nfs3Option::None, |s| Nfs3Option::Some(fattr(s, fsid))),
    }
}

/// The identity a call acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub gids: Vec<u32>,
}

/// How AUTH_SYS identities are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Squash {
    /// Map every caller (and AUTH_NONE) to the anonymous ids.
    pub all: bool,
    /// Anonymous user id.
    pub anon_uid: u32,
    /// Anonymous group id.
    pub anon_gid: u32,
}

impl Default for Squash {
    fn default() -> Self {
        Self {
            all: true,
            anon_uid: 65534,
            anon_gid: 65534,
        }
    }
}

impl Squash {
    /// The identity a call with credential `c` acts as.
    pub fn cred(&self, c: &Credential<'_>) -> Cred {
        match c {
            Credential::Sys(s) if !self.all => Cred {
                uid: s.uid,
                gid: s.gid,
                gids: s.gids.iter().collect(),
            },
            _ => Cred {
                uid: self.anon_uid,
                gid: self.anon_gid,
                gids: Vec::new(),
            },
        }
    }
}

/// Read permission bit.
pub const R: u32 = 4;
/// Write permission bit.
pub const W: u32 = 2;
/// Execute / search permission bit.
pub const X: u32 = 1;

impl Cred {
    /// Whether the mode bits of `st` grant `want` (a mask of [`R`], [`W`],
    /// [`X`]) to this identity (root: everything but execute of a file no
    /// one may execute).
    pub fn may(&self, st: &Statx, want: u32) -> bool {
        let mode = u32::from(st.stx_mode);
        if self.uid == 0 {
            let is_dir = FileType::from_raw_mode(mode) == FileType::Directory;
            return want & X == 0 || is_dir || mode & 0o111 != 0;
        }
        let bits = if st.stx_uid == self.uid {
            mode >> 6
        } else if st.stx_gid == self.gid || self.gids.contains(&st.stx_gid) {
            mode >> 3
        } else {
            mode
        } & 7;
        bits & want == want
    }

    /// Whether this identity owns `st` (or is root).
    pub fn owns(&self, st: &Statx) -> bool {
        self.uid == 0 || st.stx_uid == self.uid
    }
}
