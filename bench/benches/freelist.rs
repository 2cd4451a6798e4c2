//! B6, free-list pop: `LockedFreeList` vs `TaggedFreeList`, pop+push pairs
//! on 1 and 2 threads, with the floor (two shared `fetch_add`s per pair).
//!
//! `cargo bench -p rdmaxprt-bench --bench freelist`
// `criterion_group!` generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rdmaxprt_bench::freelist::{time_pairs, ListKind};
use std::time::Duration;

fn b6_freelist(c: &mut Criterion) {
    let mut g = c.benchmark_group("b6_freelist");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for threads in [1usize, 2] {
        for (name, kind) in [
            ("locked", ListKind::Locked),
            ("tagged", ListKind::Tagged),
            ("floor", ListKind::Floor),
        ] {
            g.bench_function(BenchmarkId::new(name, format!("t{threads}")), |b| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads as u64);
                    time_pairs(kind, threads, per_thread).scaled_to(iters)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, b6_freelist);
criterion_main!(benches);
