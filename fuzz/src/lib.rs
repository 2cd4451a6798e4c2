//! Fuzz harness support for rdmaxprt-core. The checks live in `checks/`
//! so that `core/tests/fuzz_corpus.rs` can include the very same code with
//! `#[path]` and replay the committed corpus in a regular `cargo test`.

#[path = "../checks/mod.rs"]
pub mod checks;
