//! Random get/post/complete/drain/close sequences against a simple model:
//! after every step `allocated == free + owned + posted + pending_release`,
//! the census matches the model, and the device holds exactly the mappings
//! the model says are live.
#![cfg(not(rdmaxprt_loom))]

mod common;

use common::{CountingXprt, FakeDev};
use proptest::prelude::*;
use rdmaxprt_core::backend::{DmaDevice, ErrorKind, PostError};
use rdmaxprt_core::lifecycle::{
    Deferred, GetError, Inline, OwnedCtxt, SendCtxtLifecycle, Workqueue, WorkqueuePool,
};
use rdmaxprt_core::pool::PoolConfig;

#[derive(Debug, Clone)]
enum Op {
    Get { pages: usize },
    Post { which: usize, fail: bool },
    Complete { which: usize },
    Drop { which: usize },
    Drain,
    Garbage { wr_id: u64 },
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..3).prop_map(|pages| Op::Get { pages }),
        3 => (any::<usize>(), prop::bool::weighted(0.15)).prop_map(|(which, fail)| Op::Post { which, fail }),
        3 => any::<usize>().prop_map(|which| Op::Complete { which }),
        1 => any::<usize>().prop_map(|which| Op::Drop { which }),
        2 => Just(Op::Drain),
        1 => any::<u64>().prop_map(|wr_id| Op::Garbage { wr_id }),
        1 => Just(Op::Close),
    ]
}

/// What the model tracks: contexts per state and the page mappings each
/// holds (the header mapping is one per allocated context).
#[derive(Default)]
struct Model {
    posted: Vec<(u64, usize)>,
    pending: Vec<usize>,
    drained_by_put: bool,
}

fn run<L: SendCtxtLifecycle<Dev = FakeDev>>(life: &L, dev: &FakeDev, ops: &[Op], cap: u32) {
    let mut owned: Vec<(OwnedCtxt<'_, L>, usize)> = Vec::new();
    let mut m = Model {
        drained_by_put: !matches!(L::POLICY, rdmaxprt_core::lifecycle::Policy::Deferred),
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Get { pages } => {
                // Deferred's get drains when the free list is empty.
                let drains = matches!(L::POLICY, rdmaxprt_core::lifecycle::Policy::Deferred)
                    && !life.pool().has_free();
                match life.get() {
                    Ok(mut c) => {
                        if drains {
                            m.pending.clear();
                        }
                        let d = c.device().clone();
                        for _ in 0..*pages {
                            let p = c.add_page(d.alloc_buf(32).unwrap());
                            c.map_page(&d, p, 0, 32).unwrap();
                        }
                        owned.push((c, *pages));
                    }
                    Err(GetError::AtCap) => {
                        let census = life.pool().census();
                        assert_eq!(census.allocated, cap, "AtCap below the cap");
                        assert_eq!(census.free, 0, "AtCap with a free context");
                        if matches!(L::POLICY, rdmaxprt_core::lifecycle::Policy::Deferred) {
                            assert_eq!(census.pending_release, 0, "AtCap without draining");
                            m.pending.clear();
                        }
                    }
                    Err(e) => panic!("get: {e}"),
                }
            }
            Op::Post { which, fail } if !owned.is_empty() => {
                let (c, pages) = owned.swap_remove(which % owned.len());
                let mut id = 0;
                let r = c.post(|w, _| {
                    id = w;
                    if *fail {
                        Err(PostError {
                            consumed: 0,
                            error: ErrorKind::SendQueueFull,
                        })
                    } else {
                        Ok(())
                    }
                });
                assert_eq!(r.is_err(), *fail);
                if !fail {
                    m.posted.push((id, pages));
                }
            }
            Op::Complete { which } if !m.posted.is_empty() => {
                let (id, pages) = m.posted.swap_remove(which % m.posted.len());
                life.put(id).unwrap();
                life.flush_if_async();
                if !m.drained_by_put {
                    m.pending.push(pages);
                }
            }
            Op::Drop { which } if !owned.is_empty() => {
                drop(owned.swap_remove(which % owned.len()));
            }
            Op::Drain => {
                life.drain();
                m.pending.clear();
            }
            Op::Garbage { wr_id } if !m.posted.iter().any(|(id, _)| id == wr_id) => {
                assert!(
                    life.put(*wr_id).is_err(),
                    "garbage wr_id {wr_id:#x} accepted"
                );
            }
            Op::Close => {
                owned.clear();
                // The QP drain flushes every posted WR: each completes.
                for (id, _) in m.posted.drain(..) {
                    life.put(id).unwrap();
                }
                life.flush();
                m.pending.clear();
                let c = life.pool().census();
                assert_eq!(c.free, c.allocated, "teardown left contexts behind: {c:?}");
            }
            _ => {}
        }
        let c = life.pool().census();
        assert_eq!(
            c.allocated,
            c.free + c.owned + c.posted + c.pending_release,
            "{c:?}"
        );
        assert_eq!(c.owned as usize, owned.len());
        assert_eq!(c.posted as usize, m.posted.len());
        assert_eq!(c.pending_release as usize, m.pending.len(), "{c:?}");
        let page_maps: usize = owned.iter().map(|(_, p)| p).sum::<usize>()
            + m.posted.iter().map(|(_, p)| p).sum::<usize>()
            + m.pending.iter().sum::<usize>();
        assert_eq!(
            dev.live(),
            c.allocated as usize + page_maps,
            "mapping leak or double unmap"
        );
        assert!(c.allocated <= cap);
        assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    }
}

/// Workqueue releases asynchronously; the model waits for it after each
/// completion so its state is deterministic.
trait FlushIfAsync {
    fn flush_if_async(&self);
}
impl<L: SendCtxtLifecycle> FlushIfAsync for L {
    fn flush_if_async(&self) {
        if matches!(L::POLICY, rdmaxprt_core::lifecycle::Policy::Workqueue) {
            self.flush();
        }
    }
}

fn cfg(cap: u32) -> PoolConfig {
    PoolConfig {
        cap,
        hdr_size: 64,
        max_sges: 4,
        xprt_id: 3,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn deferred_accounting_matches_the_model(ops in prop::collection::vec(op(), 1..80), cap in 1u32..6) {
        let dev = FakeDev::default();
        let x = CountingXprt::default();
        let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(cap), &x);
        run(&life, &dev, &ops, cap);
    }

    #[test]
    fn inline_accounting_matches_the_model(ops in prop::collection::vec(op(), 1..80), cap in 1u32..6) {
        let dev = FakeDev::default();
        let life: Inline<_> = Inline::new(dev.clone(), cfg(cap));
        run(&life, &dev, &ops, cap);
    }

    #[test]
    fn workqueue_accounting_matches_the_model(ops in prop::collection::vec(op(), 1..60), cap in 1u32..6) {
        let dev = FakeDev::default();
        let life: Workqueue<_> = Workqueue::new(dev.clone(), cfg(cap), WorkqueuePool::new(1));
        run(&life, &dev, &ops, cap);
    }
}
