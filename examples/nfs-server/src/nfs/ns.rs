//! The namespace procedures: LOOKUP, CREATE, MKDIR, SYMLINK, REMOVE,
//! RMDIR, RENAME, LINK. Every name is one checked component, every call is
//! an `*at` system call on a directory descriptor reached without following
//! links (see `export`), so none of them can reach outside the export.

use super::{post_op, put, Nfs, Out};
use crate::args::DirOp;
use crate::attr::{self, Cred, W, X};
use crate::export::{entry_name, status, Node, Status};
use nfs3_types::nfs3::{self as n3, createhow3, nfsstat3, sattr3, Nfs3Option, Nfs3Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Statx};
use std::ffi::CString;
use std::os::fd::OwnedFd;

/// A directory about to change: the directory, its descriptor, its
/// attributes before, the checked name.
struct Change {
    dir: Node,
    fd: OwnedFd,
    name: CString,
}

/// What a directory-changing procedure reports about the directory.
struct DirWcc {
    before: Option<Statx>,
    after: Option<Statx>,
}

impl DirWcc {
    fn data(&self, fsid: u64) -> n3::wcc_data {
        attr::wcc_data(self.before.as_ref(), self.after.as_ref(), fsid)
    }
}

fn mode_of(a: &sattr3, default: u32) -> Mode {
    Mode::from_raw_mode(match a.mode {
        Nfs3Option::Some(m) => m & 0o7777,
        Nfs3Option::None => default,
    })
}

