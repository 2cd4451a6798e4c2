//! A reply's landing and staging buffers belong to its send context: they
//! come back to the transport when the context is released (the worker's
//! drain in `release_ctxt`), never through the Send completion itself, and
//! teardown gives back those of replies still in flight.

#[path = "transport_common.rs"]
mod common;

use common::{echo, server, Client, Server, PROC_ECHO, PROC_NULL, PROG, VERS};
use rdmaxprt::client::{CallOptions, ClientConfig, ReplyBytes, RpcClient, Ticket};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_core::xprt::XprtFlags;
use std::sync::atomic::Ordering;

const BIG: usize = 64 * 1024;

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(29) ^ seed).collect()
}

/// A client on `cdev` and a server on `sdev` (two devices, so the server
/// device's map count is the server's alone).
fn pair(
    cdev: &MockDevice,
    sdev: &MockDevice,
    qcfg: QpConfig,
    xcfg: XprtConfig,
) -> (Client, Server, std::sync::Arc<common::Hook>) {
    let (cq, sq) = MockDevice::connect_pair(cdev, sdev, qcfg).expect("qp pair");
    let (x, hook) = server(sdev, sq, xcfg);
    let c = RpcClient::new(cq, cdev.clone(), ClientConfig::default()).expect("client");
    (c, x, hook)
}

/// An echo whose reply is written into a Write chunk of `args.len()`.
fn start_echo(c: &mut Client, args: &[u8]) -> Ticket {
    let opts = CallOptions {
        write_chunk: Some(args.len() as u32),
        ..CallOptions::default()
    };
    c.start_call(PROG, VERS, PROC_ECHO, args, &opts).unwrap()
}

fn read_calls(x: &Server) -> u64 {
    x.counters().read_calls.load(Ordering::Relaxed)
}

fn step(devs: &[&MockDevice]) {
    for d in devs {
        d.step_all();
    }
}

/// Polls and serves until `t` is answered.
fn wait(c: &mut Client, x: &Server, devs: &[&MockDevice], t: Ticket) -> ReplyBytes {
    for _ in 0..1000 {
        step(devs);
        common::serve(x);
        if let Some(r) = c.try_wait(&t) {
            return r.unwrap();
        }
    }
    panic!("call never answered");
}

fn null(c: &mut Client) -> Ticket {
    c.start_call(PROG, VERS, PROC_NULL, &[], &CallOptions::default())
        .unwrap()
}

/// NULL round trips: one (so the client holds the server's full grant),
/// then four at once, so the server's send-context pool holds free
/// contexts and a `get` takes one without draining the release list.
fn warm_up(c: &mut Client, x: &Server, devs: &[&MockDevice]) {
    let t = null(c);
    wait(c, x, devs, t);
    let ts: Vec<Ticket> = (0..4).map(|_| null(c)).collect();
    for t in ts {
        wait(c, x, devs, t);
    }
    assert!(x.send_ctxts() >= 3, "{}", x.send_ctxts());
}

/// The next call `recvfrom` hands up, polling as needed.
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

/// A `Bulk::Args` reply's landing buffer is the reply's until its send
/// context is released: after the Send completed but before a drain, a
/// waiting Read-chunk call must not land in it, and the completion does
/// not schedule the transport (it only pushes the context); the drain
/// that gives the buffer back does.
#[test]
fn the_landing_buffer_comes_back_at_the_drain_not_at_the_completion() {
    let (cdev, sdev) = (MockDevice::new(), MockDevice::new());
    let xcfg = XprtConfig {
        read_bufs: 1,
        ..XprtConfig::default()
    };
    let (mut c, x, hook) = pair(&cdev, &sdev, QpConfig::default(), xcfg);
    let devs = [&cdev, &sdev];
    warm_up(&mut c, &x, &devs);
    let (a, b) = (payload(BIG, 1), payload(BIG, 2));
    let ta = start_echo(&mut c, &a);
    let tb = start_echo(&mut c, &b);
    let call_a = next_call(&x, &devs);
    assert!(call_a.pulled());
    assert!(
        x.recvfrom().unwrap().is_none(),
        "B waits for the landing buffer"
    );
    assert_eq!(read_calls(&x), 1);
    // A NULL reply completes first and stays undrained, so A's completion
    // below finds the release list non-empty (no backstop edge): any
    // enqueue there would come from the completion path itself.
    let tn = null(&mut c);
    let call_n = next_call(&x, &devs);
    echo(&x, &call_n).unwrap();
    drop(call_n);
    x.poll(usize::MAX).unwrap();
    echo(&x, &call_a).unwrap();
    drop(call_a);
    let before = hook.enqueues();
    x.poll(usize::MAX).unwrap();
    assert_eq!(
        hook.enqueues(),
        before,
        "a Send completion schedules nothing: it pushes the context"
    );
    x.flags().clear(XprtFlags::DATA);
    assert!(x.recvfrom().unwrap().is_none());
    assert_eq!(
        read_calls(&x),
        1,
        "B must not land in the buffer before the drain released A's reply"
    );
    assert_eq!(x.release_ctxt(), 2, "N's and A's contexts");
    assert!(hook.enqueues() > before, "the drain schedules B");
    assert!(x.flags().test(XprtFlags::DATA));
    assert!(x.recvfrom().unwrap().is_none(), "B's Reads start");
    assert_eq!(read_calls(&x), 2);
    assert_eq!(c.wait(ta).unwrap().bulk.as_deref(), Some(&a[..]));
    c.wait(tn).unwrap();
    assert_eq!(wait(&mut c, &x, &devs, tb).bulk.as_deref(), Some(&b[..]));
    let r = x.free();
    assert_eq!((r.reclaimed_send, r.bufs_held), (0, 0), "{r:?}");
    drop(c);
    cdev.assert_clean();
    sdev.assert_clean();
}

