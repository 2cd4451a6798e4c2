//! The idle send-context shrink on the core's fake device: only free-list
//! contexts are freed, the census and counters stay consistent, a shrunk
//! pool grows again under load, and teardown after shrinks leaks nothing.
#![cfg(not(rdmaxprt_loom))]

mod common;

use common::{CountingXprt, FakeDev};
use rdmaxprt_core::backend::{ErrorKind, PostError};
use rdmaxprt_core::lifecycle::{Deferred, GetError, Inline, OwnedCtxt, SendCtxtLifecycle};
use rdmaxprt_core::pool::{Census, PoolConfig};
use std::sync::atomic::Ordering;

fn cfg(cap: u32) -> PoolConfig {
    PoolConfig {
        cap,
        hdr_size: 256,
        max_sges: 4,
        xprt_id: 3,
    }
}

/// Posts an owned context with one mapped page; returns its wr_id.
fn post<L: SendCtxtLifecycle<Dev = FakeDev>>(mut c: OwnedCtxt<'_, L>) -> u64 {
    let dev = c.device().clone();
    let p = c.add_page(rdmaxprt_core::backend::DmaDevice::alloc_buf(&dev, 64).unwrap());
    c.map_page(&dev, p, 0, 64).unwrap();
    c.set_header_len(28).unwrap();
    let mut id = 0;
    c.post(|wr_id, _| {
        id = wr_id;
        Ok::<(), PostError<ErrorKind>>(())
    })
    .unwrap();
    id
}

/// The accounting identities that must hold on a quiescent pool.
fn consistent<L: SendCtxtLifecycle>(life: &L, cap: u32) -> Census {
    let c = life.pool().census();
    let s = life.stats().snapshot();
    assert_eq!(
        c.allocated,
        c.free + c.owned + c.posted + c.pending_release,
        "{c:?}"
    );
    assert!(c.allocated + c.hollow <= cap, "{c:?}");
    assert_eq!(s.pool_size, u64::from(c.allocated), "{s:?} vs {c:?}");
    assert_eq!(s.allocations - s.shrunk, s.pool_size, "{s:?}");
    assert_eq!(s.in_use, u64::from(c.owned + c.posted + c.pending_release));
    c
}

#[test]
fn shrink_frees_only_free_contexts_above_the_floor() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(16), &x);
    let mut held: Vec<_> = (0..10).map(|_| life.get().unwrap()).collect();
    let ids: Vec<u64> = held.drain(..3).map(post).collect();
    let owned: Vec<_> = held.drain(..2).collect();
    drop(held); // 5 back on the free list
    assert_eq!(consistent(&life, 16).free, 5);
    let posted_maps = dev.live();

    // Floor 4, but 5 are in use: every free one goes, nothing else.
    assert_eq!(life.pool().shrink(4), 5);
    let c = consistent(&life, 16);
    assert_eq!((c.allocated, c.free, c.hollow), (5, 0, 5), "{c:?}");
    assert_eq!((c.posted, c.owned), (3, 2));
    assert_eq!(dev.live(), posted_maps - 5, "five header mappings undone");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());

    // The posted ones complete normally: the shrink left them alone.
    for id in ids {
        life.put(id).expect("still posted");
    }
    assert_eq!(life.drain(), 3);
    drop(owned);
    // Now 5 free, floor 4: one goes.
    assert_eq!(life.pool().shrink(4), 1);
    let c = consistent(&life, 16);
    assert_eq!((c.allocated, c.free, c.hollow), (4, 4, 6), "{c:?}");
    assert_eq!(life.pool().shrink(4), 0, "at the floor already");
    assert_eq!(life.stats().snapshot().shrunk, 6);
    assert_eq!(dev.live(), 4, "one header mapping per context left");
}

#[test]
fn a_shrunk_pool_reuses_free_contexts_first_then_grows_again() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(8), &x);
    drop((0..8).map(|_| life.get().unwrap()).collect::<Vec<_>>());
    assert_eq!(life.pool().shrink(2), 6);
    let before = life.stats().snapshot().allocations;

    // Load again: the two kept contexts first, no allocation.
    let a = life.get().unwrap();
    let b = life.get().unwrap();
    assert_eq!(life.stats().snapshot().allocations, before);
    // Then the hollow slots are refilled, up to the same cap.
    let mut more: Vec<_> = (0..6).map(|_| life.get().unwrap()).collect();
    assert_eq!(life.stats().snapshot().allocations, before + 6);
    assert!(matches!(life.get(), Err(GetError::AtCap)));
    let c = consistent(&life, 8);
    assert_eq!((c.allocated, c.owned, c.hollow), (8, 8, 0), "{c:?}");
    // The regrown contexts work: post one, complete it, release it.
    let id = post(more.pop().unwrap());
    life.put(id).unwrap();
    assert_eq!(life.drain(), 1);
    drop((a, b, more));
    assert_eq!(consistent(&life, 8).free, 8);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

#[test]
fn a_failed_reallocation_keeps_the_slot_hollow() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(2), &x);
    drop((life.get().unwrap(), life.get().unwrap()));
    assert_eq!(life.pool().shrink(0), 2);
    dev.fail_alloc.store(true, Ordering::Relaxed);
    assert!(matches!(
        life.get(),
        Err(GetError::Alloc(ErrorKind::OutOfResources))
    ));
    let c = consistent(&life, 2);
    assert_eq!((c.allocated, c.hollow), (0, 2), "{c:?}");
    dev.fail_alloc.store(false, Ordering::Relaxed);
    let a = life.get().unwrap();
    let b = life.get().unwrap();
    assert!(matches!(life.get(), Err(GetError::AtCap)));
    drop((a, b));
    assert_eq!(consistent(&life, 2).free, 2);
}

#[test]
fn teardown_after_shrinks_leaks_nothing() {
    let dev = FakeDev::default();
    {
        let life: Inline<_> = Inline::new(dev.clone(), cfg(8));
        for round in 0..3 {
            let held: Vec<_> = (0..8).map(|_| life.get().unwrap()).collect();
            let ids: Vec<u64> = held.into_iter().map(post).collect();
            for id in ids {
                life.put(id).unwrap();
            }
            assert_eq!(life.pool().shrink(round), 8 - round as usize);
            consistent(&life, 8);
        }
        assert_eq!(dev.live(), 2);
    }
    assert_eq!(dev.live(), 0, "teardown left mappings");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

/// Shrinks hammer a pool while two threads get, post, complete and drain:
/// no completion ever finds its context freed, and the census adds up.
#[test]
fn shrink_races_a_busy_pool() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(16), &x);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                life.pool().shrink(1);
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..2000 {
                        let ids: Vec<u64> =
                            (0..3).filter_map(|_| life.get().ok()).map(post).collect();
                        for id in ids {
                            life.put(id).expect("a posted context was touched");
                        }
                        life.drain();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    life.drain();
    let c = consistent(&life, 16);
    assert_eq!(c.free, c.allocated, "{c:?}");
    assert!(life.stats().snapshot().shrunk > 0, "the shrinker never ran");
    assert_eq!(dev.live(), c.allocated as usize);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}
