//! Teardown with work in flight (Stepped delivery: posted, not completed):
//! `free` drains the QP, handles the flushes, drains the release list and
//! leaves the DMA tracker clean; the client's drop does the same for its
//! side.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::transport::XprtConfig;

fn stepped() -> (MockDevice, Client, Server) {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, XprtConfig::default(), ClientConfig::default());
    // One round trip for the credit grant.
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    dev.step_all();
    serve(&x);
    dev.step_all();
    c.try_wait(&t).expect("reply").unwrap();
    (dev, c, x)
}

#[test]
fn free_with_reply_sends_posted_but_not_completed_leaves_the_tracker_clean() {
    let (dev, mut c, x) = stepped();
    let persistent = dev.tracker().live_mappings();
    // The Position Zero call first, so its Read heads the server's SQ.
    let opts = [
        CallOptions {
            reply_chunk: Some(4096),
            ..Default::default()
        },
        CallOptions::default(),
        CallOptions {
            write_chunk: Some(512),
            ..Default::default()
        },
    ];
    let sizes = [2000, 16, 300];
    let tickets: Vec<_> = opts
        .iter()
        .zip(sizes)
        .map(|(o, n)| {
            c.start_call(PROG, VERS, PROC_ECHO, &pattern(n, 1), o)
                .unwrap()
        })
        .collect();
    dev.step_all(); // the three calls land
    assert_eq!(serve(&x), 2, "two inline calls answered, one Read posted");
    assert!(x.qp().step(), "run only the Read at the head of the SQ");
    assert_eq!(serve(&x), 1, "the pulled call is answered");
    let census = x.send_lifecycle().pool().census();
    assert_eq!(census.posted, 3, "three replies posted, none completed");
    assert!(dev.tracker().live_mappings() > persistent);
    // ...and the transport goes away before the NIC runs them.
    let report = x.free();
    assert_eq!(
        report.reclaimed_send, 0,
        "flushes released them: {report:?}"
    );
    assert_eq!(report.stuck_recvs, 0, "{report:?}");
    assert_eq!(report.reads_released, 0, "{report:?}");
    drop(tickets);
    drop(c);
    dev.assert_clean();
}

#[test]
fn free_with_reads_posted_but_not_completed_releases_the_read_context() {
    let (dev, mut c, x) = stepped();
    let o = CallOptions {
        force_position_zero: true,
        ..Default::default()
    };
    let _t = c.start_call(PROG, VERS, PROC_ECHO, b"read me", &o).unwrap();
    dev.step_all(); // the call's Send lands
    assert_eq!(serve(&x), 0, "the call waits for its Read");
    assert_eq!(counter(&x.counters().read_calls), 1);
    let report = finish(dev, c, x);
    assert_eq!(report.reads_released, 1, "{report:?}");
}

#[test]
fn free_with_completed_contexts_still_on_the_release_list_drains_them() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, b"abc", &CallOptions::default())
        .unwrap();
    x.poll(usize::MAX).unwrap();
    let call = x.recvfrom().unwrap().unwrap();
    echo(&x, &call).unwrap();
    drop(call);
    x.poll(usize::MAX).unwrap(); // the Send completion: on the release list
    assert!(x.send_lifecycle().pool().has_pending_release());
    assert_eq!(c.wait(t).unwrap().results, b"abc");
    finish(dev, c, x); // no release_ctxt ever ran
}

#[test]
fn dropping_a_client_with_calls_in_flight_deregisters_and_unmaps_everything() {
    let (dev, mut c, x) = stepped();
    let big = pattern(5000, 3);
    let o = CallOptions {
        write_chunk: Some(8192),
        reply_chunk: Some(8192),
        read_payload: Some(&big),
        ..Default::default()
    };
    let _t1 = c.start_call(PROG, VERS, PROC_ECHO, &[0; 8], &o).unwrap();
    // Sends posted, nothing executed: every region and buffer is live.
    assert!(c.in_flight() == 1 && dev.tracker().live_mappings() > 0);
    let stats = c.close();
    assert_eq!(stats.calls, 2);
    let report = x.free();
    assert_eq!(report.stuck_recvs, 0, "{report:?}");
    dev.assert_clean();
}
