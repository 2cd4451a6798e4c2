//! Replays the committed corpus of the `nfs3_args` fuzz target
//! (`fuzz/corpus/nfs3_args`: first byte the procedure, high bit set for
//! "the root handle first", the rest its arguments) through the argument
//! decoder and the service, on stable:
//! no panic, and every answer is results, GARBAGE_ARGS or PROC_UNAVAIL.

mod common;

use rdmaxprt::service::{CallContext, ProcError, ReplyBody, Service};
use rdmaxprt_core::oncrpc::Credential;
use rdmaxprt_nfs_server::args::decode;
use rdmaxprt_nfs_server::export::Export;
use rdmaxprt_nfs_server::nfs::Nfs;
use std::sync::Arc;

#[test]
fn committed_nfs3_args_corpus_replays_cleanly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/nfs3_args");
    let files: Vec<_> = std::fs::read_dir(dir)
        .expect("fuzz/corpus/nfs3_args exists")
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 20, "corpus has only {} files", files.len());
    let export_dir = tempfile::tempdir().unwrap();
    std::fs::write(export_dir.path().join("f"), b"file").unwrap();
    let export = Arc::new(Export::open(export_dir.path(), common::KEY, 7).unwrap());
    let mut root = (export.root_handle().len() as u32).to_be_bytes().to_vec();
    root.extend_from_slice(&export.root_handle());
    let mut cfg = common::no_squash();
    cfg.read_only = true;
    let nfs = Nfs::new(export, cfg);
    let (mut decoded, mut garbage) = (0, 0);
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let Some((&p, args)) = data.split_first() else {
            continue;
        };
        let args = if p & 0x80 != 0 {
            [&root[..], args].concat()
        } else {
            args.to_vec()
        };
        let args = &args[..];
        let proc = u32::from((p & 0x7f) % 24);
        match decode(proc, args) {
            Some(Ok(_)) => decoded += 1,
            Some(Err(_)) => garbage += 1,
            None => assert!(proc > 21),
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
            Ok(()) => assert!(proc == 0 || !out.results.is_empty(), "{}", f.display()),
            Err(ProcError::GarbageArgs) => assert!(proc <= 21),
            Err(ProcError::ProcUnavail) => assert!(proc > 21),
            Err(e) => panic!("{}: unexpected {e:?}", f.display()),
        }
    }
    assert!(decoded > 0 && garbage > 0, "corpus covers both outcomes");
}
