//! Regression tests for the defects of issue 8 section 2 (a, b, e, f, g,
//! h; c is a `compile_fail` doctest on `SendCtxtLifecycle::complete`, d is
//! the Workqueue's). Each failed before its fix.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig, ClientError, ReplyPath};
use rdmaxprt::mock::{Delivery, MockDevice, MockError, MockQp, QpConfig};
use rdmaxprt_core::backend::{
    Caps, DmaDevice, ErrorType, PostError, QueuePair, RecvWr, SendWr, Sge, Wc,
};
use rdmaxprt_core::lifecycle::{Inline, SendCtxtLifecycle};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::rpcrdma::decode_reply_header;
use rdmaxprt_core::transport::{SvcRdmaXprt, XprtConfig};
use rdmaxprt_core::wait::CondvarWait;
use rdmaxprt_core::xprt::XprtFlags;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// (a) A Send completion with an error status marks the transport for
/// close *and* schedules it (`svc_xprt_deferred_close`), also when the
/// release list is already non-empty so the backstop does not enqueue.
#[test]
fn a_failed_send_completion_schedules_the_transport() {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (mut c, x, hook) = pair(&dev, q, XprtConfig::default(), ClientConfig::default());
    // One round trip for credits.
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    dev.step_all();
    serve(&x);
    dev.step_all();
    c.wait(t).unwrap();
    // Two calls in, two replies built and posted.
    let mut ts = Vec::new();
    for _ in 0..2 {
        ts.push(
            c.start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
                .unwrap(),
        );
    }
    dev.step_all();
    x.poll(usize::MAX).unwrap();
    let calls = [x.recvfrom().unwrap(), x.recvfrom().unwrap()];
    for call in calls.iter().flatten() {
        echo(&x, call).unwrap();
    }
    // The first Send runs and completes: its context waits on the release
    // list (no drain), so the next push is not the empty -> non-empty edge.
    assert!(x.qp().step());
    x.poll(usize::MAX).unwrap();
    assert!(x.send_lifecycle().pool().has_pending_release());
    // The second Send flushes. Handle only the Send Queue (receive flushes
    // enqueue on their own).
    x.qp().force_error();
    let before = hook.enqueues();
    let mut wcs = [NO_WC; 4];
    let n = x.qp().poll_send(&mut wcs).unwrap();
    assert_eq!(n, 1, "the flushed Send");
    assert_ne!(wcs[0].status, rdmaxprt_core::backend::WcStatus::Success);
    x.handle_send_wc(&wcs[0]);
    assert!(x.flags().test(XprtFlags::CLOSE));
    assert_eq!(
        hook.enqueues(),
        before + 1,
        "the CLOSE'd transport is enqueued"
    );
    // A later close does not enqueue again (CLOSE was already set).
    x.close();
    assert_eq!(hook.enqueues(), before + 1);
    drop(ts);
    drop(calls);
    drop(c);
    let r = x.free();
    assert_eq!(r.reclaimed_send, 0, "{r:?}");
}

