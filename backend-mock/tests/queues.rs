//! Queue depths, completion order, unsignaled WRs and flushes.
mod common;

use common::*;
use rdmaxprt_core::backend::{DmaDevice, Error, ErrorKind, QueuePair, RecvWr, WcStatus};
use rdmaxprt_mock::{MockDevice, QpConfig};

fn cfg(sq: u32, rq: u32) -> QpConfig {
    QpConfig {
        sq_depth: sq,
        rq_depth: rq,
        ..QpConfig::default()
    }
}

#[test]
fn sq_full_reports_send_queue_full_with_the_consumed_count() {
    let dev = MockDevice::new();
    let (a, _b) = MockDevice::connect_pair(&dev, &dev, cfg(4, 4)).unwrap();
    let (_s, sge) = mapped(&dev, b"q");
    // No Recv at the peer: every Send stays outstanding.
    post(&a, &[send(1, &[sge], true)]).unwrap();
    let one = [sge];
    let chain: Vec<_> = (2..=6).map(|i| send(i, &one, true)).collect();
    let err = post(&a, &chain).unwrap_err();
    assert_eq!(err.consumed, 3, "3 of 5 fit in the 4-deep SQ");
    assert_eq!(err.error.kind(), ErrorKind::SendQueueFull);
    assert_eq!(a.sq_outstanding(), 4);
    let err = post(&a, &chain[..1]).unwrap_err();
    assert_eq!(err.consumed, 0);
    a.drain_qp().unwrap();
    assert_eq!(poll_send(&a).len(), 4);
    assert_eq!(a.sq_outstanding(), 0);
    dev.dma_unmap(sge).unwrap();
}

#[test]
fn sq_slots_are_held_until_the_completion_is_polled() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, cfg(2, 8)).unwrap();
    let mut keep = Vec::new();
    for i in 0..4 {
        keep.push(post_recv_buf(&b, 8, i));
    }
    let (_s, sge) = mapped(&dev, b"q");
    post(&a, &[send(1, &[sge], true), send(2, &[sge], true)]).unwrap();
    // Both executed (Inline), but their completions are not polled yet.
    let err = post(&a, &[send(3, &[sge], true)]).unwrap_err();
    assert_eq!(err.error.kind(), ErrorKind::SendQueueFull);
    assert_eq!(poll_send(&a).len(), 2);
    post(&a, &[send(3, &[sge], true)]).unwrap();
    assert_eq!(poll_send(&a).len(), 1);
}

#[test]
fn unsignaled_slots_are_freed_by_the_next_signaled_completion() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, cfg(3, 8)).unwrap();
    let mut keep = Vec::new();
    for i in 0..6 {
        keep.push(post_recv_buf(&b, 8, i));
    }
    let (_s, sge) = mapped(&dev, b"u");
    post(&a, &[send(1, &[sge], false), send(2, &[sge], false)]).unwrap();
    assert!(
        poll_send(&a).is_empty(),
        "unsignaled successes complete silently"
    );
    assert_eq!(a.sq_outstanding(), 2, "their slots wait for a signaled WR");
    post(&a, &[send(3, &[sge], true)]).unwrap();
    assert_eq!(ids(&poll_send(&a)), [(3, WcStatus::Success)]);
    assert_eq!(a.sq_outstanding(), 0);
}

#[test]
fn rq_full_reports_recv_queue_full_with_the_consumed_count() {
    let dev = MockDevice::new();
    let (_a, b) = MockDevice::connect_pair(&dev, &dev, cfg(4, 2)).unwrap();
    let (_r, sge) = mapped(&dev, &[0; 8]);
    let wrs: Vec<_> = (0..3).map(|i| RecvWr { wr_id: i, sge }).collect();
    // SAFETY: the buffer outlives the QP's use of it (flushed below).
    let err = unsafe { b.post_recv(&wrs) }.unwrap_err();
    assert_eq!(err.consumed, 2);
    assert_eq!(err.error.kind(), ErrorKind::RecvQueueFull);
    b.drain_qp().unwrap();
    assert_eq!(
        ids(&poll_recv(&b)),
        [(0, WcStatus::Flushed), (1, WcStatus::Flushed)]
    );
    assert_eq!(b.rq_outstanding(), 0);
}

