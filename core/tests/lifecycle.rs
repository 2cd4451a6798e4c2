//! Lifecycle behaviour on the core's fake device: one test per invariant
//! that does not need a NIC (the NIC-level ones run on rdmaxprt-mock).
#![cfg(not(rdmaxprt_loom))]

mod common;

use common::{CountingXprt, Event, FakeDev};
use rdmaxprt_core::backend::{ErrorKind, PostError};
use rdmaxprt_core::lifecycle::{
    Deferred, GetError, Inline, SendCtxtLifecycle, Workqueue, WorkqueuePool,
};
use rdmaxprt_core::pool::{CompletionError, PoolConfig};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn cfg(cap: u32) -> PoolConfig {
    PoolConfig {
        cap,
        hdr_size: 256,
        max_sges: 4,
        xprt_id: 7,
    }
}

/// Gets a context, maps `pages` pages into it and posts it; returns wr_id.
fn build_and_post<L: SendCtxtLifecycle<Dev = FakeDev>>(life: &L, pages: usize) -> u64 {
    let mut c = life.get().expect("get");
    let dev = c.device().clone();
    for _ in 0..pages {
        let p = c.add_page(rdmaxprt_core::backend::DmaDevice::alloc_buf(&dev, 64).unwrap());
        c.map_page(&dev, p, 0, 64).unwrap();
    }
    c.set_header_len(28).unwrap();
    let mut id = 0;
    c.post(|wr_id, _| {
        id = wr_id;
        Ok::<(), PostError<ErrorKind>>(())
    })
    .unwrap();
    id
}

#[test]
fn completion_path_does_not_unmap_or_release_pages() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(8), &x);
    let id = build_and_post(&life, 2);
    dev.clear_events();
    life.put(id).unwrap();
    assert!(
        dev.events().is_empty(),
        "put touched mappings or pages: {:?}",
        dev.events()
    );
    assert_eq!(life.pool().census().pending_release, 1);
}

#[test]
fn drain_unmaps_every_sge_but_the_header_once_then_releases_pages() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(8), &x);
    let id = build_and_post(&life, 3);
    life.put(id).unwrap();
    let live_before = dev.live();
    dev.clear_events();
    assert_eq!(life.drain(), 1);
    let ev = dev.events();
    let unmaps: Vec<_> = ev.iter().filter(|e| matches!(e, Event::Unmap(_))).collect();
    let first_drop = ev.iter().position(|e| matches!(e, Event::Drop(_))).unwrap();
    let last_unmap = ev
        .iter()
        .rposition(|e| matches!(e, Event::Unmap(_)))
        .unwrap();
    assert_eq!(unmaps.len(), 3, "each mapped page SGE exactly once: {ev:?}");
    assert!(
        last_unmap < first_drop,
        "pages dropped before unmap: {ev:?}"
    );
    assert_eq!(dev.live(), live_before - 3, "the header SGE stays mapped");
    assert_eq!(dev.live(), 1);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    assert_eq!(life.stats().snapshot().unmaps, 3);
}

#[test]
fn backstop_enqueues_only_on_the_empty_to_non_empty_edge() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev, cfg(8), &x);
    let ids: Vec<u64> = (0..4).map(|_| build_and_post(&life, 1)).collect();
    for id in &ids {
        life.put(*id).unwrap();
    }
    assert_eq!(x.enqueues.load(Ordering::SeqCst), 1);
    assert!(x.flags.test(rdmaxprt_core::xprt::XprtFlags::DATA));
    assert_eq!(life.drain(), 4);
    let id = build_and_post(&life, 1);
    life.put(id).unwrap();
    assert_eq!(
        x.enqueues.load(Ordering::SeqCst),
        2,
        "trailing edge enqueues again"
    );
    assert_eq!(life.stats().snapshot().backstop_enqueues, 2);
}

