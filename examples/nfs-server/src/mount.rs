//! The MOUNT version 3 program (100005, RFC 1813 appendix I): MNT hands
//! out the export's root handle; UMNT, UMNTALL, DUMP and EXPORT answer
//! what a single-export server can. Served over TCP (`tcp`), as the Linux
//! client's `mountproto=tcp,mountport=N` asks.

use crate::args::Xdr;
use crate::export::Export;
use nfs3_types::mount::{
    self as m3, dirpath, export_node, fhandle3, mountres3, mountres3_ok, mountstat3,
};
use nfs3_types::xdr_codec::{List, Opaque, Pack};
use rdmaxprt::service::{CallContext, ProcError, ReplyBody, Service};
use std::ops::RangeInclusive;
use std::sync::Arc;

/// AUTH_SYS flavor number, the only one offered.
const AUTH_SYS: u32 = 1;

/// The MOUNT service of one export.
#[derive(Debug)]
pub struct Mount {
    export: Arc<Export>,
    path: Vec<u8>,
}

impl Mount {
    /// Serves `export` under the path clients mount (e.g. `/export`).
    pub fn new(export: Arc<Export>, path: impl Into<Vec<u8>>) -> Self {
        Self {
            export,
            path: path.into(),
        }
    }

    fn is_ours(&self, p: &[u8]) -> bool {
        let trim = |p: &[u8]| -> Vec<u8> {
            let mut v = p.to_vec();
            while v.len() > 1 && v.ends_with(b"/") {
                v.pop();
            }
            v
        };
        trim(p) == trim(&self.path)
    }
}

fn dirpath_arg(args: &[u8]) -> Result<&[u8], ProcError> {
    let mut x = Xdr::new(args);
    let p = x.opaque().map_err(|_| ProcError::GarbageArgs)?;
    x.finish().map_err(|_| ProcError::GarbageArgs)?;
    Ok(p)
}

impl Service for Mount {
    fn program(&self) -> u32 {
        m3::PROGRAM
    }

    fn versions(&self) -> RangeInclusive<u32> {
        m3::VERSION..=m3::VERSION
    }

    fn call(
        &self,
        ctx: &CallContext<'_>,
        args: &[u8],
        out: &mut ReplyBody,
    ) -> Result<(), ProcError> {
        let r = &mut out.results;
        let packed = match ctx.proc {
            0 | 4 => Ok(0),
            1 => {
                let p = dirpath_arg(args)?;
                let res = if p.len() > m3::MNTPATHLEN {
                    mountres3::Err(mountstat3::MNT3ERR_NAMETOOLONG)
                } else if self.is_ours(p) {
                    mountres3::Ok(mountres3_ok {
                        fhandle: fhandle3(Opaque::owned(self.export.root_handle())),
                        auth_flavors: vec![AUTH_SYS],
                    })
                } else {
                    mountres3::Err(mountstat3::MNT3ERR_NOENT)
                };
                res.pack(r)
            }
            // DUMP: no mount list is kept.
            2 => false.pack(r),
            3 => dirpath_arg(args).map(|_| Ok(0))?,
            5 => {
                let e: m3::exports<'_, '_> = List(vec![export_node {
                    ex_dir: dirpath(Opaque::borrowed(&self.path)),
                    ex_groups: List(Vec::new()),
                }]);
                e.pack(r)
            }
            _ => return Err(ProcError::ProcUnavail),
        };
        packed.map(|_| ()).map_err(|_| ProcError::SystemErr)
    }
}
