//! The exported directory: turns handles into objects without ever
//! leaving it.
//!
//! An object is reached from the export root's file descriptor by
//! `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)`, one checked name at a time
//! (never `..`, never a name with `/`, never through a symbolic link), then
//! `statx(AT_SYMLINK_NOFOLLOW)`; its inode number and birth time must be
//! those in the handle, and its device the export's. Where it is comes
//! from a cache filled by LOOKUP, READDIRPLUS and the create procedures;
//! on a miss or a mismatch (a restarted server, a renamed directory) the
//! export is searched for the inode, and a handle found nowhere is stale.

use crate::fh::{FhError, FileId, HandleCodec};
use nfs3_types::nfs3::nfsstat3;
use rustix::fs::{openat, statx, AtFlags, Dir, FileType, Mode, OFlags, Statx, StatxFlags};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

/// Most handles whose place is remembered (the cache starts over past it).
const CACHE_CAP: usize = 1 << 20;

/// An NFS result status other than NFS3_OK.
pub type Status = nfsstat3;

/// Maps an errno to the NFSv3 status nfsd would answer.
pub fn status(e: Errno) -> Status {
    match e {
        Errno::NOENT => nfsstat3::NFS3ERR_NOENT,
        Errno::ACCESS => nfsstat3::NFS3ERR_ACCES,
        Errno::PERM => nfsstat3::NFS3ERR_PERM,
        Errno::EXIST => nfsstat3::NFS3ERR_EXIST,
        Errno::NOTDIR => nfsstat3::NFS3ERR_NOTDIR,
        Errno::ISDIR => nfsstat3::NFS3ERR_ISDIR,
        Errno::INVAL | Errno::LOOP => nfsstat3::NFS3ERR_INVAL,
        Errno::FBIG => nfsstat3::NFS3ERR_FBIG,
        Errno::NOSPC => nfsstat3::NFS3ERR_NOSPC,
        Errno::ROFS => nfsstat3::NFS3ERR_ROFS,
        Errno::MLINK => nfsstat3::NFS3ERR_MLINK,
        Errno::NAMETOOLONG => nfsstat3::NFS3ERR_NAMETOOLONG,
        Errno::NOTEMPTY => nfsstat3::NFS3ERR_NOTEMPTY,
        Errno::DQUOT => nfsstat3::NFS3ERR_DQUOT,
        Errno::XDEV => nfsstat3::NFS3ERR_XDEV,
        Errno::STALE => nfsstat3::NFS3ERR_STALE,
        _ => nfsstat3::NFS3ERR_IO,
    }
}

/// Longest name accepted (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// Checks a name a client sends for an entry to create, remove or rename:
/// one component, not `.` or `..`.
pub fn entry_name(name: &[u8]) -> Result<CString, Status> {
    match name {
        b"" => Err(nfsstat3::NFS3ERR_ACCES),
        b"." | b".." => Err(nfsstat3::NFS3ERR_INVAL),
        n if n.len() > NAME_MAX => Err(nfsstat3::NFS3ERR_NAMETOOLONG),
        n if n.contains(&b'/') => Err(nfsstat3::NFS3ERR_ACCES),
        n => CString::new(n).map_err(|_| nfsstat3::NFS3ERR_ACCES),
    }
}

/// One object of the export, found and checked.
#[derive(Debug)]
pub struct Node {
    /// Names from the export root to the object (empty for the root).
    pub path: Vec<CString>,
    /// Its directory (the root's own descriptor for the root), `O_PATH`.
    pub dir: OwnedFd,
    /// Its name in `dir` (`.` for the root).
    pub name: CString,
    /// Its attributes, read when it was found.
    pub st: Statx,
}

impl Node {
    /// Its identity.
    pub fn id(&self) -> FileId {
        file_id(&self.st)
    }

