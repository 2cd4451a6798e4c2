//! B4 (a), run-to-completion: one thread drives client and server
//! transport of one mock connection (Inline delivery), 64 B echoes, 8 in
//! flight; and the raw mock Send/Recv echo floor. Time per call, both ends.
//!
//! `cargo bench -p rdmaxprt-bench --bench e2e`
// `criterion_group!` generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use rdmaxprt_bench::rtc::{self, Rtc};
use std::time::Duration;

const WINDOW: usize = 8;

fn b4_rtc(c: &mut Criterion) {
    let mut g = c.benchmark_group("b4_rtc_echo64");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut r = Rtc::new(1, 64, WINDOW);
    r.run_calls(1000);
    g.bench_function("transport", |b| {
        b.iter_custom(|iters| {
            let (d, n) = r.run_calls(iters);
            d.mul_f64(iters as f64 / n.max(1) as f64)
        })
    });
    g.bench_function("raw_floor", |b| {
        b.iter_custom(|iters| {
            // Per-call time of a short timed run, scaled to `iters`.
            let t = rtc::run_raw(1, 64, WINDOW, Duration::from_millis(20));
            Duration::from_secs_f64(t.wall.as_secs_f64() / t.calls.max(1) as f64 * iters as f64)
        })
    });
    g.finish();
    if let Err(e) = r.finish() {
        eprintln!("teardown: {e}");
    }
}

criterion_group!(benches, b4_rtc);
criterion_main!(benches);
