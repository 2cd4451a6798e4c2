//! Two-sided operations: byte copies, gather, Send-with-Invalidate, RNR
//! waiting, and the too-short-Recv error path.
mod common;

use common::*;
use rdmaxprt_core::backend::{DmaBuf, DmaDevice, SendWr, WcOpcode, WcStatus, WrOp};
use rdmaxprt_mock::{MockDevice, QpConfig};

#[test]
fn send_copies_gathered_bytes_into_the_peers_recv_with_byte_len() {
    let (da, db) = (MockDevice::new(), MockDevice::new());
    let (a, b) = MockDevice::connect_pair(&da, &db, QpConfig::default()).unwrap();
    let (rbuf, rsge) = post_recv_buf(&b, 32, 7);
    let (h, hs) = mapped(&da, b"head:");
    let (p, ps) = mapped(&da, b"payload");
    post(&a, &[send(1, &[hs, ps], true)]).unwrap();

    let s = poll_send(&a);
    assert_eq!(ids(&s), [(1, WcStatus::Success)]);
    assert_eq!(s[0].opcode, WcOpcode::Send);
    let r = poll_recv(&b);
    assert_eq!(ids(&r), [(7, WcStatus::Success)]);
    assert_eq!(r[0].opcode, WcOpcode::Recv);
    assert_eq!(r[0].byte_len, 12);
    assert_eq!(r[0].invalidated_rkey, None);
    assert_eq!(&rbuf.as_slice()[..12], b"head:payload");
    assert!(rbuf.as_slice()[12..].iter().all(|&x| x == 0));

    unmap_all(&da, &[hs, ps]);
    unmap_all(&db, &[rsge]);
    drop((h, p, rbuf));
    da.assert_clean();
    db.assert_clean();
}

#[test]
fn send_with_invalidate_reports_and_invalidates_the_rkey_on_the_receiver() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let mr = dev.register(dev.alloc_buf(16).unwrap()).unwrap();
    assert!(mr.is_valid());
    let (_rbuf, rsge) = post_recv_buf(&b, 8, 3);
    let (_s, ssge) = mapped(&dev, b"x");
    let wr = SendWr {
        wr_id: 4,
        op: WrOp::SendInv { rkey: mr.rkey() },
        sges: &[ssge],
        signaled: true,
    };
    post(&a, &[wr]).unwrap();
    let r = poll_recv(&b);
    assert_eq!(r[0].status, WcStatus::Success);
    assert_eq!(r[0].invalidated_rkey, Some(mr.rkey()));
    assert!(
        !mr.is_valid(),
        "SendInv must invalidate the receiver's rkey"
    );
    assert_eq!(ids(&poll_send(&a)), [(4, WcStatus::Success)]);
    unmap_all(&dev, &[rsge, ssge]);
}

#[test]
fn send_without_posted_recv_waits_until_a_recv_is_posted() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let (_s, ssge) = mapped(&dev, b"late");
    post(&a, &[send(1, &[ssge], true), send(2, &[ssge], true)]).unwrap();
    assert!(
        poll_send(&a).is_empty(),
        "no Recv posted: the Send must wait"
    );
    assert_eq!(a.sq_outstanding(), 2);

    let (rbuf, rsge) = post_recv_buf(&b, 8, 10);
    assert_eq!(ids(&poll_send(&a)), [(1, WcStatus::Success)]);
    assert_eq!(&rbuf.as_slice()[..4], b"late");
    let (_r2, rsge2) = post_recv_buf(&b, 8, 11);
    assert_eq!(ids(&poll_send(&a)), [(2, WcStatus::Success)]);
    assert_eq!(
        ids(&poll_recv(&b)),
        [(10, WcStatus::Success), (11, WcStatus::Success)]
    );
    unmap_all(&dev, &[ssge, rsge, rsge2]);
}

#[test]
fn send_longer_than_recv_buffer_errors_both_sides_and_flushes_the_rest() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let (_r1, rs1) = post_recv_buf(&b, 4, 20);
    let (_r2, rs2) = post_recv_buf(&b, 64, 21);
    let (_s, ssge) = mapped(&dev, b"too long for four");
    post(&a, &[send(1, &[ssge], true), send(2, &[ssge], false)]).unwrap();

    assert_eq!(
        ids(&poll_send(&a)),
        [(1, WcStatus::RemoteOp), (2, WcStatus::Flushed)]
    );
    assert_eq!(
        ids(&poll_recv(&b)),
        [(20, WcStatus::LocalLength), (21, WcStatus::Flushed)]
    );
    assert!(a.is_error() && b.is_error());
    let err = post(&a, &[send(3, &[ssge], true)]).unwrap_err();
    assert_eq!(err.consumed, 0);
    assert_eq!(
        rdmaxprt_core::backend::Error::kind(&err.error),
        rdmaxprt_core::backend::ErrorKind::QpError
    );
    assert_eq!(a.sq_outstanding(), 0);
    assert_eq!(b.rq_outstanding(), 0);
    unmap_all(&dev, &[rs1, rs2, ssge]);
    dev.assert_clean();
}

#[test]
fn send_from_an_unmapped_sge_fails_with_local_protection_and_a_violation() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let (_r, rsge) = post_recv_buf(&b, 8, 1);
    let (_s, ssge) = mapped(&dev, b"abc");
    dev.dma_unmap(ssge).unwrap();
    post(&a, &[send(5, &[ssge], true)]).unwrap();
    assert_eq!(ids(&poll_send(&a)), [(5, WcStatus::LocalProtection)]);
    assert!(a.is_error());
    assert!(!b.is_error(), "a local protection error stays local");
    let v = dev.tracker().take_violations();
    assert_eq!(v, [rdmaxprt_mock::Violation::UnmappedAccess { sge: ssge }]);
    dev.dma_unmap(rsge).unwrap();
    dev.assert_clean();
}

#[test]
fn dma_map_rejects_out_of_range_and_foreign_buffers() {
    let (d1, d2) = (MockDevice::new(), MockDevice::new());
    let b = d1.alloc_buf(100).unwrap();
    let e = d1.dma_map(&b, 90, 20).unwrap_err();
    assert!(matches!(e, rdmaxprt_mock::MockError::OutOfRange { .. }));
    assert_eq!(
        d2.dma_map(&b, 0, 10),
        Err(rdmaxprt_mock::MockError::ForeignBuffer)
    );
    let s = d1.dma_map(&b, 10, 20).unwrap();
    assert_eq!(s.addr, b.addr() + 10);
    assert_eq!(s.length, 20);
    assert_eq!(s.lkey, d1.lkey());
    d1.dma_unmap(s).unwrap();
    d1.assert_clean();
    d2.assert_clean();
}
