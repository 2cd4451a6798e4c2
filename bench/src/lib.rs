//! Benchmarks of the rdmaxprt send-context lifecycles: the harnesses shared
//! by the criterion benches (`benches/`) and the `bench-report` binary.
//!
//! | id | what | module |
//! |----|------|--------|
//! | B1 | completion path: time per `put`, vs a bare list push | [`put`] |
//! | B2 | drain: time per context released, by batch size | [`drain`] |
//! | B3 | keep-up: completion vs release rate, pool size over time | [`keepup`] |
//! | B4 | end-to-end echo over the mock NIC: run-to-completion and threaded, vs raw mock Send/Recv | [`rtc`], [`threaded`], [`e2e`] |
//! | B4 profile | callgrind per-call costs of (a), with fixes | [`profile`] |
//! | B4 copies | payload-sized copies and zero-fills per 64 KiB echo, per end | [`copies`] |
//! | B5 | idle trailing edge: last Send completion to release, worker wakeups | [`idle`] |
//! | B6 | free-list pop: locked vs tagged | [`freelist`] |
//! | B7 | scale: RSS and registered bytes per idle transport, calls/s with 1% of 10,000 connections active, the idle shrink over time | [`scale`] |
//!
//! Everything runs on [`device::CostDevice`], a DMA device whose only cost
//! is a busy wait in `dma_unmap`, so the lifecycle is measured alone (B3
//! also reruns Deferred and Workqueue on `rdmaxprt_mock::MockDevice` as a
//! cross-check).
//!
//! ```text
//! cargo run -p rdmaxprt-bench --release --bin bench-report [-- --quick]
//!     # tables on stdout, target/bench-report/{report.md,pool_size.svg,idle_shrink.svg}
//! cargo run -p rdmaxprt-bench --release --bin bench-report -- --only-scale [--quick]
//!     # B7 alone (each connection count in a child process)
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

pub mod alloc_count;
pub mod barrier;
pub mod copies;
pub mod device;
pub mod drain;
pub mod e2e;
pub mod freelist;
pub mod idle;
pub mod keepup;
pub mod plot;
pub mod profile;
pub mod put;
pub mod report;
pub mod rtc;
pub mod scale;
pub mod setup;
pub mod summary;
pub mod threaded;
pub mod timing;
