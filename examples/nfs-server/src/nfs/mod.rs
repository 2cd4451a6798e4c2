//! The NFS version 3 program (100003, RFC 1813) as an rdmaxprt
//! [`Service`].
//!
//! Procedures not about file data or directories live here (GETATTR,
//! SETATTR, ACCESS, FSSTAT, FSINFO, PATHCONF); READ, WRITE, COMMIT and
//! READLINK in `io`; the namespace procedures in `ns`; READDIR and
//! READDIRPLUS in `readdir`. MKNOD is answered NFS3ERR_NOTSUPP.

mod io;
mod ns;
mod readdir;

use crate::args::{self, NfsArgs};
use crate::attr::{self, Cred, Squash, R, W, X};
use crate::export::{status, Export, Node, Status};
use nfs3_types::nfs3::{
    self as n3, nfsstat3, sattr3, sattrguard3, set_atime, set_mtime, writeverf3, Nfs3Option,
    Nfs3Result,
};
use nfs3_types::xdr_codec::{Pack, Void};
use rdmaxprt::service::{CallContext, ProcError, ReplyBody, Service};
use rdmaxprt_core::rpcrdma::{Limits, DEFAULT_MAX_PAYLOAD};
use rustix::fs::{FileType, OFlags, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
use std::ops::RangeInclusive;

/// Largest READ and WRITE: what one chunk may carry, at most the
/// transport's largest payload (1 MiB).
pub const IO_MAX: u32 = {
    let chunk = Limits::DEFAULT.max_chunk_bytes;
    let payload = DEFAULT_MAX_PAYLOAD as u64;
    (if chunk < payload { chunk } else { payload }) as u32
};

/// How the export is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NfsConfig {
    /// Refuse every change with NFS3ERR_ROFS.
    pub read_only: bool,
    /// AUTH_SYS identity mapping.
    pub squash: Squash,
    /// FSINFO `rtmax` (largest READ).
    pub rtmax: u32,
    /// FSINFO `wtmax` (largest WRITE).
    pub wtmax: u32,
    /// The `fsid` reported in attributes.
    pub fsid: u64,
    /// Whether a call may block on file-system I/O
    /// ([`Service::blocking`]): in poll-group mode such calls are handed to
    /// the worker threads so a slow disk does not stall every connection
    /// of a poll group. `false` runs them on the poll-group threads (an
    /// export on tmpfs or in the page cache). Default: `true`.
    pub blocking: bool,
}

impl Default for NfsConfig {
    fn default() -> Self {
        Self {
            read_only: false,
            squash: Squash::default(),
            rtmax: IO_MAX,
            wtmax: IO_MAX,
            fsid: 1,
            blocking: true,
        }
    }
}

/// The NFSv3 service of one export.
#[derive(Debug)]
pub struct Nfs {
    export: std::sync::Arc<Export>,
    cfg: NfsConfig,
    verf: writeverf3,
    euid_root: bool,
}

/// What a procedure hands back: its XDR results (and READ's bulk data).
type Out = ReplyBody;

fn put<T: Pack>(out: &mut Out, v: &T) {
    // Packing into a Vec cannot fail (the only errors are I/O errors of the
    // writer and opaques over 4 GiB, which no result here has).
    let _ = v.pack(&mut out.results);
}

/// `post_op_attr` of an object.
fn post_op(n: &Node, fsid: u64) -> n3::post_op_attr {
    Nfs3Option::Some(attr::fattr(&n.st, fsid))
}