/// (b) Replies and Read lists whose chains need more WRs than the SQ has
/// go out in SQ-sized batches: every call gets its full reply.
#[test]
fn b_chains_longer_than_the_sq_are_posted_in_batches() {
    let dev = MockDevice::new();
    let q = QpConfig {
        sq_depth: 4,
        delivery: Delivery::Thread {
            latency: Duration::ZERO,
        },
        ..QpConfig::default()
    };
    let ccfg = ClientConfig {
        credits: 4,
        max_segment_len: 64,
        inline_threshold: 4096,
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    // Calls come in inline (up to 4 KiB); replies go out inline only up to
    // 1 KiB, so a 1.5 KiB echo needs the Reply chunk.
    let xcfg = XprtConfig {
        max_inline_recv: 4096,
        ..XprtConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, xcfg, ccfg);
    let srv = ServerThread::spawn(vec![x]);
    // 1,500 bytes of echo in 64-byte segments: 24 Writes + the Send.
    let big = pattern(1500, 3);
    let opts = CallOptions {
        reply_chunk: Some(2048),
        ..CallOptions::default()
    };
    let r = c
        .call(PROG, VERS, PROC_ECHO, &big, &opts)
        .expect("Reply chunk reply");
    assert_eq!(r.results, big, "Reply chunk echo intact");
    assert_eq!(r.reply_path, ReplyPath::ReplyChunk);
    // Bulk through a Write chunk of 32 segments.
    let opts = CallOptions {
        write_chunk: Some(2048),
        ..CallOptions::default()
    };
    let r = c
        .call(PROG, VERS, PROC_ECHO, &big, &opts)
        .expect("Write chunk reply");
    assert_eq!(r.bulk.as_deref(), Some(&big[..]), "Write chunk echo intact");
    // A Read chunk of 24 segments pulled in batches (and the echo back
    // through the Reply chunk).
    let opts = CallOptions {
        read_payload: Some(&big),
        reply_chunk: Some(2048),
        ..CallOptions::default()
    };
    let r = c
        .call(PROG, VERS, PROC_ECHO, b"", &opts)
        .expect("Read chunk reply");
    assert_eq!(r.results, big, "Read chunk pulled intact");
    let x = srv.stop().pop().unwrap();
    assert_eq!(counter(&x.counters().partial_posts), 0);
    assert!(
        !x.flags().test(XprtFlags::CLOSE),
        "nothing closed the transport"
    );
    finish(dev, c, x);
}

/// (b) A batch the device takes only part of: the Writes already on the
/// wire point into the reply's staged page, so the context stays posted
/// (never released early) until teardown reclaims it after the QP drain;
/// the transport closes and the client sees the loss instead of hanging.
#[test]
fn b_a_batch_posted_part_way_keeps_its_context_until_teardown() {
    let dev = MockDevice::new();
    let q = QpConfig {
        sq_depth: 4,
        delivery: Delivery::Thread {
            latency: Duration::ZERO,
        },
        ..QpConfig::default()
    };
    let ccfg = ClientConfig {
        credits: 4,
        max_segment_len: 64,
        inline_threshold: 4096,
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let xcfg = XprtConfig {
        max_inline_recv: 4096,
        ..XprtConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, xcfg, ccfg);
    // The reply's first batch (4 Writes) is taken only up to its 2nd WR.
    x.qp().inject_next_post_failure(2);
    let srv = ServerThread::spawn(vec![x]);
    let opts = CallOptions {
        reply_chunk: Some(2048),
        ..CallOptions::default()
    };
    let err = c
        .call(PROG, VERS, PROC_ECHO, &pattern(1500, 5), &opts)
        .unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
    let x = srv.stop().pop().unwrap();
    assert_eq!(counter(&x.counters().partial_posts), 1);
    assert!(x.flags().test(XprtFlags::CLOSE));
    let r = x.free();
    assert_eq!(r.reclaimed_send, 1, "released only after the drain: {r:?}");
    drop(c);
    dev.assert_clean();
}

/// A queue pair whose `drain_qp` fails (the verbs marker wait timing out).
struct FailingDrain(MockQp);

impl ErrorType for FailingDrain {
    type Error = MockError;
}

impl QueuePair for FailingDrain {
    fn caps(&self) -> Caps {
        self.0.caps()
    }
    unsafe fn post_send(&self, chain: &[SendWr<'_>]) -> Result<(), PostError<MockError>> {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.post_send(chain) }
    }
    unsafe fn post_recv(&self, wrs: &[RecvWr]) -> Result<(), PostError<MockError>> {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.post_recv(wrs) }
    }
    fn poll_send(&self, out: &mut [Wc]) -> Result<usize, MockError> {
        self.0.poll_send(out)
    }
    fn poll_recv(&self, out: &mut [Wc]) -> Result<usize, MockError> {
        self.0.poll_recv(out)
    }
    fn drain_qp(&self) -> Result<(), MockError> {
        Err(MockError::QpError)
    }
}

/// (e) `free` after a failed QP drain leaks what is still posted (counted
/// and reported) instead of unmapping memory the device may still access.
#[test]
fn e_free_after_a_failed_drain_leaks_what_is_posted() {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, q).unwrap();
    let hook = Arc::new(Hook::default());
    let caps = sq.caps();
    let cfg = XprtConfig::default();
    let pool = PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge);
    let life: rdmaxprt_core::lifecycle::Deferred<MockDevice, Arc<Hook>> =
        rdmaxprt_core::lifecycle::Deferred::new(dev.clone(), pool, Arc::clone(&hook));
    let x: SvcRdmaXprt<_, _, _, CondvarWait> =
        SvcRdmaXprt::new(cfg, FailingDrain(sq), life, Arc::clone(&hook)).unwrap();
    let mut c = rdmaxprt::client::RpcClient::new(cq, dev.clone(), ClientConfig::default()).unwrap();
    let _t = c
        .start_call(
            PROG,
            VERS,
            PROC_ECHO,
            &pattern(600, 1),
            &CallOptions::default(),
        )
        .unwrap();
    dev.step_all();
    x.poll(usize::MAX).unwrap();
    let call = x.recvfrom().unwrap().expect("the call");
    let (hdr, n) = {
        let mut h = [0u8; 32];
        let n = rdmaxprt_core::oncrpc::encode_reply(
            &mut h,
            call.meta.xid,
            rdmaxprt_core::oncrpc::ReplyStat::Accepted(rdmaxprt_core::oncrpc::AcceptStat::Success),
        )
        .unwrap();
        (h, n)
    };
    // A mapped inline reply: one Send, which stepped delivery never runs.
    let _ = x.sendto(&call, &[&hdr[..n], &[7u8; 600]], None);
    assert_eq!(x.send_lifecycle().pool().census().posted, 1);
    let posted_recvs = x.recvs_posted();
    assert!(posted_recvs > 0);
    drop(call);
    drop(c);
    let client_gone = dev.tracker().live_mappings();
    let r = x.free();
    assert!(r.drain_failed, "{r:?}");
    assert_eq!(r.leaked_send, 1, "{r:?}");
    assert_eq!(r.reclaimed_send, 0, "{r:?}");
    assert_eq!(r.leaked_recvs, posted_recvs, "{r:?}");
    // The posted Send context (header + reply page) and every posted
    // receive stay mapped: nothing the device may touch was unmapped.
    let live = dev.tracker().live_mappings();
    assert!(
        live >= 2 + posted_recvs as usize,
        "{live} mappings left of {client_gone}: posted memory was unmapped"
    );
}

