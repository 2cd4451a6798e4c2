//! The invariants of DESIGN.md, each proved on the mock NIC (the transport
//! and teardown ones are in `transport_*.rs`, the wire ones there and in the
//! fuzz corpus test; loom proves the interleavings in rdmaxprt-core).

use rdmaxprt::backend::{
    DmaBuf, DmaDevice, QueuePair, RecvWr, SendWr, Wc, WcOpcode, WcStatus, WrOp,
};
use rdmaxprt::lifecycle::{Deferred, GetError, SendCtxtLifecycle};
use rdmaxprt::mock::{Delivery, MockBuf, MockDevice, MockQp, QpConfig};
use rdmaxprt::pool::PoolConfig;
use rdmaxprt::sq::{Reserved, SqAccount, SqClosed};
use rdmaxprt::wait::CondvarWait;
use rdmaxprt::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[path = "support/alloc_count.rs"]
mod alloc_count;

use alloc_count::count_heap_ops;

#[derive(Default)]
struct Hook {
    flags: XprtFlags,
    enqueues: AtomicU32,
}
impl Enqueue for Hook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::SeqCst);
    }
}

fn wc0() -> Wc {
    Wc {
        wr_id: 0,
        status: WcStatus::Flushed,
        opcode: WcOpcode::Unknown,
        byte_len: 0,
        invalidated_rkey: None,
    }
}

struct Rig {
    dev: MockDevice,
    server: MockQp,
    client: MockQp,
    life: Deferred<MockDevice, Arc<Hook>>,
    hook: Arc<Hook>,
    rbufs: Vec<(MockBuf, rdmaxprt::backend::Sge)>,
}

fn rig(delivery: Delivery, cap: u32) -> Rig {
    let dev = MockDevice::new();
    let cfg = QpConfig {
        delivery,
        ..QpConfig::default()
    };
    let (server, client) = MockDevice::connect_pair(&dev, &dev, cfg).unwrap();
    let hook = Arc::new(Hook::default());
    let pcfg = PoolConfig {
        cap,
        ..PoolConfig::for_transport(64, 8, 8)
    };
    let life = Deferred::new(dev.clone(), pcfg, hook.clone());
    let mut rbufs = Vec::new();
    for i in 0..64 {
        let b = dev.alloc_buf(4096).unwrap();
        let s = dev.dma_map(&b, 0, 4096).unwrap();
        // SAFETY: the buffers outlive the QP drain in `finish`.
        unsafe { client.post_recv(&[RecvWr { wr_id: i, sge: s }]) }.unwrap();
        rbufs.push((b, s));
    }
    Rig {
        dev,
        server,
        client,
        life,
        hook,
        rbufs,
    }
}

impl Rig {
    /// sendto: a context with `pages` mapped reply pages, posted.
    fn send(&self, pages: usize) {
        let mut c = self.life.get().unwrap();
        for _ in 0..pages {
            let mut p = self.dev.alloc_buf(16).unwrap();
            p.as_mut_slice().fill(7);
            let i = c.add_page(p);
            c.map_page(&self.dev, i, 0, 16).unwrap();
        }
        c.set_sqecount(1);
        c.post(|wr_id, ctxt| {
            let wr = SendWr {
                wr_id,
                op: WrOp::Send,
                sges: ctxt.sges(),
                signaled: true,
            };
            // SAFETY: the context owns the memory until released.
            unsafe { self.server.post_send(&[wr]) }
        })
        .unwrap();
    }

    fn poll_and_put(&self) -> usize {
        let mut wcs = [wc0(); 16];
        let n = self.server.poll_send(&mut wcs).unwrap();
        for wc in &wcs[..n] {
            self.life.put(wc.wr_id).unwrap();
        }
        n
    }

    fn finish(self) {
        let _ = self.client.drain_qp();
        let _ = self.server.drain_qp();
        let mut wcs = [wc0(); 64];
        while self.client.poll_recv(&mut wcs).unwrap() > 0 {}
        self.poll_and_put();
        self.life.drain();
        for (_, s) in &self.rbufs {
            self.dev.dma_unmap(*s).unwrap();
        }
        let dev = self.dev.clone();
        drop(self);
        dev.assert_clean();
    }
}

#[test]
fn completion_path_allocates_nothing_unmaps_nothing_releases_no_page() {
    let r = rig(Delivery::Inline, 16);
    for _ in 0..4 {
        r.send(2);
    }
    let mut wcs = [wc0(); 16];
    let n = r.server.poll_send(&mut wcs).unwrap();
    assert_eq!(n, 4);
    let (maps, unmaps) = (r.dev.tracker().maps(), r.dev.tracker().unmaps());
    let live = r.dev.tracker().live_mappings();
    let (_, allocs) = count_heap_ops(|| {
        for wc in &wcs[..n] {
            r.life.put(wc.wr_id).unwrap();
        }
    });
    assert_eq!(allocs, 0, "put allocated or freed memory");
    assert_eq!(r.dev.tracker().unmaps(), unmaps, "put unmapped");
    assert_eq!(r.dev.tracker().maps(), maps);
    assert_eq!(
        r.dev.tracker().live_mappings(),
        live,
        "put released a mapping"
    );
    assert_eq!(
        r.hook.enqueues.load(Ordering::SeqCst),
        1,
        "one enqueue, on the empty edge only"
    );
    assert_eq!(r.life.pool().census().pending_release, 4);
    r.finish();
}

