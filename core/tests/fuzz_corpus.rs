#![cfg(not(rdmaxprt_loom))]
//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! very checks the fuzz targets run (`fuzz/checks/`, included by path), so
//! every input the fuzzers kept, and every crash reproducer added there,
//! is a regression test of the header codecs on stable Rust.
//!
//! A missing or empty corpus directory fails the test: the corpus is part
//! of the test, not optional.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/checks/mod.rs"]
mod checks;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of the target's corpus; reports every failing
/// file by name before failing.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus_dir(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} unreadable: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );

    let mut failed = Vec::new();
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus inputs fail the checks:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn rpcrdma_decode_corpus() {
    replay("rpcrdma_decode", checks::rpcrdma::check_call_bytes);
}

#[test]
fn rpcrdma_reply_decode_corpus() {
    replay("rpcrdma_reply_decode", checks::rpcrdma::check_reply_bytes);
}

#[test]
fn chunk_validation_corpus() {
    replay("chunk_validation", checks::chunk::check_bytes);
}

#[test]
fn oncrpc_decode_corpus() {
    replay("oncrpc_decode", checks::oncrpc::check_bytes);
}

/// The checks can fail: a header the model says must be rejected is
/// caught, and the replay helper turns a missing directory into a failure.
#[test]
fn checks_and_replay_can_fail() {
    // RDMA_MSG call whose Write chunk has one zero-length segment: the model
    // predicts ZeroLengthSegment, and check_case asserts the decoder agrees.
    let mut case = checks::chunk::ChunkCase::from_bytes(&[]);
    assert_eq!(
        checks::chunk::model(&case, checks::rpcrdma::Role::Call),
        Err(rdmaxprt_core::rpcrdma::DecodeError::MissingBody)
    );
    case.body_len = 4;
    case.limits = rdmaxprt_core::rpcrdma::Limits::DEFAULT;
    case.writes = vec![vec![rdmaxprt_core::rpcrdma::Segment::default()]];
    assert!(matches!(
        checks::chunk::model(&case, checks::rpcrdma::Role::Call),
        Err(rdmaxprt_core::rpcrdma::DecodeError::ZeroLengthSegment { offset: 28 })
    ));
    checks::chunk::check_case(&case);

    // A check that rejects everything makes the replay fail, and so does a
    // corpus directory that does not exist.
    let always = panic::catch_unwind(|| replay("oncrpc_decode", |_| panic!("rejected")));
    assert!(always.is_err());
    let missing = panic::catch_unwind(|| replay("no_such_target", |_| {}));
    assert!(missing.is_err());
    assert!(!corpus_dir("no_such_target").exists());
}
