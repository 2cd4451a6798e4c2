//! Arbitrary bytes as NFSv3 procedure arguments: the first byte picks the
//! procedure (its low bits modulo 24, so unknown ones too), the rest are
//! the arguments. With the first byte's high bit set, the export root's
//! real handle is put in front of them, so the procedures themselves run
//! (a fuzzer cannot forge the handle MAC).
//! Decoding must never panic; an accepted decode must borrow only from the
//! input, with handles of at most 64 bytes; and the whole service (on a
//! read-only export, so nothing changes) must answer results, GARBAGE_ARGS
//! or PROC_UNAVAIL, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdmaxprt::service::{CallContext, ProcError, ReplyBody, Service};
use rdmaxprt_core::oncrpc::Credential;
use rdmaxprt_nfs_server::args::{decode, NfsArgs};
use rdmaxprt_nfs_server::export::Export;
use rdmaxprt_nfs_server::nfs::{Nfs, NfsConfig};
use std::sync::{Arc, OnceLock};

fn service() -> &'static (Nfs, Vec<u8>) {
    static S: OnceLock<(Nfs, Vec<u8>)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nfs3-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(dir.join("d"));
        let _ = std::fs::write(dir.join("f"), b"file");
        let export = Arc::new(Export::open(&dir, [1; 16], 1).expect("fuzz export"));
        let mut root = (export.root_handle().len() as u32).to_be_bytes().to_vec();
        root.extend_from_slice(&export.root_handle());
        let nfs = Nfs::new(
            export,
            NfsConfig {
                read_only: true,
                ..NfsConfig::default()
            },
        );
        (nfs, root)
    })
}

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fuzz_target!(|data: &[u8]| {
    let Some((&p, args)) = data.split_first() else {
        return;
    };
    let (nfs, root) = service();
    let with_root;
    let args = if p & 0x80 != 0 {
        with_root = [&root[..], args].concat();
        &with_root[..]
    } else {
        args
    };
    let proc = u32::from((p & 0x7f) % 24);
    match decode(proc, args) {
        None => assert!(proc > 21),
        Some(Err(_)) => assert!(proc <= 21),
        Some(Ok(a)) => {
            assert!(proc <= 21);
            let (fh, bytes): (Option<&[u8]>, Option<&[u8]>) = match a {
                NfsArgs::Write { fh, data, count: _, .. } => (Some(fh), Some(data)),
                NfsArgs::Getattr { fh } | NfsArgs::Read { fh, .. } => (Some(fh), None),
                NfsArgs::Lookup(d) | NfsArgs::Remove(d) | NfsArgs::Rmdir(d) => {
                    (Some(d.dir), Some(d.name))
                }
                NfsArgs::Symlink { at, target, .. } => (Some(at.dir), Some(target)),
                _ => (None, None),
            };
            if let Some(fh) = fh {
                assert!(fh.len() <= 64);
                assert!(within(args, fh));
            }
            if let Some(b) = bytes {
                assert!(within(args, b));
            }
        }
    }
    let ctx = CallContext {
        xid: 1,
        prog: 100_003,
        vers: 3,
        proc,
        cred: Credential::None,
    };
    let mut out = ReplyBody::default();
    match nfs.call(&ctx, args, &mut out) {
        Ok(()) => assert!(proc == 0 || !out.results.is_empty()),
        Err(ProcError::GarbageArgs) => assert!(proc <= 21),
        Err(ProcError::ProcUnavail) => assert!(proc > 21),
        Err(e) => panic!("unexpected {e:?}"),
    }
});
