//! One-sided operations against registered regions: rkey, offset and
//! length checks.
mod common;

use common::*;
use rdmaxprt_core::backend::{DmaBuf, DmaDevice, SendWr, Sge, WcOpcode, WcStatus, WrOp};
use rdmaxprt_mock::{MockDevice, MockMr, MockQp, QpConfig};

fn write<'a>(wr_id: u64, sges: &'a [Sge], mr: &MockMr, off: u64) -> SendWr<'a> {
    SendWr {
        wr_id,
        op: WrOp::Write {
            remote_addr: mr.addr() + off,
            rkey: mr.rkey(),
        },
        sges,
        signaled: true,
    }
}

fn setup() -> (MockDevice, MockDevice, MockQp, MockQp, MockMr) {
    let (da, db) = (MockDevice::new(), MockDevice::new());
    let (a, b) = MockDevice::connect_pair(&da, &db, QpConfig::default()).unwrap();
    let mut remote = db.alloc_buf(64).unwrap();
    remote.as_mut_slice()[32..40].copy_from_slice(b"REMOTE!!");
    let mr = db.register(remote).unwrap();
    (da, db, a, b, mr)
}

#[test]
fn rdma_write_lands_at_the_remote_offset() {
    let (da, _db, a, _b, mr) = setup();
    let (_l, ls) = mapped(&da, b"written");
    post(&a, &[write(1, &[ls], &mr, 8)]).unwrap();
    let s = poll_send(&a);
    assert_eq!(ids(&s), [(1, WcStatus::Success)]);
    assert_eq!(s[0].opcode, WcOpcode::Write);
    assert_eq!(s[0].byte_len, 7);
    mr.read(|b| {
        assert_eq!(&b[8..15], b"written");
        assert_eq!(b[7], 0);
        assert_eq!(b[15], 0);
    });
    unmap_all(&da, &[ls]);
    da.assert_clean();
}

#[test]
fn rdma_read_scatters_remote_bytes_into_local_sges() {
    let (da, _db, a, _b, mr) = setup();
    let (l1, s1) = mapped(&da, &[0; 3]);
    let (l2, s2) = mapped(&da, &[0; 5]);
    let wr = SendWr {
        wr_id: 9,
        op: WrOp::Read {
            remote_addr: mr.addr() + 32,
            rkey: mr.rkey(),
        },
        sges: &[s1, s2],
        signaled: true,
    };
    post(&a, &[wr]).unwrap();
    let s = poll_send(&a);
    assert_eq!(ids(&s), [(9, WcStatus::Success)]);
    assert_eq!(s[0].opcode, WcOpcode::Read);
    assert_eq!(s[0].byte_len, 8);
    assert_eq!(l1.as_slice(), b"REM");
    assert_eq!(l2.as_slice(), b"OTE!!");
    unmap_all(&da, &[s1, s2]);
    da.assert_clean();
}

#[test]
fn rdma_write_with_bad_rkey_is_a_remote_access_error_on_both_ends() {
    let (da, _db, a, b, mr) = setup();
    let (_l, ls) = mapped(&da, b"x");
    let one = [ls];
    let mut wr = write(1, &one, &mr, 0);
    wr.op = WrOp::Write {
        remote_addr: mr.addr(),
        rkey: mr.rkey() ^ 0xdead,
    };
    post(&a, &[wr, write(2, &[ls], &mr, 0)]).unwrap();
    assert_eq!(
        ids(&poll_send(&a)),
        [(1, WcStatus::RemoteAccess), (2, WcStatus::Flushed)]
    );
    assert!(a.is_error() && b.is_error());
    mr.read(|b| assert_eq!(b[0], 0, "nothing may be written on a bad rkey"));
    unmap_all(&da, &[ls]);
}

#[test]
fn rdma_past_the_end_or_before_the_start_of_the_region_is_rejected() {
    for (off, len) in [(60u64, 8usize), (64, 1)] {
        let (da, _db, a, _b, mr) = setup();
        let (_l, ls) = mapped(&da, &vec![1; len]);
        post(&a, &[write(1, &[ls], &mr, off)]).unwrap();
        assert_eq!(
            ids(&poll_send(&a)),
            [(1, WcStatus::RemoteAccess)],
            "off {off}"
        );
        unmap_all(&da, &[ls]);
    }
    let (da, _db, a, _b, mr) = setup();
    let (_l, ls) = mapped(&da, &[0; 4]);
    let wr = SendWr {
        wr_id: 2,
        op: WrOp::Read {
            remote_addr: mr.addr() - 1,
            rkey: mr.rkey(),
        },
        sges: &[ls],
        signaled: true,
    };
    post(&a, &[wr]).unwrap();
    assert_eq!(ids(&poll_send(&a)), [(2, WcStatus::RemoteAccess)]);
    unmap_all(&da, &[ls]);
}

#[test]
fn rdma_to_an_invalidated_or_deregistered_rkey_fails() {
    let (da, db, a, b, mr) = setup();
    let (_r, rs) = post_recv_buf(&b, 8, 1);
    let (_l, ls) = mapped(&da, b"i");
    let inv = SendWr {
        wr_id: 1,
        op: WrOp::SendInv { rkey: mr.rkey() },
        sges: &[ls],
        signaled: true,
    };
    post(&a, &[inv, write(2, &[ls], &mr, 0)]).unwrap();
    assert_eq!(
        ids(&poll_send(&a)),
        [(1, WcStatus::Success), (2, WcStatus::RemoteAccess)]
    );
    let (rkey, addr) = (mr.rkey(), mr.addr());
    let buf = mr.deregister();
    assert_eq!(buf.addr(), addr);
    let (da2, _db2, a2, _b2, _mr2) = setup();
    let (_l2, ls2) = mapped(&da2, b"z");
    let wr = SendWr {
        wr_id: 3,
        op: WrOp::Write {
            remote_addr: addr,
            rkey,
        },
        sges: &[ls2],
        signaled: true,
    };
    post(&a2, &[wr]).unwrap();
    assert_eq!(ids(&poll_send(&a2)), [(3, WcStatus::RemoteAccess)]);
    unmap_all(&da, &[ls]);
    unmap_all(&db, &[rs]);
    unmap_all(&da2, &[ls2]);
}