#[test]
fn drain_qp_flushes_every_outstanding_wr_including_unsignaled_ones() {
    let dev = MockDevice::new();
    let (a, b) = stepped_pair(&dev);
    let (_r, rsge) = post_recv_buf(&a, 8, 100);
    let (_s, sge) = mapped(&dev, b"f");
    post(
        &a,
        &[
            send(1, &[sge], false),
            send(2, &[sge], false),
            send(3, &[sge], true),
        ],
    )
    .unwrap();
    a.drain_qp().unwrap();
    assert!(a.is_error());
    assert!(!b.is_error(), "drain_qp moves only the local QP to error");
    assert_eq!(
        ids(&poll_send(&a)),
        [
            (1, WcStatus::Flushed),
            (2, WcStatus::Flushed),
            (3, WcStatus::Flushed)
        ]
    );
    assert_eq!(ids(&poll_recv(&a)), [(100, WcStatus::Flushed)]);
    assert_eq!(a.sq_outstanding(), 0);
    assert_eq!(a.rq_outstanding(), 0);
    assert_eq!(
        post(&a, &[send(4, &[sge], true)]).unwrap_err().error.kind(),
        ErrorKind::QpError
    );
    assert!(!a.step(), "nothing left to execute after a drain");
    unmap_all(&dev, &[rsge, sge]);
    dev.assert_clean();
}

#[test]
fn completions_arrive_in_post_order_within_a_qp() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let mut keep = Vec::new();
    for i in 0..20 {
        keep.push(post_recv_buf(&b, 8, 1000 + i));
    }
    let (_s, sge) = mapped(&dev, b"o");
    for i in 0..20u64 {
        post(&a, &[send(i, &[sge], i % 3 != 1)]).unwrap();
    }
    let got: Vec<u64> = poll_send(&a).iter().map(|w| w.wr_id).collect();
    let want: Vec<u64> = (0..20).filter(|i| i % 3 != 1).collect();
    assert_eq!(got, want);
    let recvs: Vec<u64> = poll_recv(&b).iter().map(|w| w.wr_id).collect();
    assert_eq!(recvs, (1000..1020).collect::<Vec<_>>());
}

#[test]
fn disconnect_flushes_both_ends_and_peer_sends_then_fail() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, cfg(8, 8)).unwrap();
    let (_r, rsge) = post_recv_buf(&b, 8, 7);
    a.disconnect();
    assert!(a.is_error() && b.is_error());
    assert_eq!(ids(&poll_recv(&b)), [(7, WcStatus::Flushed)]);

    // One-sided error: only `b` drains; `a`'s next Send finds no responder.
    let (a, b) = MockDevice::connect_pair(&dev, &dev, cfg(8, 8)).unwrap();
    b.drain_qp().unwrap();
    let (_s, sge) = mapped(&dev, b"x");
    post(&a, &[send(1, &[sge], true), send(2, &[sge], false)]).unwrap();
    assert_eq!(
        ids(&poll_send(&a)),
        [(1, WcStatus::RetryExceeded), (2, WcStatus::Flushed)]
    );
    unmap_all(&dev, &[rsge, sge]);
}

#[test]
fn too_many_sges_is_an_invalid_argument_at_the_failing_wr() {
    let dev = MockDevice::new();
    let c = QpConfig {
        max_send_sge: 2,
        ..QpConfig::default()
    };
    let (a, _b) = MockDevice::connect_pair(&dev, &dev, c).unwrap();
    let (_s, sge) = mapped(&dev, b"s");
    let err = post(
        &a,
        &[send(1, &[sge], true), send(2, &[sge, sge, sge], true)],
    )
    .unwrap_err();
    assert_eq!(err.consumed, 1);
    assert_eq!(err.error.kind(), ErrorKind::InvalidArgument);
    assert_eq!(a.caps().max_send_sge, 2);
    assert!(MockDevice::connect_pair(&dev, &dev, cfg(0, 1)).is_err());
}
