//! READDIR and READDIRPLUS.
//!
//! A directory is listed whole on every call and sorted by name; an
//! entry's cookie is its position in that order plus one, so paging is
//! stable while the directory does not change (the cookie verifier is
//! always zero and not checked, as nfsd does for most file systems).

use super::{put, Nfs, Out};
use crate::attr::{self, Cred, R, X};
use crate::export::{stat_at, status, Node, Status};
use nfs3_types::nfs3::{self as n3, cookieverf3, nfsstat3, Nfs3Option};
use nfs3_types::xdr_codec::{List, Opaque, Pack};
use rustix::fs::{Dir, FileType, Mode, OFlags};
use std::ffi::CString;
use std::os::fd::OwnedFd;

/// Size of an XDR opaque of `len` bytes.
fn opaque_len(len: usize) -> usize {
    4 + len.div_ceil(4) * 4
}

/// An open directory and its entries, sorted, without `.` and `..`.
struct Listing {
    fd: OwnedFd,
    names: Vec<(CString, u64)>,
}

impl Nfs {
    fn list(&self, cred: &Cred, dir: &Node, cookie: u64) -> Result<(Listing, usize), Status> {
        if dir.kind() != FileType::Directory {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        if !cred.may(&dir.st, R) {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let fd = dir.open_dir()?;
        let rd = rustix::fs::openat(
            &fd,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(status)?;
        let mut names = Vec::new();
        for e in Dir::new(rd).map_err(status)? {
            let e = e.map_err(status)?;
            let n = e.file_name();
            if n != c"." && n != c".." {
                names.push((n.to_owned(), e.ino()));
            }
        }
        names.sort_unstable();
        let start = usize::try_from(cookie).map_err(|_| nfsstat3::NFS3ERR_BAD_COOKIE)?;
        if start > names.len() {
            return Err(nfsstat3::NFS3ERR_BAD_COOKIE);
        }
        Ok((Listing { fd, names }, start))
    }

    pub(super) fn readdir(
        &self,
        cred: &Cred,
        fh: &[u8],
        cookie: u64,
        _verf: cookieverf3,
        count: u32,
        out: &mut Out,
    ) {
        let fsid = self.fsid();
        let mut dir_attr = Nfs3Option::None;
        let r = (|| {
            let dir = self.export.resolve(fh)?;
            dir_attr = super::post_op(&dir, fsid);
            let (l, start) = self.list(cred, &dir, cookie)?;
            // status, attributes, verifier, list end, eof.
            let mut used = 4 + dir_attr.packed_size() + 8 + 4 + 4;
            let mut entries = Vec::new();
            for (i, (name, ino)) in l.names.iter().enumerate().skip(start) {
                let size = 4 + 8 + opaque_len(name.as_bytes().len()) + 8;
                if used + size > count as usize {
                    break;
                }
                used += size;
                entries.push(n3::entry3 {
                    fileid: *ino,
                    name: n3::filename3(Opaque::borrowed(name.as_bytes())),
                    cookie: i as u64 + 1,
                });
            }
            if entries.is_empty() && start < l.names.len() {
                return Err(nfsstat3::NFS3ERR_TOOSMALL);
            }
            let eof = start + entries.len() == l.names.len();
            Ok(n3::READDIR3resok {
                dir_attributes: dir_attr.clone(),
                cookieverf: cookieverf3::default(),
                reply: n3::dirlist3 {
                    entries: List(entries),
                    eof,
                },
            })
            .map(|ok| {
                put(out, &nfsstat3::NFS3_OK);
                put(out, &ok);
            })
        })();
        if let Err(s) = r {
            put(out, &s);
            put(out, &dir_attr);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn readdirplus(
        &self,
        cred: &Cred,
        fh: &[u8],
        cookie: u64,
        _verf: cookieverf3,
        dircount: u32,
        maxcount: u32,
        out: &mut Out,
    ) {
        let fsid = self.fsid();
        let mut dir_attr = Nfs3Option::None;
        let r = (|| {
            let dir = self.export.resolve(fh)?;
            dir_attr = super::post_op(&dir, fsid);
            if !cred.may(&dir.st, X) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let (l, start) = self.list(cred, &dir, cookie)?;
            let mut used = 4 + dir_attr.packed_size() + 8 + 4 + 4;
            let mut dir_used = 0usize;
            let mut entries = Vec::new();
            for (i, (name, ino)) in l.names.iter().enumerate().skip(start) {
                let (attrs, handle) = match stat_at(&l.fd, name) {
                    Ok(st) if (st.stx_dev_major, st.stx_dev_minor) == self.export.dev() => {
                        let mut path = dir.path.clone();
                        path.push(name.clone());
                        self.export.remember(path, &st);
                        (
                            Nfs3Option::Some(attr::fattr(&st, fsid)),
                            Nfs3Option::Some(n3::nfs_fh3 {
                                data: self.export.handle(&st).into(),
                            }),
                        )
                    }
                    // Gone since the listing, or a mount point: no
                    // attributes, no handle (the client looks it up).
                    _ => (Nfs3Option::None, Nfs3Option::None),
                };
                let e = n3::entryplus3 {
                    fileid: *ino,
                    name: n3::filename3(Opaque::borrowed(name.as_bytes())),
                    cookie: i as u64 + 1,
                    name_attributes: attrs,
                    name_handle: handle,
                };
                let size = 4 + e.packed_size();
                let dsize = 8 + opaque_len(name.as_bytes().len()) + 8;
                if used + size > maxcount as usize || dir_used + dsize > dircount as usize {
                    break;
                }
                used += size;
                dir_used += dsize;
                entries.push(e);
            }
            if entries.is_empty() && start < l.names.len() {
                return Err(nfsstat3::NFS3ERR_TOOSMALL);
            }
            let eof = start + entries.len() == l.names.len();
            put(out, &nfsstat3::NFS3_OK);
            put(
                out,
                &n3::READDIRPLUS3resok {
                    dir_attributes: dir_attr.clone(),
                    cookieverf: cookieverf3::default(),
                    reply: n3::dirlistplus3 {
                        entries: List(entries),
                        eof,
                    },
                },
            );
            Ok(())
        })();
        if let Err(s) = r {
            put(out, &s);
            put(out, &dir_attr);
        }
    }
}
