//! Arbitrary argument bytes never panic the NFS or MOUNT service: every
//! procedure answers either results or GARBAGE_ARGS / PROC_UNAVAIL.

mod common;

use proptest::prelude::*;
use rdmaxprt::service::{CallContext, ProcError, ReplyBody, Service};
use rdmaxprt_core::oncrpc::Credential;
use rdmaxprt_nfs_server::export::Export;
use rdmaxprt_nfs_server::mount::Mount;
use rdmaxprt_nfs_server::nfs::Nfs;
use std::sync::{Arc, OnceLock};

struct Env {
    _dir: tempfile::TempDir,
    nfs: Nfs,
    mount: Mount,
    root: Vec<u8>,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"file").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let export = Arc::new(Export::open(dir.path(), common::KEY, 7).unwrap());
        let root = export.root_handle();
        // Read-only: random calls must not change the fixture.
        let mut cfg = common::no_squash();
        cfg.read_only = true;
        Env {
            nfs: Nfs::new(export.clone(), cfg),
            mount: Mount::new(export, "/export"),
            root,
            _dir: dir,
        }
    })
}

fn run(s: &dyn Service, proc: u32, args: &[u8]) -> Result<ReplyBody, ProcError> {
    let ctx = CallContext {
        xid: 1,
        prog: s.program(),
        vers: 3,
        proc,
        cred: Credential::None,
    };
    let mut out = ReplyBody::default();
    s.call(&ctx, args, &mut out).map(|()| out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(proc in 0u32..24, args in proptest::collection::vec(any::<u8>(), 0..200)) {
        let e = env();
        match run(&e.nfs, proc, &args) {
            Ok(out) => prop_assert!(proc <= 21 && !out.results.is_empty() || proc == 0),
            Err(ProcError::GarbageArgs) => prop_assert!(proc <= 21),
            Err(ProcError::ProcUnavail) => prop_assert!(proc > 21),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        let _ = run(&e.mount, proc % 7, &args);
    }

    /// Valid handle, random rest: gets past handle decoding into the
    /// procedures themselves.
    #[test]
    fn random_arguments_after_a_real_handle(proc in 1u32..22, tail in proptest::collection::vec(any::<u8>(), 0..120)) {
        let e = env();
        let mut args = (e.root.len() as u32).to_be_bytes().to_vec();
        args.extend_from_slice(&e.root);
        args.extend_from_slice(&tail);
        match run(&e.nfs, proc, &args) {
            Ok(_) | Err(ProcError::GarbageArgs) => {}
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }
}