impl Nfs {
    /// Serves `export`. The write verifier is drawn from the start time,
    /// so it changes when the server restarts (clients then resend
    /// uncommitted writes).
    pub fn new(export: std::sync::Arc<Export>, cfg: NfsConfig) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self {
            export,
            cfg,
            verf: writeverf3(now.to_be_bytes()),
            euid_root: rustix::process::geteuid().is_root(),
        }
    }

    /// The export served.
    pub fn export(&self) -> &Export {
        &self.export
    }

    fn fsid(&self) -> u64 {
        self.cfg.fsid
    }

    fn writable(&self) -> Result<(), Status> {
        if self.cfg.read_only {
            Err(nfsstat3::NFS3ERR_ROFS)
        } else {
            Ok(())
        }
    }

    fn run(&self, cred: &Cred, a: NfsArgs<'_>, out: &mut Out) {
        match a {
            NfsArgs::Null => {}
            NfsArgs::Getattr { fh } => self.getattr(fh, out),
            NfsArgs::Setattr { fh, attrs, guard } => self.setattr(cred, fh, &attrs, guard, out),
            NfsArgs::Lookup(d) => self.lookup(cred, d, out),
            NfsArgs::Access { fh, access } => self.access(cred, fh, access, out),
            NfsArgs::Readlink { fh } => self.readlink(fh, out),
            NfsArgs::Read { fh, offset, count } => self.read(cred, fh, offset, count, out),
            NfsArgs::Write {
                fh,
                offset,
                count,
                stable,
                data,
            } => self.write(cred, fh, offset, count, stable, data, out),
            NfsArgs::Create { at, how } => self.create(cred, at, how, out),
            NfsArgs::Mkdir { at, attrs } => self.mkdir(cred, at, &attrs, out),
            NfsArgs::Symlink { at, attrs, target } => self.symlink(cred, at, &attrs, target, out),
            NfsArgs::Mknod { .. } => {
                let r: n3::MKNOD3res = Nfs3Result::Err((
                    nfsstat3::NFS3ERR_NOTSUPP,
                    n3::MKNOD3resfail {
                        dir_wcc: n3::wcc_data::default(),
                    },
                ));
                put(out, &r);
            }
            NfsArgs::Remove(d) => self.remove(cred, d, false, out),
            NfsArgs::Rmdir(d) => self.remove(cred, d, true, out),
            NfsArgs::Rename { from, to } => self.rename(cred, from, to, out),
            NfsArgs::Link { fh, at } => self.link(cred, fh, at, out),
            NfsArgs::Readdir {
                fh,
                cookie,
                verf,
                count,
            } => self.readdir(cred, fh, cookie, verf, count, out),
            NfsArgs::Readdirplus {
                fh,
                cookie,
                verf,
                dircount,
                maxcount,
            } => self.readdirplus(cred, fh, cookie, verf, dircount, maxcount, out),
            NfsArgs::Fsstat { fh } => self.fsstat(fh, out),
            NfsArgs::Fsinfo { fh } => self.fsinfo(fh, out),
            NfsArgs::Pathconf { fh } => self.pathconf(fh, out),
            NfsArgs::Commit { fh, offset, count } => self.commit(fh, offset, count, out),
        }
    }

    fn getattr(&self, fh: &[u8], out: &mut Out) {
        let r: n3::GETATTR3res = match self.export.resolve(fh) {
            Ok(n) => Nfs3Result::Ok(n3::GETATTR3resok {
                obj_attributes: attr::fattr(&n.st, self.fsid()),
            }),
            Err(s) => Nfs3Result::Err((s, Void)),
        };
        put(out, &r);
    }

    fn setattr(&self, cred: &Cred, fh: &[u8], a: &sattr3, guard: sattrguard3, out: &mut Out) {
        let mut before = None;
        let r = (|| {
            let mut n = self.export.resolve(fh)?;
            before = Some(n.st);
            self.writable()?;
            if let Nfs3Option::Some(t) = guard {
                let c = n.st.stx_ctime;
                if (c.tv_sec, c.tv_nsec) != (i64::from(t.seconds), t.nseconds) {
                    return Err(nfsstat3::NFS3ERR_NOT_SYNC);
                }
            }
            self.apply_sattr(cred, &mut n, a, true)?;
            Ok(n)
        })();
        let fsid = self.fsid();
        let res: n3::SETATTR3res = match r {
            Ok(n) => Nfs3Result::Ok(n3::SETATTR3resok {
                obj_wcc: attr::wcc_data(before.as_ref(), Some(&n.st), fsid),
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::SETATTR3resfail {
                    obj_wcc: attr::wcc_data(before.as_ref(), before.as_ref(), fsid),
                },
            )),
        };
        put(out, &res);
    }

    /// Applies `a` to `n` (SETATTR, and the initial attributes of a new
    /// object when `check` is false: its creator may set them) and reads
    /// its attributes again.
    fn apply_sattr(
        &self,
        cred: &Cred,
        n: &mut Node,
        a: &sattr3,
        check: bool,
    ) -> Result<(), Status> {
        let kind = n.kind();
        let owner = !check || cred.owns(&n.st);
        let wants_owner = a.mode.is_some()
            || a.uid.is_some()
            || a.gid.is_some()
            || matches!(a.atime, set_atime::SET_TO_CLIENT_TIME(_))
            || matches!(a.mtime, set_mtime::SET_TO_CLIENT_TIME(_));
        if wants_owner && !owner {
            return Err(nfsstat3::NFS3ERR_PERM);
        }
        let may_write = !check || owner || cred.may(&n.st, W);
        if kind == FileType::Symlink {
            if a.size.is_some() {
                return Err(nfsstat3::NFS3ERR_INVAL);
            }
            // A link's own mode cannot be changed on Linux; owner and times
            // are set on the link itself.
            if a.uid.is_some() || a.gid.is_some() {
                rustix::fs::chownat(
                    &n.dir,
                    n.name.as_c_str(),
                    opt(a.uid).map(rustix::fs::Uid::from_raw),
                    opt(a.gid).map(rustix::fs::Gid::from_raw),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(status)?;
            }
            if let Some(ts) = times(a) {
                if !may_write {
                    return Err(nfsstat3::NFS3ERR_ACCES);
                }
                rustix::fs::utimensat(
                    &n.dir,
                    n.name.as_c_str(),
                    &ts,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(status)?;
            }
            return n.restat();
        }
        let flags = match (a.size.is_some(), kind) {
            (true, FileType::Directory) => return Err(nfsstat3::NFS3ERR_ISDIR),
            (true, _) => OFlags::WRONLY,
            (false, FileType::RegularFile | FileType::Directory) => OFlags::RDONLY,
            (false, _) => OFlags::PATH,
        };
        if let Nfs3Option::Some(size) = a.size {
            if check && !cred.may(&n.st, W) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let fd = n.open(flags | OFlags::NONBLOCK)?;
            rustix::fs::ftruncate(&fd, size).map_err(status)?;
        }
        if flags == OFlags::PATH {
            // Devices, FIFOs, sockets: nothing is set on them.
            return n.restat();
        }
        let fd = n.open(flags | OFlags::NONBLOCK)?;
        if a.uid.is_some() || a.gid.is_some() {
            rustix::fs::fchown(
                &fd,
                opt(a.uid).map(rustix::fs::Uid::from_raw),
                opt(a.gid).map(rustix::fs::Gid::from_raw),
            )
            .map_err(status)?;
        }
        if let Nfs3Option::Some(mode) = a.mode {
            rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
                .map_err(status)?;
        }
        if let Some(ts) = times(a) {
            if !may_write {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            rustix::fs::futimens(&fd, &ts).map_err(status)?;
        }
        n.restat()
    }

    /// Sets the owner of a new object to the caller (when the server can).
    fn chown_new(&self, cred: &Cred, n: &mut Node) -> Result<(), Status> {
        if self.euid_root {
            rustix::fs::chownat(
                &n.dir,
                n.name.as_c_str(),
                Some(rustix::fs::Uid::from_raw(cred.uid)),
                Some(rustix::fs::Gid::from_raw(cred.gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(status)?;
            n.restat()?;
        }
        Ok(())
    }

    fn access(&self, cred: &Cred, fh: &[u8], want: u32, out: &mut Out) {
        let r: n3::ACCESS3res = match self.export.resolve(fh) {
            Ok(n) => {
                let is_dir = n.kind() == FileType::Directory;
                let may = |bits| cred.may(&n.st, bits);
                let rw = !self.cfg.read_only && may(W);
                let mut got = 0;
                for (bit, ok) in [
                    (n3::ACCESS3_READ, may(R)),
                    (n3::ACCESS3_LOOKUP, is_dir && may(X)),
                    (n3::ACCESS3_MODIFY, rw),
                    (n3::ACCESS3_EXTEND, rw),
                    (n3::ACCESS3_DELETE, is_dir && rw),
                    (n3::ACCESS3_EXECUTE, !is_dir && may(X)),
                ] {
                    if ok {
                        got |= bit;
                    }
                }
                Nfs3Result::Ok(n3::ACCESS3resok {
                    obj_attributes: post_op(&n, self.fsid()),
                    access: got & want,
                })
            }
            Err(s) => Nfs3Result::Err((s, n3::ACCESS3resfail::default())),
        };
        put(out, &r);
    }

    fn fsstat(&self, fh: &[u8], out: &mut Out) {
        let r: n3::FSSTAT3res = match self.export.resolve(fh).and_then(|n| {
            let v = rustix::fs::fstatvfs(self.export.root_fd()).map_err(status)?;
            Ok((n, v))
        }) {
            Ok((n, v)) => {
                let bs = v.f_frsize.max(1);
                Nfs3Result::Ok(n3::FSSTAT3resok {
                    obj_attributes: post_op(&n, self.fsid()),
                    tbytes: v.f_blocks.saturating_mul(bs),
                    fbytes: v.f_bfree.saturating_mul(bs),
                    abytes: v.f_bavail.saturating_mul(bs),
                    tfiles: v.f_files,
                    ffiles: v.f_ffree,
                    afiles: v.f_favail,
                    invarsec: 0,
                })
            }
            Err(s) => Nfs3Result::Err((s, n3::FSSTAT3resfail::default())),
        };
        put(out, &r);
    }

    fn fsinfo(&self, fh: &[u8], out: &mut Out) {
        let r: n3::FSINFO3res = match self.export.resolve(fh) {
            Ok(n) => Nfs3Result::Ok(n3::FSINFO3resok {
                obj_attributes: post_op(&n, self.fsid()),
                rtmax: self.cfg.rtmax,
                rtpref: self.cfg.rtmax,
                rtmult: 4096,
                wtmax: self.cfg.wtmax,
                wtpref: self.cfg.wtmax,
                wtmult: 4096,
                dtpref: 65536,
                maxfilesize: i64::MAX as u64,
                time_delta: n3::nfstime3 {
                    seconds: 0,
                    nseconds: 1,
                },
                properties: n3::FSF3_LINK
                    | n3::FSF3_SYMLINK
                    | n3::FSF3_HOMOGENEOUS
                    | n3::FSF3_CANSETTIME,
            }),
            Err(s) => Nfs3Result::Err((s, n3::FSINFO3resfail::default())),
        };
        put(out, &r);
    }

    fn pathconf(&self, fh: &[u8], out: &mut Out) {
        let r: n3::PATHCONF3res = match self.export.resolve(fh) {
            Ok(n) => Nfs3Result::Ok(n3::PATHCONF3resok {
                obj_attributes: post_op(&n, self.fsid()),
                linkmax: 65000,
                name_max: crate::export::NAME_MAX as u32,
                no_trunc: true,
                chown_restricted: true,
                case_insensitive: false,
                case_preserving: true,
            }),
            Err(s) => Nfs3Result::Err((s, n3::PATHCONF3resfail::default())),
        };
        put(out, &r);
    }
}

fn opt<T: Copy + nfs3_types::xdr_codec::Pack + nfs3_types::xdr_codec::Unpack>(
    o: Nfs3Option<T>,
) -> Option<T> {
    match o {
        Nfs3Option::Some(v) => Some(v),
        Nfs3Option::None => None,
    }
}

fn times(a: &sattr3) -> Option<Timestamps> {
    let t = |sec: u32, nsec: u32| Timespec {
        tv_sec: sec.into(),
        tv_nsec: nsec.into(),
    };
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    let omit = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_OMIT,
    };
    let last_access = match a.atime {
        set_atime::DONT_CHANGE => omit,
        set_atime::SET_TO_SERVER_TIME => now,
        set_atime::SET_TO_CLIENT_TIME(c) => t(c.seconds, c.nseconds),
    };
    let last_modification = match a.mtime {
        set_mtime::DONT_CHANGE => omit,
        set_mtime::SET_TO_SERVER_TIME => now,
        set_mtime::SET_TO_CLIENT_TIME(c) => t(c.seconds, c.nseconds),
    };
    (last_access.tv_nsec != UTIME_OMIT || last_modification.tv_nsec != UTIME_OMIT).then_some(
        Timestamps {
            last_access,
            last_modification,
        },
    )
}

impl Service for Nfs {
    fn program(&self) -> u32 {
        n3::PROGRAM
    }

    fn versions(&self) -> RangeInclusive<u32> {
        n3::VERSION..=n3::VERSION
    }

    fn call(
        &self,
        ctx: &CallContext<'_>,
        args: &[u8],
        out: &mut ReplyBody,
    ) -> Result<(), ProcError> {
        let a = args::decode(ctx.proc, args)
            .ok_or(ProcError::ProcUnavail)?
            .map_err(|_| ProcError::GarbageArgs)?;
        let cred = self.cfg.squash.cred(&ctx.cred);
        self.run(&cred, a, out);
        Ok(())
    }

    fn blocking(&self) -> bool {
        self.cfg.blocking
    }
}