/// (f) Credits granted = min(asked, configured, what the RQ holds), never
/// below 1, and no more receives posted than the RQ holds.
#[test]
fn f_credits_are_clamped_to_the_rq_and_the_clients_ask() {
    let dev = MockDevice::new();
    let q = QpConfig {
        rq_depth: 16,
        ..QpConfig::default()
    };
    let xcfg = XprtConfig {
        credits: 64,
        recv_batch: 8,
        ..XprtConfig::default()
    };
    let ccfg = ClientConfig {
        credits: 16,
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, xcfg, ccfg);
    // 16 slots, up to 7 waiting for a repost: 9 credits.
    assert_eq!(x.max_credits(), 9);
    assert!(x.recvs_posted() <= 16);
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    serve(&x);
    c.wait(t).unwrap();
    assert_eq!(c.credits(), 9, "the RQ-clamped grant");
    for round in 0..4 {
        let ts: Vec<_> = (0..9)
            .map(|i| {
                c.start_call(PROG, VERS, PROC_ECHO, &[i; 8], &CallOptions::default())
                    .unwrap()
            })
            .collect();
        serve(&x);
        assert!(x.recvs_posted() <= 16, "round {round}");
        assert!(x.qp().rq_outstanding() <= 16, "round {round}");
        for t in ts {
            c.wait(t).expect("every call of the grant is answered");
        }
    }
    assert_eq!(counter(&x.counters().dropped), 0);
    finish(dev, c, x);

    // The client's own ask: below the grant it wins; zero still gets 1.
    for (asked, want) in [(2u32, 2u32), (0, 1), (1000, 64)] {
        let dev = MockDevice::new();
        let (cq, sq) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
        let (x, _hook) = server(&dev, sq, XprtConfig::default());
        let raw = RawClient::new(&dev, cq, 4, 1024);
        let mut m = words(&[0x77, 1, asked, 0, 0, 0, 0]);
        m.extend(rpc_call(0x77, b"abcd"));
        raw.send(&m);
        serve(&x);
        let got = raw.recv();
        assert_eq!(got.len(), 1);
        let h = decode_reply_header(&got[0], &Default::default()).unwrap();
        assert_eq!(h.credits(), want, "asked {asked}");
        drop(raw);
        let _ = x.free();
    }
}

