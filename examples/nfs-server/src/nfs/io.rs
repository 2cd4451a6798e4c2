//! READ, WRITE, COMMIT, READLINK.
//!
//! READ reads into one buffer and hands it to the transport as the reply's
//! bulk payload: it goes to the client by RDMA Write through the call's
//! Write chunk (the results carry everything up to and including the data's
//! length, as Linux svcrdma sends an NFSv3 READ reply). The
//! transport stages bulk payloads into a registered page before the Write
//! (`SvcRdmaXprt::sendto`), so this is one copy past the `pread`. WRITE
//! takes its data straight from the call message the transport pulled the
//! Read chunk into (borrowed by the argument decoder, no copy).
//!
//! A client that offers no Write chunk for a READ gets the bulk payload
//! inline after the results, XDR-padded by the transport (`sendto`).

use super::{post_op, put, Nfs, Out};
use crate::attr::{self, Cred, R, W};
use crate::export::{status, Node, Status};
use nfs3_types::nfs3::{self as n3, nfsstat3, stable_how, Nfs3Result};
use nfs3_types::xdr_codec::Opaque;
use rustix::fs::{FileType, OFlags};
use std::fs::File;
use std::os::unix::fs::FileExt;

fn regular(n: &Node) -> Result<(), Status> {
    match n.kind() {
        FileType::RegularFile => Ok(()),
        FileType::Directory => Err(nfsstat3::NFS3ERR_ISDIR),
        _ => Err(nfsstat3::NFS3ERR_INVAL),
    }
}

/// Reads up to `buf.len()` bytes at `offset`; returns how many (short only
/// at the end of the file).
fn read_full(f: &File, buf: &mut [u8], offset: u64) -> Result<usize, Status> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_status(&e)),
        }
    }
    Ok(done)
}

fn io_status(e: &std::io::Error) -> Status {
    e.raw_os_error().map_or(nfsstat3::NFS3ERR_IO, |c| {
        status(rustix::io::Errno::from_raw_os_error(c))
    })
}

impl Nfs {
    pub(super) fn read(&self, cred: &Cred, fh: &[u8], offset: u64, count: u32, out: &mut Out) {
        let fsid = self.fsid();
        let mut node = None;
        let r = (|| {
            let n = node.insert(self.export.resolve(fh)?);
            regular(n)?;
            if !cred.owns(&n.st) && !cred.may(&n.st, R) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let f = File::from(n.open(OFlags::RDONLY)?);
            let want = count.min(self.cfg.rtmax) as usize;
            let mut data = vec![0u8; want];
            let got = read_full(&f, &mut data, offset)?;
            data.truncate(got);
            n.restat()?;
            let eof = offset.saturating_add(got as u64) >= n.st.stx_size;
            Ok((data, eof))
        })();
        match r {
            Ok((data, eof)) => {
                let n = node.as_ref();
                put(out, &nfsstat3::NFS3_OK);
                put(out, &n.map_or(n3::Nfs3Option::None, |n| post_op(n, fsid)));
                put(out, &(data.len() as u32));
                put(out, &eof);
                // The opaque's length stays in the results; its bytes go
                // as bulk payload (the Write chunk).
                put(out, &(data.len() as u32));
                out.bulk = Some(data.into());
            }
            Err(s) => {
                let res: n3::READ3res<'_> = Nfs3Result::Err((
                    s,
                    n3::READ3resfail {
                        file_attributes: node
                            .as_ref()
                            .map_or(n3::Nfs3Option::None, |n| post_op(n, fsid)),
                    },
                ));
                put(out, &res);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn write(
        &self,
        cred: &Cred,
        fh: &[u8],
        offset: u64,
        count: u32,
        stable: stable_how,
        data: &[u8],
        out: &mut Out,
    ) {
        let fsid = self.fsid();
        let mut before = None;
        let r = (|| {
            let mut n = self.export.resolve(fh)?;
            before = Some(n.st);
            self.writable()?;
            regular(&n)?;
            if !cred.owns(&n.st) && !cred.may(&n.st, W) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            let data = data.get(..count as usize).ok_or(nfsstat3::NFS3ERR_INVAL)?;
            if offset
                .checked_add(data.len() as u64)
                .is_none_or(|e| e > i64::MAX as u64)
            {
                return Err(nfsstat3::NFS3ERR_FBIG);
            }
            let f = File::from(n.open(OFlags::WRONLY)?);
            f.write_all_at(data, offset).map_err(|e| io_status(&e))?;
            let committed = match stable {
                stable_how::UNSTABLE => stable_how::UNSTABLE,
                stable_how::DATA_SYNC => {
                    f.sync_data().map_err(|e| io_status(&e))?;
                    stable_how::DATA_SYNC
                }
                stable_how::FILE_SYNC => {
                    f.sync_all().map_err(|e| io_status(&e))?;
                    stable_how::FILE_SYNC
                }
            };
            n.restat()?;
            Ok((n, data.len() as u32, committed))
        })();
        let res: n3::WRITE3res = match r {
            Ok((n, count, committed)) => Nfs3Result::Ok(n3::WRITE3resok {
                file_wcc: attr::wcc_data(before.as_ref(), Some(&n.st), fsid),
                count,
                committed,
                verf: self.verf,
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::WRITE3resfail {
                    file_wcc: attr::wcc_data(before.as_ref(), before.as_ref(), fsid),
                },
            )),
        };
        put(out, &res);
    }

    pub(super) fn commit(&self, fh: &[u8], _offset: u64, _count: u32, out: &mut Out) {
        let fsid = self.fsid();
        let mut before = None;
        let r = (|| {
            let mut n = self.export.resolve(fh)?;
            before = Some(n.st);
            regular(&n)?;
            let f = File::from(n.open(OFlags::RDONLY)?);
            f.sync_all().map_err(|e| io_status(&e))?;
            n.restat()?;
            Ok(n)
        })();
        let res: n3::COMMIT3res = match r {
            Ok(n) => Nfs3Result::Ok(n3::COMMIT3resok {
                file_wcc: attr::wcc_data(before.as_ref(), Some(&n.st), fsid),
                verf: self.verf,
            }),
            Err(s) => Nfs3Result::Err((
                s,
                n3::COMMIT3resfail {
                    file_wcc: attr::wcc_data(before.as_ref(), before.as_ref(), fsid),
                },
            )),
        };
        put(out, &res);
    }

    pub(super) fn readlink(&self, fh: &[u8], out: &mut Out) {
        let fsid = self.fsid();
        let r = self.export.resolve(fh).and_then(|n| {
            if n.kind() != FileType::Symlink {
                return Err(nfsstat3::NFS3ERR_INVAL);
            }
            let t =
                rustix::fs::readlinkat(&n.dir, n.name.as_c_str(), Vec::new()).map_err(status)?;
            Ok((n, t))
        });
        let res: n3::READLINK3res<'_> = match &r {
            Ok((n, t)) => Nfs3Result::Ok(n3::READLINK3resok {
                symlink_attributes: post_op(n, fsid),
                data: n3::nfspath3(Opaque::borrowed(t.as_bytes())),
            }),
            Err(s) => Nfs3Result::Err((*s, n3::READLINK3resfail::default())),
        };
        put(out, &res);
    }
}
