//! Checks shared by the fuzz targets (through `fuzz/src/lib.rs`) and by
//! `core/tests/fuzz_corpus.rs`, which includes this directory with
//! `#[path]` and replays the committed corpus through the same code.
//!
//! Only `std` and `rdmaxprt-core` may be used here, so the module compiles
//! unchanged in both places. Every check panics (an assertion) on a
//! violated invariant; that is what libFuzzer reports as a crash.

pub mod chunk;
pub mod oncrpc;
pub mod rpcrdma;