/// What [`UnmapSpy`] runs at every unmap.
type UnmapHook = Box<dyn Fn() + Send>;

/// A device that runs a hook at every unmap.
#[derive(Clone)]
struct UnmapSpy {
    dev: MockDevice,
    hook: Arc<Mutex<Option<UnmapHook>>>,
}

impl ErrorType for UnmapSpy {
    type Error = MockError;
}

impl DmaDevice for UnmapSpy {
    type Buf = <MockDevice as DmaDevice>::Buf;
    fn alloc_buf(&self, len: usize) -> Result<Self::Buf, MockError> {
        self.dev.alloc_buf(len)
    }
    fn dma_map(&self, buf: &Self::Buf, offset: usize, len: usize) -> Result<Sge, MockError> {
        self.dev.dma_map(buf, offset, len)
    }
    fn dma_unmap(&self, sge: Sge) -> Result<(), MockError> {
        if let Some(f) = self.hook.lock().unwrap().as_ref() {
            f();
        }
        self.dev.dma_unmap(sge)
    }
}

type SpyServer = SvcRdmaXprt<Inline<UnmapSpy>, MockQp, Arc<Hook>, CondvarWait>;

/// The echo worker passes for the spy server, until nothing moves.
fn serve_spy(x: &SpyServer) {
    loop {
        let polled = x.poll(usize::MAX).unwrap();
        let mut served = 0;
        while let Some(call) = x.recvfrom().unwrap() {
            let h = rdmaxprt_core::oncrpc::decode_call(call.msg()).unwrap();
            let mut hdr = [0u8; 32];
            let n = rdmaxprt_core::oncrpc::encode_reply(&mut hdr, h.xid, SUCCESS).unwrap();
            x.sendto(&call, &[&hdr[..n], &call.msg()[h.args_offset..]], None)
                .unwrap();
            x.release_ctxt();
            served += 1;
        }
        if polled == 0 && served == 0 {
            return;
        }
    }
}

const SUCCESS: rdmaxprt_core::oncrpc::ReplyStat =
    rdmaxprt_core::oncrpc::ReplyStat::Accepted(rdmaxprt_core::oncrpc::AcceptStat::Success);

/// (g) At a Send completion the SQ slots go back (and waiters wake) before
/// the context is put: under Inline the unmap sees the slots returned.
#[test]
fn g_sq_slots_return_before_the_inline_unmap() {
    let dev = MockDevice::new();
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let spy = UnmapSpy {
        dev: dev.clone(),
        hook: Arc::new(Mutex::new(None)),
    };
    let caps = sq.caps();
    let cfg = XprtConfig::default();
    let pool = PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge);
    let hook = Arc::new(Hook::default());
    let x: Arc<SpyServer> =
        Arc::new(SvcRdmaXprt::new(cfg, sq, Inline::new(spy.clone(), pool), hook).unwrap());
    let seen: Arc<Mutex<Vec<i32>>> = Arc::default();
    let (w, s): (Weak<SpyServer>, _) = (Arc::downgrade(&x), Arc::clone(&seen));
    *spy.hook.lock().unwrap() = Some(Box::new(move || {
        if let Some(x) = w.upgrade() {
            s.lock().unwrap().push(x.sq().avail());
        }
    }));
    let mut c = rdmaxprt::client::RpcClient::new(cq, dev.clone(), ClientConfig::default()).unwrap();
    // Replies larger than the pull-up threshold are mapped, so their
    // completion unmaps a page.
    let big = pattern(cfg.pullup_threshold + 200, 9);
    for _ in 0..3 {
        let t = c
            .start_call(PROG, VERS, PROC_ECHO, &big, &CallOptions::default())
            .unwrap();
        serve_spy(&x);
        c.wait(t).unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.len() >= 3, "{seen:?}");
    let depth = x.sq().depth() as i32;
    assert!(
        seen.iter().all(|&a| a == depth),
        "unmaps ran before the SQ slots came back: avail {seen:?} of {depth}"
    );
    *spy.hook.lock().unwrap() = None;
    let x = Arc::into_inner(x).expect("only owner");
    let r = x.free();
    assert_eq!(r.reclaimed_send, 0);
    drop(c);
    dev.assert_clean();
}

