//! The idle trailing edge: a Send completion that arrives after the last
//! `release_ctxt` is released by one backstop wakeup, with no further RPC.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_core::xprt::XprtFlags;
use std::time::Duration;

/// Runs one call whose reply's Send completes only after the worker's last
/// release (`complete_send` makes it complete), then checks the backstop.
fn trailing_edge(delivery: Delivery, complete_send: impl Fn(&MockDevice, &Server)) {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery,
        ..QpConfig::default()
    };
    let (mut c, x, hook) = pair(&dev, q, XprtConfig::default(), ClientConfig::default());
    let pool = x.send_lifecycle().pool();
    let base_maps = dev.tracker().live_mappings();
    let base_ctxts = pool.census().allocated as usize;
    assert_eq!(
        base_maps,
        base_ctxts
            + x.config().credits as usize * 2
            + x.config().recv_batch as usize
            + c.recv_buffers(),
        "before any call: receive buffers (and header SGEs) only"
    );

    let t = c
        .start_call(PROG, VERS, PROC_ECHO, b"ping", &CallOptions::default())
        .unwrap();
    if delivery == Delivery::Stepped {
        dev.step_all();
    } else {
        assert!(x.qp().wait_for_completions(Duration::from_secs(5)));
    }
    assert!(x.poll(usize::MAX).unwrap() >= 1);
    assert_eq!(hook.enqueues(), 1, "the receive enqueued the transport");
    let call = x.recvfrom().unwrap().expect("the call");
    echo(&x, &call).unwrap();
    drop(call);
    assert_eq!(
        x.release_ctxt(),
        0,
        "the reply's Send has not completed when the worker releases"
    );
    assert!(x.recvfrom().unwrap().is_none());
    assert!(!x.flags().test(XprtFlags::DATA), "idle: no work pending");
    let idle = hook.enqueues();
    assert_eq!(pool.census().posted, 1);

    // Now the Send completes on the idle transport.
    complete_send(&dev, &x);
    assert!(x.poll(usize::MAX).unwrap() >= 1);
    assert_eq!(hook.enqueues(), idle + 1, "exactly one backstop enqueue");
    assert!(x.flags().test(XprtFlags::DATA), "the backstop set DATA");
    assert_eq!(x.send_lifecycle().stats().snapshot().backstop_enqueues, 1);
    assert!(pool.has_pending_release());
    assert!(
        dev.tracker().live_mappings() > base_maps + pool.census().allocated as usize - base_ctxts,
        "the reply's pages are still mapped before the wakeup"
    );

    // The enqueued worker's pass: no call, just the release.
    assert!(x.recvfrom().unwrap().is_none(), "no further RPC");
    assert_eq!(x.release_ctxt(), 1, "the trailing completion is drained");
    assert!(!pool.has_pending_release());
    assert_eq!(hook.enqueues(), idle + 1, "no further enqueue");
    let census = pool.census();
    assert_eq!(census.posted + census.owned + census.pending_release, 0);

    let reply = match c.try_wait(&t) {
        Some(r) => r.unwrap(),
        None => c.wait(t).unwrap(),
    };
    assert_eq!(reply.results, b"ping");
    assert_eq!(
        dev.tracker().live_mappings(),
        base_maps + census.allocated as usize - base_ctxts + c.stats().send_buffers as usize,
        "only persistent mappings: receive buffers, one header SGE per send context, the \
         client's send-buffer ring"
    );
    let report = x.free();
    assert_eq!(report.reclaimed_send, 0);
    drop(c);
    dev.assert_clean();
}

#[test]
fn a_send_completion_after_the_last_release_is_drained_by_one_backstop_wakeup_stepped() {
    trailing_edge(Delivery::Stepped, |dev, _x| {
        assert!(dev.step_all() >= 1);
    });
}

#[test]
fn a_send_completion_after_the_last_release_is_drained_by_one_backstop_wakeup_nic_thread() {
    trailing_edge(
        Delivery::Thread {
            latency: Duration::from_millis(30),
        },
        |_dev, x| {
            assert!(x.qp().wait_for_completions(Duration::from_secs(5)));
        },
    );
}

#[test]
fn a_burst_of_completions_pays_for_one_backstop_wakeup_and_one_batch_drain() {
    let dev = MockDevice::new();
    let (mut c, x, hook) = default_pair(&dev);
    // One round trip for the server's credit grant.
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    serve(&x);
    c.wait(t).unwrap();
    let before = x.send_lifecycle().stats().snapshot();

    // A burst of 8 calls; one worker pass answers all of them, and their
    // Send completions are handled only after it (as a poller would).
    let tickets: Vec<_> = (0..8u8)
        .map(|i| {
            c.start_call(PROG, VERS, PROC_ECHO, &[i; 8], &CallOptions::default())
                .unwrap()
        })
        .collect();
    assert_eq!(c.in_flight(), 8);
    let enq = hook.enqueues();
    assert_eq!(x.poll(usize::MAX).unwrap(), 8, "eight receives");
    assert_eq!(worker_pass(&x), 8);
    assert_eq!(x.poll(usize::MAX).unwrap(), 8, "eight Send completions");
    let mid = x.send_lifecycle().stats().snapshot();
    assert_eq!(
        mid.backstop_enqueues - before.backstop_enqueues,
        1,
        "only the empty -> non-empty push enqueues"
    );
    assert_eq!(hook.enqueues() - enq, 8 + 1, "eight receives, one backstop");
    assert_eq!(x.release_ctxt(), 8, "one drain takes the whole burst");
    let after = x.send_lifecycle().stats().snapshot();
    assert_eq!(after.batch_max, 8);
    for (i, t) in tickets.into_iter().enumerate() {
        assert_eq!(c.wait(t).unwrap().results, [i as u8; 8]);
    }
    x.free();
    drop(c);
    dev.assert_clean();
}