#[test]
fn get_drains_before_allocating() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev, cfg(8), &x);
    let a = build_and_post(&life, 1);
    let b = build_and_post(&life, 1);
    life.put(a).unwrap();
    life.put(b).unwrap();
    let allocs = life.stats().snapshot().allocations;
    let c = life.get().unwrap();
    assert_eq!(
        life.stats().snapshot().allocations,
        allocs,
        "allocated despite pending releases"
    );
    assert_eq!(
        life.pool().census().free,
        1,
        "the drain returned both; one taken"
    );
    drop(c);
}

#[test]
fn get_waits_at_the_cap_and_never_exceeds_it() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev, cfg(2), &x);
    let a = build_and_post(&life, 0);
    let _b = build_and_post(&life, 0);
    assert!(matches!(life.get(), Err(GetError::AtCap)));
    assert_eq!(life.stats().snapshot().waits_at_cap, 1);
    assert_eq!(life.pool().census().allocated, 2);
    life.put(a).unwrap();
    assert!(life.get().is_ok(), "a completion makes room");
}

#[test]
fn bad_completions_are_typed_errors_and_touch_nothing() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev, cfg(4), &x);
    let id = build_and_post(&life, 1);
    assert_eq!(life.put(99), Err(CompletionError::UnknownWrId(99)));
    assert_eq!(
        life.put(id ^ (1 << 40)),
        Err(CompletionError::StaleGeneration(id ^ (1 << 40)))
    );
    life.put(id).unwrap();
    assert_eq!(
        life.put(id),
        Err(CompletionError::NotPosted(id)),
        "duplicate completion"
    );
    assert_eq!(life.drain(), 1);
    let _ = build_and_post(&life, 0); // reuses the slot with a new generation
    assert!(matches!(
        life.put(id),
        Err(CompletionError::StaleGeneration(_))
    ));
    assert_eq!(life.stats().snapshot().bad_completions, 4);
}

#[test]
fn unconsumed_post_failure_releases_on_the_forward_path() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(4), &x);
    let mut c = life.get().unwrap();
    let p = c.add_page(rdmaxprt_core::backend::DmaDevice::alloc_buf(&dev, 64).unwrap());
    c.map_page(&dev, p, 0, 64).unwrap();
    let err = c
        .post(|_, _| {
            Err(PostError {
                consumed: 0,
                error: ErrorKind::SendQueueFull,
            })
        })
        .unwrap_err();
    assert_eq!(err.error.consumed, 0);
    let census = life.pool().census();
    assert_eq!((census.free, census.posted), (1, 0));
    assert_eq!(dev.live(), 1, "page unmapped, header kept");
    assert!(dev.violations().is_empty());
}

#[test]
fn completion_racing_the_poster_is_put_by_the_poster() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev, cfg(4), &x);
    let c = life.get().unwrap();
    c.post(|wr_id, _| {
        // The completion arrives before post returns.
        life.put(wr_id).unwrap();
        assert_eq!(life.pool().census().pending_release, 1);
        Ok::<(), PostError<ErrorKind>>(())
    })
    .unwrap();
    assert_eq!(life.drain(), 1, "the poster's commit pushed it");
}

#[test]
fn dropping_the_pool_unmaps_headers_and_leaks_nothing() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    {
        let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(4), &x);
        let id = build_and_post(&life, 2);
        let _ = build_and_post(&life, 1);
        life.put(id).unwrap();
        // Teardown as the transport does it: the QP is drained (nothing can
        // touch the memory), so the still-posted one is reclaimed.
        life.drain();
        // SAFETY: no QP exists in this test; nothing is outstanding.
        assert_eq!(unsafe { life.pool().reclaim_after_qp_drain() }, 1);
    }
    assert_eq!(dev.live(), 0);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

#[test]
fn failed_allocation_keeps_the_cap_exact() {
    let dev = FakeDev::default();
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(dev.clone(), cfg(2), &x);
    dev.fail_alloc.store(true, Ordering::Relaxed);
    assert!(matches!(
        life.get(),
        Err(GetError::Alloc(ErrorKind::OutOfResources))
    ));
    dev.fail_alloc.store(false, Ordering::Relaxed);
    let a = life.get().unwrap();
    let b = life.get().unwrap();
    assert!(matches!(life.get(), Err(GetError::AtCap)));
    drop((a, b));
    let c = life.pool().census();
    assert_eq!((c.allocated, c.free), (2, 2));
}

