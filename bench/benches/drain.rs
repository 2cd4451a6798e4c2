//! B2, the drain: one `Deferred::drain` of a batch of 1, 8, 64 or 512
//! completed contexts at unmap cost 0 and 0.5 us (criterion reports time
//! per drain and contexts per second), with the floor (`take_all` + unmap
//! wait + free-list push per node) alongside.
//!
//! `cargo bench -p rdmaxprt-bench --bench drain`
// `criterion_group!` generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rdmaxprt_bench::drain::{time_drain, time_drain_floor};
use std::time::Duration;

fn b2_drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("b2_drain");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for unmap_ns in [0u64, 500] {
        let unmap = Duration::from_nanos(unmap_ns);
        for batch in [1usize, 8, 64, 512] {
            g.throughput(Throughput::Elements(batch as u64));
            let p = format!("unmap{unmap_ns}ns/batch{batch}");
            g.bench_function(BenchmarkId::new("deferred", &p), |b| {
                b.iter_custom(|iters| time_drain(batch, unmap, iters as usize).total)
            });
            g.bench_function(BenchmarkId::new("floor", &p), |b| {
                b.iter_custom(|iters| time_drain_floor(batch, unmap, iters as usize).total)
            });
        }
    }
    g.finish();
}

criterion_group!(benches, b2_drain);
criterion_main!(benches);