#[test]
fn every_posted_context_is_released_once_by_a_drain_and_unmapped_before_its_pages() {
    let r = rig(Delivery::Inline, 16);
    for round in 0..5 {
        for _ in 0..6 {
            r.send(3);
        }
        r.poll_and_put();
        let before = r.dev.tracker().unmaps();
        assert_eq!(r.life.drain(), 6, "round {round}");
        assert_eq!(
            r.dev.tracker().unmaps() - before,
            18,
            "each page SGE once, header never"
        );
        assert!(
            r.dev.tracker().violations().is_empty(),
            "{:?}",
            r.dev.tracker().violations()
        );
    }
    let s = r.life.stats().snapshot();
    assert_eq!((s.completions, s.drained, s.unmaps), (30, 30, 90));
    // A second drain finds nothing: released exactly once.
    assert_eq!(r.life.drain(), 0);
    r.finish();
}

#[test]
fn get_recycles_before_allocating_and_reports_the_cap() {
    let r = rig(Delivery::Inline, 3);
    for _ in 0..3 {
        r.send(1);
    }
    assert!(
        matches!(r.life.get(), Err(GetError::AtCap)),
        "fourth context past a cap of 3"
    );
    r.poll_and_put();
    let allocs = r.life.stats().snapshot().allocations;
    for _ in 0..10 {
        r.send(1);
        r.poll_and_put();
    }
    assert_eq!(
        r.life.stats().snapshot().allocations,
        allocs,
        "allocated while contexts waited for release"
    );
    assert_eq!(r.life.pool().census().allocated, 3);
    r.finish();
}

#[test]
fn idle_transports_last_completion_is_released_within_one_wakeup() {
    let r = rig(Delivery::Stepped, 16);
    r.send(1);
    r.send(1);
    // The worker's last release_ctxt runs before the completions exist.
    assert_eq!(r.life.drain(), 0);
    // The NIC completes later; the completion path runs; nobody sends more.
    r.dev.step_all();
    assert_eq!(r.poll_and_put(), 2);
    assert_eq!(
        r.hook.enqueues.load(Ordering::SeqCst),
        1,
        "the backstop fired once"
    );
    assert!(r.hook.flags.test(XprtFlags::DATA));
    // That one wakeup: recvfrom finds nothing, clears DATA, release drains.
    r.hook.flags.clear(XprtFlags::DATA);
    assert_eq!(r.life.drain(), 2);
    assert_eq!(r.life.pool().census().pending_release, 0);
    r.finish();
}

fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

#[test]
fn sq_waiters_are_served_in_ticket_order_and_told_to_drain() {
    let sq = Arc::new(SqAccount::<CondvarWait>::new(2));
    assert_eq!(sq.reserve(2), Ok(Reserved::Immediately));
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut ts = Vec::new();
    for i in 0..3u32 {
        let (sq2, order) = (sq.clone(), order.clone());
        ts.push(std::thread::spawn(move || {
            let r = sq2.reserve(1);
            order.lock().unwrap().push(i);
            r
        }));
        // Thread i holds ticket i before thread i + 1 starts.
        wait_until(|| sq.tickets_issued() == i + 1);
    }
    for k in 1..=3 {
        // A Send completion returns one slot.
        sq.wake_send_waiters(1);
        wait_until(|| order.lock().unwrap().len() == k);
    }
    for t in ts {
        assert_eq!(
            t.join().unwrap(),
            Ok(Reserved::AfterWait),
            "a waiter must drain after waiting"
        );
    }
    assert_eq!(
        *order.lock().unwrap(),
        [0, 1, 2],
        "tickets served out of order"
    );
    assert_eq!(sq.avail(), 0);
}

#[test]
fn close_wakes_every_sq_waiter() {
    let sq = Arc::new(SqAccount::<CondvarWait>::new(1));
    assert_eq!(sq.reserve(1), Ok(Reserved::Immediately));
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let sq = sq.clone();
            std::thread::spawn(move || sq.reserve(1))
        })
        .collect();
    wait_until(|| sq.tickets_issued() == 4);
    sq.close();
    for t in ts {
        assert_eq!(t.join().unwrap(), Err(SqClosed));
    }
    assert_eq!(sq.reserve(1), Err(SqClosed), "closed stays closed");
}

#[test]
fn the_allocation_counter_sees_an_inline_release() {
    // Proves the harness above can fail: Inline's put frees reply pages.
    let dev = MockDevice::new();
    let (server, client) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let life = rdmaxprt::lifecycle::Inline::<MockDevice>::new(
        dev.clone(),
        PoolConfig::for_transport(8, 8, 8),
    );
    let b = dev.alloc_buf(64).unwrap();
    let s = dev.dma_map(&b, 0, 64).unwrap();
    // SAFETY: `b` outlives the drain below.
    unsafe { client.post_recv(&[RecvWr { wr_id: 0, sge: s }]) }.unwrap();
    let mut c = life.get().unwrap();
    let i = c.add_page(dev.alloc_buf(8).unwrap());
    c.map_page(&dev, i, 0, 8).unwrap();
    c.set_sqecount(1);
    c.post(|wr_id, ctxt| {
        let wr = SendWr {
            wr_id,
            op: WrOp::Send,
            sges: ctxt.sges(),
            signaled: true,
        };
        // SAFETY: the context owns the memory until released.
        unsafe { server.post_send(&[wr]) }
    })
    .unwrap();
    let mut wcs = [wc0(); 1];
    assert_eq!(server.poll_send(&mut wcs).unwrap(), 1);
    let (_, allocs) = count_heap_ops(|| life.put(wcs[0].wr_id).unwrap());
    assert!(allocs > 0, "Inline releases pages on the completion path");
    let _ = client.drain_qp();
    while client.poll_recv(&mut wcs).unwrap() > 0 {}
    dev.dma_unmap(s).unwrap();
    drop(life);
    dev.assert_clean();
}