    /// Its type.
    pub fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.st.stx_mode.into())
    }

    /// Opens the object itself, never following a symbolic link.
    pub fn open(&self, flags: OFlags) -> Result<OwnedFd, Status> {
        openat(
            &self.dir,
            self.name.as_c_str(),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(status)
    }

    /// Opens it as a directory to work in (`O_PATH`).
    pub fn open_dir(&self) -> Result<OwnedFd, Status> {
        if self.kind() != FileType::Directory {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        self.open(OFlags::PATH | OFlags::DIRECTORY)
    }

    /// Reads its attributes again.
    pub fn restat(&mut self) -> Result<(), Status> {
        self.st = stat_at(&self.dir, &self.name).map_err(status)?;
        Ok(())
    }
}

/// The identity of an object from its attributes.
pub fn file_id(st: &Statx) -> FileId {
    FileId {
        ino: st.stx_ino,
        btime_sec: st.stx_btime.tv_sec,
        btime_nsec: st.stx_btime.tv_nsec,
    }
}

/// `statx` of `name` in `dir`, not following a symbolic link.
pub fn stat_at(dir: impl AsFd, name: &CStr) -> Result<Statx, Errno> {
    statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )
}

/// An exported directory.
#[derive(Debug)]
pub struct Export {
    root: OwnedFd,
    root_st: Statx,
    codec: HandleCodec,
    places: Mutex<HashMap<FileId, Vec<CString>>>,
    // Identities a search found nowhere: answered STALE without searching
    // again (a client retrying a removed file's handle would otherwise
    // make every retry walk the whole export). An identity seen again
    // (remembered) leaves the set.
    stale: Mutex<HashSet<FileId>>,
}

fn dev(st: &Statx) -> (u32, u32) {
    (st.stx_dev_major, st.stx_dev_minor)
}

