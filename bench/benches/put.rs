//! B1, the completion path: time per `put` for Deferred, Workqueue and
//! Inline at unmap costs 0, 0.5 us and 2 us with one and two completion
//! threads, against a bare `ReleaseList::push` (the floor). Only the `put`s
//! are timed (`iter_custom` over batches; see `rdmaxprt_bench::put`).
//!
//! `cargo bench -p rdmaxprt-bench --bench put`
// `criterion_group!` generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rdmaxprt_bench::put::{self, rounds_for, PutSpec};
use rdmaxprt_bench::setup::PolicyKind;
use std::time::Duration;

const BATCH: usize = 1024;

fn b1_put(c: &mut Criterion) {
    let mut g = c.benchmark_group("b1_put");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let mut one = |name: String, spec: PutSpec| {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let rounds = rounds_for(iters, spec.threads, spec.batch);
                put::run(&spec, rounds).scaled_to(iters)
            })
        });
    };
    for threads in [1, 2] {
        one(
            format!("floor_push/t{threads}"),
            PutSpec {
                policy: None,
                unmap: Duration::ZERO,
                threads,
                batch: BATCH,
            },
        );
        for policy in PolicyKind::ALL {
            for unmap_ns in [0u64, 500, 2000] {
                one(
                    format!("{policy}/unmap{unmap_ns}ns/t{threads}"),
                    PutSpec {
                        policy: Some(policy),
                        unmap: Duration::from_nanos(unmap_ns),
                        threads,
                        batch: BATCH,
                    },
                );
            }
        }
    }
    g.finish();
}

criterion_group!(benches, b1_put);
criterion_main!(benches);