/// A staging buffer is the reply's until its context is released: a reply
/// staged while the previous one completed but was not drained gets a
/// fresh page (one more mapping on the server device); after the drain
/// the staging buffer is reused (no new mapping).
#[test]
fn a_staging_buffer_is_reused_only_after_its_context_was_drained() {
    let (cdev, sdev) = (MockDevice::new(), MockDevice::new());
    let xcfg = XprtConfig {
        stage_bufs: 1,
        ..XprtConfig::default()
    };
    let (mut c, x, _hook) = pair(&cdev, &sdev, QpConfig::default(), xcfg);
    let devs = [&cdev, &sdev];
    warm_up(&mut c, &x, &devs);
    // Small inline arguments echoed into a Write chunk: the payload lies
    // in a receive buffer, so it is copied into a staging buffer.
    let args = payload(256, 9);
    let maps_for_reply = |c: &mut Client, drain_first: bool| {
        let t = start_echo(c, &args);
        let call = next_call(&x, &devs);
        if drain_first {
            x.release_ctxt();
        }
        let m0 = sdev.tracker().maps();
        echo(&x, &call).unwrap();
        let m = sdev.tracker().maps() - m0;
        drop(call);
        // The Send completes; its context waits on the release list.
        x.poll(usize::MAX).unwrap();
        (t, m)
    };
    let (t1, _) = maps_for_reply(&mut c, true);
    let (t2, undrained) = maps_for_reply(&mut c, false);
    let (t3, drained) = maps_for_reply(&mut c, true);
    assert_eq!(
        undrained,
        drained + 1,
        "the staging buffer of an undrained reply is not reused"
    );
    for t in [t1, t2, t3] {
        assert_eq!(wait(&mut c, &x, &devs, t).bulk.as_deref(), Some(&args[..]));
    }
    let r = x.free();
    assert_eq!((r.staging_freed, r.bufs_held), (1, 0), "{r:?}");
    drop(c);
    cdev.assert_clean();
    sdev.assert_clean();
}

/// Teardown with replies in flight (posted, not completed: a stepped QP)
/// that hold a landing and a staging buffer: the final drain releases
/// their contexts, which give both back; nothing is held or leaked.
#[test]
fn teardown_with_replies_in_flight_returns_every_buffer() {
    let (cdev, sdev) = (MockDevice::new(), MockDevice::new());
    let qcfg = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (mut c, x, _hook) = pair(&cdev, &sdev, qcfg, XprtConfig::default());
    let devs = [&cdev, &sdev];
    warm_up(&mut c, &x, &devs);
    let big = payload(BIG, 3);
    let small = payload(256, 4);
    let _ta = start_echo(&mut c, &big);
    let _ts = start_echo(&mut c, &small);
    let first = next_call(&x, &devs);
    let second = next_call(&x, &devs);
    let (pulled, staged) = if first.pulled() {
        (first, second)
    } else {
        (second, first)
    };
    assert!(pulled.pulled() && !staged.pulled());
    echo(&x, &pulled).unwrap();
    echo(&x, &staged).unwrap();
    drop((pulled, staged));
    assert_eq!(x.counters().write_chunks.load(Ordering::Relaxed), 2);
    // Nothing stepped: both replies are on the wire, uncompleted.
    x.close();
    let r = x.free();
    assert_eq!(r.bufs_held, 0, "{r:?}");
    assert_eq!((r.landings_freed, r.staging_freed), (1, 1), "{r:?}");
    assert_eq!((r.reclaimed_send, r.leaked_send), (0, 0), "{r:?}");
    drop(c);
    cdev.assert_clean();
    sdev.assert_clean();
}
