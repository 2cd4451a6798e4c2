//! The Workqueue policy at its safety cap (issue 8, defect d): a worker
//! waiting in `get` for a context must be woken when the workqueue puts one
//! back on the free list, even when no further Send completion comes.

#[path = "support/worker.rs"]
mod worker;

use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::mock::{Delivery, MockDevice, MockQp, QpConfig};
use rdmaxprt_core::backend::QueuePair;
use rdmaxprt_core::lifecycle::{SendCtxtLifecycle, Workqueue, WorkqueuePool};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{SvcRdmaXprt, XprtConfig};
use rdmaxprt_core::wait::{CondvarWait, WaitQueue};
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{PROC_ECHO, PROC_NULL};

const PROG: u32 = 0x2000_0042;
const VERS: u32 = 1;

/// The enqueue hook (the Workqueue policy never enqueues from a completion).
#[derive(Debug, Default)]
struct Hook {
    flags: XprtFlags,
}

impl Enqueue for Hook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {}
}

type WqServer = SvcRdmaXprt<Workqueue<MockDevice>, MockQp, Arc<Hook>, CondvarWait>;

/// Polls `cond` every millisecond for up to `limit`.
fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

#[test]
fn get_at_the_cap_is_woken_by_the_workqueue_release() {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, q).expect("qp pair");
    let hook = Arc::new(Hook::default());
    let caps = sq.caps();
    // No staging buffers: reply 1's payload goes into a page of its send
    // context, mapped per reply, so its release has an unmap to pay.
    let xcfg = XprtConfig {
        stage_bufs: 0,
        ..XprtConfig::default()
    };
    // One context: the second reply must wait for the first to come back.
    let pcfg = PoolConfig {
        cap: 1,
        ..PoolConfig::for_transport(caps.sq_depth, xcfg.credits, caps.max_send_sge)
    };
    let life: Workqueue<MockDevice> = Workqueue::new(dev.clone(), pcfg, WorkqueuePool::new(1));
    let x: Arc<WqServer> =
        Arc::new(SvcRdmaXprt::new(xcfg, sq, life, Arc::clone(&hook)).expect("server transport"));
    let mut c = RpcClient::new(cq, dev.clone(), ClientConfig::default()).expect("client");

    // One round trip for the credit grant; its context comes back.
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    dev.step_all();
    serve_for_wq(&x);
    dev.step_all();
    c.try_wait(&t).expect("reply").unwrap();
    x.poll(usize::MAX).unwrap();
    x.send_lifecycle().flush();
    assert_eq!(x.send_lifecycle().pool().census().free, 1);

    // Two calls land; the first reply RDMA Writes its payload from mapped
    // memory (an unmap to pay at release).
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 31 + 7) as u8).collect();
    let wchunk = CallOptions {
        write_chunk: Some(4096),
        ..CallOptions::default()
    };
    let t1 = c
        .start_call(PROG, VERS, PROC_ECHO, &payload, &wchunk)
        .unwrap();
    let t2 = c
        .start_call(PROG, VERS, PROC_ECHO, b"ping", &CallOptions::default())
        .unwrap();
    dev.step_all();

    // The worker: answers both; the second `sendto` finds the pool at its
    // cap (reply 1 posted, not completed) and waits.
    let (done_tx, done_rx) = mpsc::channel();
    let xw = Arc::clone(&x);
    std::thread::spawn(move || {
        let served = serve_for_wq(&xw);
        let _ = done_tx.send(served);
    });
    assert!(
        eventually(Duration::from_secs(10), || x
            .sq()
            .space_wait()
            .has_waiters()),
        "the worker waits at the cap: {:?} {:?} {:?}",
        done_rx.try_recv(),
        x.send_lifecycle().pool().census(),
        x.send_lifecycle().stats().snapshot()
    );

    // Reply 1's Send completes. Its release on the workqueue is slow (the
    // unmap costs 200 ms), so the woken `get` finds nothing free yet; only
    // the workqueue's release can wake it, as no completion follows.
    dev.set_unmap_cost(Duration::from_millis(200));
    assert!(x.qp().step(), "reply 1 runs");
    while x.qp().step() {}
    assert!(
        x.poll(usize::MAX).unwrap() >= 1,
        "its completion is handled"
    );
    let served = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the worker waiting at the cap was never woken (defect 8d)");
    dev.set_unmap_cost(Duration::ZERO);
    assert_eq!(served, 2);
    let s = x.send_lifecycle().stats().snapshot();
    assert!(s.cap_hits >= 1, "the cap was hit and counted: {s:?}");
    assert!(s.unmaps >= 1, "reply 1 had a mapping to release: {s:?}");

    // Both replies arrive intact.
    dev.step_all();
    let r1 = match c.try_wait(&t1) {
        Some(r) => r.unwrap(),
        None => c.wait(t1).unwrap(),
    };
    assert_eq!(r1.bulk.as_deref(), Some(&payload[..]));
    let r2 = match c.try_wait(&t2) {
        Some(r) => r.unwrap(),
        None => c.wait(t2).unwrap(),
    };
    assert_eq!(r2.results, b"ping");
    x.poll(usize::MAX).unwrap();
    x.send_lifecycle().flush();
    let census = x.send_lifecycle().pool().census();
    assert_eq!(census.free, 1, "{census:?}");
}

/// Worker passes until nothing moves.
fn serve_for_wq(x: &WqServer) -> usize {
    worker::serve_for(x, PROG)
}