impl Nfs {
    /// Resolves a directory and a name in it for a change, checking the
    /// export is writable and the caller may write and search it.
    fn change(&self, cred: &Cred, at: DirOp<'_>, wcc: &mut DirWcc) -> Result<Change, Status> {
        let dir = self.export.resolve(at.dir)?;
        wcc.before = Some(dir.st);
        wcc.after = Some(dir.st);
        self.writable()?;
        if dir.kind() != FileType::Directory {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        if !cred.may(&dir.st, W | X) {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let name = entry_name(at.name)?;
        let fd = dir.open_dir()?;
        Ok(Change { dir, fd, name })
    }

    fn finish(&self, c: &mut Change, wcc: &mut DirWcc) {
        if c.dir.restat().is_ok() {
            wcc.after = Some(c.dir.st);
        }
    }

    /// A new object's handle and attributes, its place remembered.
    fn new_obj(&self, n: &Node) -> (n3::post_op_fh3, n3::post_op_attr) {
        self.export.remember(n.path.clone(), &n.st);
        (
            Nfs3Option::Some(n3::nfs_fh3 {
                data: self.export.handle(&n.st).into(),
            }),
            post_op(n, self.fsid()),
        )
    }

    pub(super) fn lookup(&self, cred: &Cred, at: DirOp<'_>, out: &mut Out) {
        let fsid = self.fsid();
        let mut dir_attr = Nfs3Option::None;
        let r = (|| {
            let dir = self.export.resolve(at.dir)?;
            dir_attr = post_op(&dir, fsid);
            if dir.kind() == FileType::Directory && !cred.may(&dir.st, X) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            self.export.lookup(&dir, at.name)
        })();
        let res: n3::LOOKUP3res = match r {
            Ok(n) => Nfs3Result::Ok(n3::LOOKUP3resok {
                object: n3::nfs_fh3 {
                    data: self.export.handle(&n.st).into(),
                },
                obj_attributes: post_op(&n, fsid),
                dir_attributes: dir_attr,
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::LOOKUP3resfail {
                    dir_attributes: dir_attr,
                },
            )),
        };
        put(out, &res);
    }

    pub(super) fn create(&self, cred: &Cred, at: DirOp<'_>, how: createhow3, out: &mut Out) {
        let mut wcc = DirWcc {
            before: None,
            after: None,
        };
        let r = (|| {
            let mut c = self.change(cred, at, &mut wcc)?;
            let base = OFlags::RDONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let (flags, attrs, verf) = match &how {
                createhow3::UNCHECKED(a) => (base, a.clone(), None),
                createhow3::GUARDED(a) => (base | OFlags::EXCL, a.clone(), None),
                createhow3::EXCLUSIVE(v) => (base | OFlags::EXCL, sattr3::default(), Some(v.0)),
            };
            let was_there = crate::export::stat_at(&c.fd, &c.name).is_ok();
            let made = rustix::fs::openat(&c.fd, c.name.as_c_str(), flags, mode_of(&attrs, 0o644));
            let existed = match made {
                Ok(_) => was_there,
                Err(rustix::io::Errno::EXIST) if verf.is_some() => true,
                Err(e) => return Err(status(e)),
            };
            let mut n = self.export.child(&c.dir, &c.name)?;
            let stamp = |v: [u8; 8]| {
                let t = n3::nfstime3 {
                    seconds: u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                    nseconds: u32::from_be_bytes([v[4], v[5], v[6], v[7]]) % 1_000_000_000,
                };
                sattr3 {
                    atime: n3::set_atime::SET_TO_CLIENT_TIME(t),
                    mtime: n3::set_mtime::SET_TO_CLIENT_TIME(t),
                    ..sattr3::default()
                }
            };
            match (verf, existed) {
                // EXCLUSIVE: the verifier is kept in the times (as nfsd
                // does); a retransmitted CREATE finds it there.
                (Some(v), true) => {
                    let s = stamp(v);
                    let (n3::set_mtime::SET_TO_CLIENT_TIME(t), true) =
                        (s.mtime, n.kind() == FileType::RegularFile)
                    else {
                        return Err(nfsstat3::NFS3ERR_EXIST);
                    };
                    let m = n.st.stx_mtime;
                    if (m.tv_sec, m.tv_nsec) != (i64::from(t.seconds), t.nseconds) {
                        return Err(nfsstat3::NFS3ERR_EXIST);
                    }
                }
                (Some(v), false) => {
                    self.chown_new(cred, &mut n)?;
                    self.apply_sattr(cred, &mut n, &stamp(v), false)?;
                }
                (None, _) if n.kind() != FileType::RegularFile => {
                    return Err(nfsstat3::NFS3ERR_EXIST);
                }
                // An existing file (UNCHECKED) gets the attributes as a
                // SETATTR would.
                (None, true) => self.apply_sattr(cred, &mut n, &attrs, true)?,
                (None, false) => {
                    self.chown_new(cred, &mut n)?;
                    self.apply_sattr(cred, &mut n, &attrs, false)?;
                }
            }
            self.finish(&mut c, &mut wcc);
            Ok(self.new_obj(&n))
        })();
        let res: n3::CREATE3res = match r {
            Ok((obj, obj_attributes)) => Nfs3Result::Ok(n3::CREATE3resok {
                obj,
                obj_attributes,
                dir_wcc: wcc.data(self.fsid()),
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::CREATE3resfail {
                    dir_wcc: wcc.data(self.fsid()),
                },
            )),
        };
        put(out, &res);
    }

    pub(super) fn mkdir(&self, cred: &Cred, at: DirOp<'_>, attrs: &sattr3, out: &mut Out) {
        let mut wcc = DirWcc {
            before: None,
            after: None,
        };
        let r = (|| {
            let mut c = self.change(cred, at, &mut wcc)?;
            rustix::fs::mkdirat(&c.fd, c.name.as_c_str(), mode_of(attrs, 0o755)).map_err(status)?;
            let mut n = self.export.child(&c.dir, &c.name)?;
            self.chown_new(cred, &mut n)?;
            self.apply_sattr(cred, &mut n, attrs, false)?;
            self.finish(&mut c, &mut wcc);
            Ok(self.new_obj(&n))
        })();
        let res: n3::MKDIR3res = match r {
            Ok((obj, obj_attributes)) => Nfs3Result::Ok(n3::MKDIR3resok {
                obj,
                obj_attributes,
                dir_wcc: wcc.data(self.fsid()),
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::MKDIR3resfail {
                    dir_wcc: wcc.data(self.fsid()),
                },
            )),
        };
        put(out, &res);
    }

    pub(super) fn symlink(
        &self,
        cred: &Cred,
        at: DirOp<'_>,
        _attrs: &sattr3,
        target: &[u8],
        out: &mut Out,
    ) {
        let mut wcc = DirWcc {
            before: None,
            after: None,
        };
        let r = (|| {
            let mut c = self.change(cred, at, &mut wcc)?;
            if target.is_empty() || target.len() > 4095 {
                return Err(nfsstat3::NFS3ERR_INVAL);
            }
            let target = CString::new(target).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
            // The target is stored, never followed by this server.
            rustix::fs::symlinkat(target.as_c_str(), &c.fd, c.name.as_c_str()).map_err(status)?;
            let mut n = self.export.child(&c.dir, &c.name)?;
            self.chown_new(cred, &mut n)?;
            self.finish(&mut c, &mut wcc);
            Ok(self.new_obj(&n))
        })();
        let res: n3::SYMLINK3res = match r {
            Ok((obj, obj_attributes)) => Nfs3Result::Ok(n3::SYMLINK3resok {
                obj,
                obj_attributes,
                dir_wcc: wcc.data(self.fsid()),
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::SYMLINK3resfail {
                    dir_wcc: wcc.data(self.fsid()),
                },
            )),
        };
        put(out, &res);
    }

    /// REMOVE (`rmdir` false) and RMDIR.
    pub(super) fn remove(&self, cred: &Cred, at: DirOp<'_>, rmdir: bool, out: &mut Out) {
        let mut wcc = DirWcc {
            before: None,
            after: None,
        };
        let r = (|| {
            let mut c = self.change(cred, at, &mut wcc)?;
            let st = crate::export::stat_at(&c.fd, &c.name).map_err(status)?;
            let is_dir = FileType::from_raw_mode(st.stx_mode.into()) == FileType::Directory;
            let flags = match (rmdir, is_dir) {
                (true, true) => AtFlags::REMOVEDIR,
                (true, false) => return Err(nfsstat3::NFS3ERR_NOTDIR),
                (false, true) => return Err(nfsstat3::NFS3ERR_ISDIR),
                (false, false) => AtFlags::empty(),
            };
            rustix::fs::unlinkat(&c.fd, c.name.as_c_str(), flags).map_err(status)?;
            self.finish(&mut c, &mut wcc);
            Ok(())
        })();
        let dir_wcc = wcc.data(self.fsid());
        if rmdir {
            let res: n3::RMDIR3res = match r {
                Ok(()) => Nfs3Result::Ok(n3::RMDIR3resok { dir_wcc }),
                Err(s) => Nfs3Result::Err((s, n3::RMDIR3resfail { dir_wcc })),
            };
            put(out, &res);
        } else {
            let res: n3::REMOVE3res = match r {
                Ok(()) => Nfs3Result::Ok(n3::REMOVE3resok { dir_wcc }),
                Err(s) => Nfs3Result::Err((s, n3::REMOVE3resfail { dir_wcc })),
            };
            put(out, &res);
        }
    }

    pub(super) fn rename(&self, cred: &Cred, from: DirOp<'_>, to: DirOp<'_>, out: &mut Out) {
        let mut fw = DirWcc {
            before: None,
            after: None,
        };
        let mut tw = DirWcc {
            before: None,
            after: None,
        };
        let r = (|| {
            let mut f = self.change(cred, from, &mut fw)?;
            let mut t = self.change(cred, to, &mut tw)?;
            rustix::fs::renameat(&f.fd, f.name.as_c_str(), &t.fd, t.name.as_c_str())
                .map_err(status)?;
            self.finish(&mut f, &mut fw);
            self.finish(&mut t, &mut tw);
            if let Ok(n) = self.export.child(&t.dir, &t.name) {
                self.export.remember(n.path.clone(), &n.st);
            }
            Ok(())
        })();
        let (fromdir_wcc, todir_wcc) = (fw.data(self.fsid()), tw.data(self.fsid()));
        let res: n3::RENAME3res = match r {
            Ok(()) => Nfs3Result::Ok(n3::RENAME3resok {
                fromdir_wcc,
                todir_wcc,
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::RENAME3resfail {
                    fromdir_wcc,
                    todir_wcc,
                },
            )),
        };
        put(out, &res);
    }

    pub(super) fn link(&self, cred: &Cred, fh: &[u8], at: DirOp<'_>, out: &mut Out) {
        let mut wcc = DirWcc {
            before: None,
            after: None,
        };
        let mut file_attr = Nfs3Option::None;
        let r = (|| {
            let mut file = self.export.resolve(fh)?;
            file_attr = post_op(&file, self.fsid());
            let mut c = self.change(cred, at, &mut wcc)?;
            if file.kind() == FileType::Directory {
                return Err(nfsstat3::NFS3ERR_ISDIR);
            }
            // Without AT_SYMLINK_FOLLOW: links the object itself.
            rustix::fs::linkat(
                &file.dir,
                file.name.as_c_str(),
                &c.fd,
                c.name.as_c_str(),
                AtFlags::empty(),
            )
            .map_err(status)?;
            self.finish(&mut c, &mut wcc);
            file.restat()?;
            file_attr = post_op(&file, self.fsid());
            Ok(())
        })();
        let linkdir_wcc = wcc.data(self.fsid());
        let res: n3::LINK3res = match r {
            Ok(()) => Nfs3Result::Ok(n3::LINK3resok {
                file_attributes: file_attr,
                linkdir_wcc,
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::LINK3resfail {
                    file_attributes: file_attr,
                    linkdir_wcc,
                },
            )),
        };
        put(out, &res);
    }
}
