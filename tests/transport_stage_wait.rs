//! A reply that finds no registered memory to stage its copied chunk data
//! (every large chunk of a whole-chunk pool held by landing and staging
//! buffers) waits for a reply in flight to give its buffers back, instead
//! of failing and closing the connection.

#[path = "support/chunks.rs"]
mod chunks;
#[path = "transport_common.rs"]
mod common;

use chunks::Chunks;
use common::{worker, Hook, PROC_ECHO, PROC_NULL, PROG, VERS};
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient, Ticket};
use rdmaxprt::mock::{Delivery, MockDevice, MockQp, QpConfig};
use rdmaxprt_core::backend::QueuePair;
use rdmaxprt_core::lifecycle::Deferred;
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{SvcRdmaXprt, XprtConfig};
use rdmaxprt_core::wait::CondvarWait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BIG: usize = 64 * 1024;

type Server = SvcRdmaXprt<Deferred<Chunks, Arc<Hook>>, MockQp, Arc<Hook>, CondvarWait>;
type Client = RpcClient<MockQp, MockDevice>;

/// An echo of `args` pulled through a Read chunk and answered through a
/// Reply chunk (no Write chunk): the server copies the reply into a
/// staging buffer, so each call holds a large landing and a large staging
/// buffer.
fn start(c: &mut Client, args: &[u8]) -> Ticket {
    let opts = CallOptions {
        reply_chunk: Some(args.len() as u32 + 1024),
        ..CallOptions::default()
    };
    c.start_call(PROG, VERS, PROC_ECHO, args, &opts).unwrap()
}

fn step(devs: &[&MockDevice]) {
    for d in devs {
        d.step_all();
    }
}

fn next_call<'x>(x: &'x Server, devs: &[&MockDevice]) -> rdmaxprt_core::transport::RecvdCall<'x> {
    for _ in 0..100 {
        step(devs);
        x.poll(usize::MAX).unwrap();
        if let Some(call) = x.recvfrom().unwrap() {
            return call;
        }
    }
    panic!("no call arrived");
}

#[test]
fn a_reply_short_of_staging_memory_waits_for_one_in_flight_instead_of_closing() {
    let (cdev, sdev) = (MockDevice::new(), MockDevice::new());
    let qcfg = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (cq, sq) = MockDevice::connect_pair(&cdev, &sdev, qcfg).unwrap();
    // Two large chunks: one landing and one staging buffer.
    let chunks = Chunks::new(&sdev, 2);
    let xcfg = XprtConfig {
        read_bufs: 1,
        stage_bufs: 1,
        ..XprtConfig::default()
    };
    let hook = Arc::new(Hook::default());
    let caps = sq.caps();
    let pool = PoolConfig::for_transport(caps.sq_depth, xcfg.credits, caps.max_send_sge);
    let life = Deferred::new(chunks.clone(), pool, Arc::clone(&hook));
    let x: Server = SvcRdmaXprt::new(xcfg, sq, life, hook).unwrap();
    let mut c = RpcClient::new(cq, cdev.clone(), ClientConfig::default()).unwrap();
    let devs = [&cdev, &sdev];
    // NULL round trips: one (the client then holds the full grant), then
    // four at once, so the send-context pool holds free contexts and B's
    // `get` below takes one without draining A's completed context.
    let null = |c: &mut Client| {
        c.start_call(PROG, VERS, PROC_NULL, &[], &CallOptions::default())
            .unwrap()
    };
    let serve_until = |c: &mut Client, t: &Ticket| {
        for _ in 0..100 {
            step(&devs);
            worker::serve_for(&x, PROG);
            if let Some(r) = c.try_wait(t) {
                r.unwrap();
                return;
            }
        }
        panic!("NULL call never answered");
    };
    let t = null(&mut c);
    serve_until(&mut c, &t);
    let ts: Vec<Ticket> = (0..4).map(|_| null(&mut c)).collect();
    for t in &ts {
        serve_until(&mut c, t);
    }
    assert!(x.send_ctxts() >= 3, "{}", x.send_ctxts());
    let (a, b) = (common::pattern(BIG, 1), common::pattern(BIG, 2));
    let ta = start(&mut c, &a);
    let tb = start(&mut c, &b);
    // A: landing buffer (chunk 1), reply staged (chunk 2), posted. Its
    // landing buffer is free again once the call is dropped.
    let call_a = next_call(&x, &devs);
    worker::echo_call(&x, &call_a, PROG).unwrap();
    drop(call_a);
    // B lands in the same landing buffer; stepping runs its Reads and A's
    // reply, whose completion is not polled yet: A's context still holds
    // the staging buffer, and no chunk is left for B's reply.
    let call_b = next_call(&x, &devs);
    assert_eq!(chunks.live.load(Ordering::SeqCst), 2);
    let stop = AtomicBool::new(false);
    let res = std::thread::scope(|s| {
        // The poller: handles A's Send completion a little later.
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            while !stop.load(Ordering::SeqCst) {
                step(&devs);
                x.poll(usize::MAX).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let res = worker::echo_call(&x, &call_b, PROG);
        stop.store(true, Ordering::SeqCst);
        res
    });
    assert!(res.is_ok(), "B's reply failed: {res:?}");
    assert_eq!(x.counters().stage_waits.load(Ordering::Relaxed), 1);
    assert_eq!(x.counters().reply_chunks.load(Ordering::Relaxed), 2);
    drop(call_b);
    for (t, want) in [(ta, &a), (tb, &b)] {
        let mut got = None;
        for _ in 0..1000 {
            step(&devs);
            x.poll(usize::MAX).unwrap();
            x.release_ctxt();
            if let Some(r) = c.try_wait(&t) {
                got = Some(r.unwrap());
                break;
            }
        }
        let got = got.expect("answered");
        assert_eq!(got.results, want[..]);
    }
    let r = x.free();
    assert_eq!((r.reclaimed_send, r.bufs_held), (0, 0), "{r:?}");
    assert_eq!(chunks.live.load(Ordering::SeqCst), 0, "every chunk back");
    drop(c);
    cdev.assert_clean();
    sdev.assert_clean();
}
