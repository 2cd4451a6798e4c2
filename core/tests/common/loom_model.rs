//! Shared loom harness: the preemption bound and an iteration counter.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// Default preemption bound; override with `LOOM_MAX_PREEMPTIONS`.
pub const DEFAULT_PREEMPTIONS: usize = 3;

/// Runs `f` under loom with a bounded preemption count and prints how many
/// interleavings it explored (the figure the issue asks to report).
pub fn check(name: &str, f: impl Fn() + Sync + Send + 'static) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PREEMPTIONS);
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    let start = RUNS.load(Ordering::Relaxed);
    b.check(move || {
        RUNS.fetch_add(1, Ordering::Relaxed);
        f()
    });
    let n = RUNS.load(Ordering::Relaxed) - start;
    println!("loom {name}: preemption bound {bound}, {n} interleavings explored");
}
