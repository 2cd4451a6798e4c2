//! Benchmarks of the rdmaxprt send-context lifecycles: the harnesses shared
//! by the criterion benches (`benches/`) and the `bench-report` binary.
//!
//! | id | what | module |
//! |----|------|--------|
//! | B1 | completion path: time per `put`, vs a bare list push | [`put`] |
//! | B2 | drain: time per context released, by batch size | [`drain`] |
//! | B3 | keep-up: completion vs release rate, pool size over time | [`keepup`] |
//! | B4, B5 | need the transport (not written yet) | - |
//! | B6 | free-list pop: locked vs tagged | [`freelist`] |
//!
//! Everything runs on [`device::CostDevice`], a DMA device whose only cost
//! is a busy wait in `dma_unmap`, so the lifecycle is measured alone (B3
//! also reruns Deferred and Workqueue on `rdmaxprt_mock::MockDevice` as a
//! cross-check).
//!
//! ```text
//! cargo run -p rdmaxprt-bench --release --bin bench-report [-- --quick]
//!     # tables on stdout, target/bench-report/{report.md,pool_size.svg}
//! cargo bench -p rdmaxprt-bench [--bench put|drain|freelist]
//!     # criterion (B1, B2, B6)
//! valgrind --tool=callgrind target/release/bench-report --only-put deferred:0:1
//! valgrind --tool=callgrind target/release/bench-report --only-drain 512:0
//!     # one configuration, for instruction profiles
//! ```
//!
//! Timing on a shared 2-core machine is noisy: the report prints the load
//! average, medians with min..max, and for two-thread runs how much the
//! threads actually overlapped.

pub mod barrier;
pub mod device;
pub mod drain;
pub mod freelist;
pub mod keepup;
pub mod plot;
pub mod put;
pub mod report;
pub mod setup;
pub mod summary;
pub mod timing;