impl Export {
    /// Opens `root` for export with handles sealed by `key`.
    pub fn open(root: &Path, key: [u8; 16], export_id: u32) -> std::io::Result<Self> {
        let fd = openat(
            rustix::fs::CWD,
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let root_st = stat_at(&fd, c".")?;
        Ok(Self {
            root: fd,
            root_st,
            codec: HandleCodec::new(key, export_id),
            places: Mutex::new(HashMap::new()),
            stale: Mutex::new(HashSet::new()),
        })
    }

    /// The device (major, minor) of the exported file system.
    pub fn dev(&self) -> (u32, u32) {
        dev(&self.root_st)
    }

    /// The export's root directory descriptor.
    pub fn root_fd(&self) -> &OwnedFd {
        &self.root
    }

    /// The handle of an object.
    pub fn handle(&self, st: &Statx) -> Vec<u8> {
        self.codec.encode(file_id(st)).to_vec()
    }

    /// The root's handle (what MNT answers).
    pub fn root_handle(&self) -> Vec<u8> {
        self.handle(&self.root_st)
    }

    /// Remembers where `st`'s object is.
    pub fn remember(&self, path: Vec<CString>, st: &Statx) {
        let mut p = self.places.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= CACHE_CAP {
            p.clear();
        }
        p.insert(file_id(st), path);
        drop(p);
        let mut s = self.stale.lock().unwrap_or_else(|e| e.into_inner());
        if !s.is_empty() {
            s.remove(&file_id(st));
        }
    }

    fn is_stale(&self, id: FileId) -> bool {
        let s = self.stale.lock().unwrap_or_else(|e| e.into_inner());
        s.contains(&id)
    }

    fn mark_stale(&self, id: FileId) {
        let mut s = self.stale.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= CACHE_CAP {
            s.clear();
        }
        s.insert(id);
    }

    fn walk(&self, path: &[CString]) -> Result<Node, Errno> {
        let (name, dirs) = match path.split_last() {
            Some((n, d)) => (n.clone(), d),
            None => (c".".to_owned(), &[][..]),
        };
        let mut dir = rustix::io::dup(&self.root)?;
        for c in dirs {
            dir = openat(
                &dir,
                c.as_c_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
        }
        let st = stat_at(&dir, &name)?;
        Ok(Node {
            path: path.to_vec(),
            dir,
            name,
            st,
        })
    }

    /// Finds the object a handle names.
    pub fn resolve(&self, fh: &[u8]) -> Result<Node, Status> {
        let id = self.codec.decode(fh).map_err(|e| match e {
            FhError::Bad => nfsstat3::NFS3ERR_BADHANDLE,
            FhError::OtherExport => nfsstat3::NFS3ERR_STALE,
        })?;
        let cached = {
            let p = self.places.lock().unwrap_or_else(|e| e.into_inner());
            if id == file_id(&self.root_st) {
                Some(Vec::new())
            } else {
                p.get(&id).cloned()
            }
        };
        let matches = |n: &Node| file_id(&n.st) == id && dev(&n.st) == dev(&self.root_st);
        if let Some(path) = cached {
            if let Ok(n) = self.walk(&path) {
                if matches(&n) {
                    return Ok(n);
                }
            }
        }
        if self.is_stale(id) {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let Some(path) = self.search(id) else {
            self.mark_stale(id);
            return Err(nfsstat3::NFS3ERR_STALE);
        };
        let n = self.walk(&path).map_err(|_| nfsstat3::NFS3ERR_STALE)?;
        if !matches(&n) {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        self.remember(path, &n.st);
        Ok(n)
    }

    /// The object `name` in directory `dir`, checked like a handle would be.
    pub fn child(&self, dir: &Node, name: &CStr) -> Result<Node, Status> {
        let fd = dir.open_dir()?;
        let st = stat_at(&fd, name).map_err(status)?;
        if dev(&st) != dev(&self.root_st) {
            // A mount point inside the export: not crossed.
            return Err(nfsstat3::NFS3ERR_XDEV);
        }
        let mut path = dir.path.clone();
        path.push(name.to_owned());
        Ok(Node {
            path,
            dir: fd,
            name: name.to_owned(),
            st,
        })
    }

    /// LOOKUP: `.`, `..` (never above the root) or an entry.
    pub fn lookup(&self, dir: &Node, name: &[u8]) -> Result<Node, Status> {
        if dir.kind() != FileType::Directory {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        let n = match name {
            b"." => self.walk(&dir.path).map_err(status)?,
            b".." => {
                let up = &dir.path[..dir.path.len().saturating_sub(1)];
                self.walk(up).map_err(status)?
            }
            _ => {
                let name = match entry_name(name) {
                    Err(nfsstat3::NFS3ERR_ACCES) => return Err(nfsstat3::NFS3ERR_NOENT),
                    r => r?,
                };
                self.child(dir, &name)?
            }
        };
        self.remember(n.path.clone(), &n.st);
        Ok(n)
    }

    /// Breadth-first search of the export for `id`, not following
    /// symbolic links nor crossing into other file systems.
    fn search(&self, id: FileId) -> Option<Vec<CString>> {
        let mut queue: VecDeque<(OwnedFd, Vec<CString>)> = VecDeque::new();
        queue.push_back((rustix::io::dup(&self.root).ok()?, Vec::new()));
        while let Some((fd, path)) = queue.pop_front() {
            let Ok(listing) = openat(
                &fd,
                c".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(Dir::new) else {
                continue;
            };
            for e in listing.flatten() {
                let name = e.file_name();
                if name == c"." || name == c".." {
                    continue;
                }
                let mut p = path.clone();
                p.push(name.to_owned());
                if e.ino() == id.ino {
                    if let Ok(st) = stat_at(&fd, name) {
                        if file_id(&st) == id && dev(&st) == dev(&self.root_st) {
                            return Some(p);
                        }
                    }
                }
                if e.file_type() == FileType::Directory {
                    if let Ok(sub) = openat(
                        &fd,
                        name,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        let same_dev = stat_at(&sub, c".")
                            .map(|s| dev(&s) == dev(&self.root_st))
                            .unwrap_or(false);
                        if same_dev {
                            queue.push_back((sub, p));
                        }
                    }
                }
            }
        }
        None
    }
}