/// (g), its consequence: with the slots returned before the put, a worker
/// waiting at the send-context pool's cap (on the same wait queue) can
/// wake for the slots, find no context yet, and sleep again; the put must
/// wake it once more. The unmap is slowed (5 ms under Inline) so the worker
/// re-checks inside that window every time.
#[test]
fn g_a_get_waiting_at_the_pool_cap_wakes_after_the_put() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery: Delivery::Thread {
            latency: Duration::ZERO,
        },
        ..QpConfig::default()
    };
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, q).unwrap();
    let spy = UnmapSpy {
        dev: dev.clone(),
        hook: Arc::new(Mutex::new(Some(Box::new(|| {
            std::thread::sleep(Duration::from_millis(5))
        })))),
    };
    let caps = sq.caps();
    let cfg = XprtConfig::default();
    let pool = PoolConfig {
        cap: 1,
        ..PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge)
    };
    let hook = Arc::new(Hook::default());
    let x: Arc<SpyServer> =
        Arc::new(SvcRdmaXprt::new(cfg, sq, Inline::new(spy.clone(), pool), hook).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (x, stop) = (Arc::clone(&x), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if x.poll(usize::MAX).unwrap_or(0) == 0 {
                    x.qp().wait_for_completions(Duration::from_millis(2));
                }
            }
        })
    };
    let worker = {
        let (x, stop) = (Arc::clone(&x), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                while let Ok(Some(call)) = x.recvfrom() {
                    let h = rdmaxprt_core::oncrpc::decode_call(call.msg()).unwrap();
                    let mut hdr = [0u8; 32];
                    let n = rdmaxprt_core::oncrpc::encode_reply(&mut hdr, h.xid, SUCCESS).unwrap();
                    let _ = x.sendto(&call, &[&hdr[..n], &call.msg()[h.args_offset..]], None);
                    x.release_ctxt();
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let ccfg = ClientConfig {
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let mut c = rdmaxprt::client::RpcClient::new(cq, dev.clone(), ccfg).unwrap();
    // Mapped (not pulled-up) replies, so each completion unmaps a page.
    let big = pattern(cfg.pullup_threshold + 200, 4);
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, &big, &CallOptions::default())
        .unwrap();
    c.wait(t).expect("first reply");
    // At least 3 rounds, and more (bounded) until the worker has waited at
    // the cap: on a loaded host the worker may be descheduled long enough
    // that every put lands before the next get, and the path under test
    // is never taken (the assertion after the loop says so).
    let waited = || x.send_lifecycle().stats().snapshot().waits_at_cap > 0;
    for round in 0..40 {
        if round >= 3 && waited() {
            break;
        }
        let ts: Vec<_> = (0..4)
            .map(|_| {
                c.start_call(PROG, VERS, PROC_ECHO, &big, &CallOptions::default())
                    .unwrap()
            })
            .collect();
        for t in ts {
            let r = c.wait(t).unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(r.results, big);
        }
    }
    stop.store(true, Ordering::SeqCst);
    poller.join().unwrap();
    worker.join().unwrap();
    *spy.hook.lock().unwrap() = None;
    assert!(waited(), "the worker never waited at the cap in 40 rounds");
    let x = Arc::into_inner(x).expect("threads joined");
    let r = x.free();
    assert_eq!(r.reclaimed_send, 0);
    drop(c);
    dev.assert_clean();
}

/// (h) Posting a call on a broken connection fails with the typed
/// `Disconnected`, as a flushed completion does.
#[test]
fn h_posting_on_a_broken_connection_is_disconnected() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    // One round trip: credits granted, nothing in flight, so the next
    // call goes straight to the post.
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    serve(&x);
    c.wait(t).unwrap();
    assert!(c.has_credit());
    x.qp().disconnect();
    let err = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
    // And the client stays broken.
    let err = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
    drop(c);
    let _ = x.free();
}