#[test]
fn inline_releases_on_the_completion_path() {
    let dev = FakeDev::default();
    let life: Inline<_> = Inline::new(dev.clone(), cfg(4));
    let id = build_and_post(&life, 2);
    life.put(id).unwrap();
    assert_eq!(dev.live(), 1);
    assert_eq!(life.pool().census().free, 1);
    assert_eq!(life.drain(), 0);
}

#[test]
fn workqueue_releases_on_its_threads_and_allocates_instead_of_draining() {
    let dev = FakeDev::default();
    let wq = WorkqueuePool::new(1);
    let life: Workqueue<_> = Workqueue::new(dev.clone(), cfg(64), wq);
    let id = build_and_post(&life, 1);
    life.put(id).unwrap();
    life.flush();
    assert_eq!(life.in_transit(), 0);
    assert_eq!(life.pool().census().free, 1);
    assert_eq!(dev.live(), 1);
    assert_eq!(life.stats().snapshot().completions, 1);
}

#[test]
fn workqueue_runs_every_item_on_n_workers_with_at_most_one_wakeup_each() {
    let dev = FakeDev::default();
    let wq = WorkqueuePool::new(2);
    let life: Workqueue<_> = Workqueue::new(dev.clone(), cfg(256), wq.clone());
    let ids: Vec<u64> = (0..200).map(|_| build_and_post(&life, 1)).collect();
    for id in &ids {
        life.put(*id).unwrap();
    }
    life.flush();
    assert_eq!(life.in_transit(), 0);
    assert_eq!(life.pool().census().free, 200);
    assert_eq!(life.stats().snapshot().completions, 200);
    assert_eq!(dev.live(), 200, "header SGEs only");
    // A worker is notified only when none is awake and none is on its way.
    assert!(
        wq.wakeups() <= 200,
        "{} wakeups for 200 items",
        wq.wakeups()
    );
}

#[test]
fn workqueue_get_at_its_cap_waits_for_contexts_in_transit_else_reports_at_cap() {
    let dev = FakeDev::default();
    let life: Workqueue<_> = Workqueue::new(dev.clone(), cfg(2), WorkqueuePool::new(1));
    let a = build_and_post(&life, 1);
    let _b = build_and_post(&life, 1);
    // Nothing free, nothing in transit: AtCap, counted.
    assert!(matches!(life.get(), Err(GetError::AtCap)));
    assert_eq!(life.stats().snapshot().cap_hits, 1);
    // One in transit: `get` returns it once the worker has released it,
    // whatever the race with the worker.
    life.put(a).unwrap();
    let c = life.get().expect("the context in transit comes back");
    drop(c);
    life.flush();
    assert_eq!(life.in_transit(), 0);
}

#[test]
fn accounting_identity_holds_for_every_policy() {
    fn check<L: SendCtxtLifecycle<Dev = FakeDev>>(life: &L) {
        let ids: Vec<u64> = (0..3).map(|_| build_and_post(life, 1)).collect();
        let owned = life.get().unwrap();
        life.put(ids[0]).unwrap();
        life.flush();
        let c = life.pool().census();
        assert_eq!(
            c.allocated,
            c.free + c.owned + c.posted + c.pending_release,
            "{c:?}"
        );
        assert_eq!(c.owned, 1);
        drop(owned);
    }
    let x = CountingXprt::default();
    check(&Deferred::<_, _>::new(FakeDev::default(), cfg(8), &x));
    check(&Inline::<_>::new(FakeDev::default(), cfg(8)));
    check(&Workqueue::<_>::new(
        FakeDev::default(),
        cfg(8),
        WorkqueuePool::new(1),
    ));
    let _ = Arc::new(0);
}
