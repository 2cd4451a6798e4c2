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
//! is a busy wait in `dma_unmap`, so the lifecycle is measured alone.

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
