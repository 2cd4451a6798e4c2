//! Helpers shared by the mock's integration tests.
#![allow(dead_code, unsafe_code)]

use rdmaxprt_core::backend::{
    DmaBuf, DmaDevice, QueuePair, RecvWr, SendWr, Sge, Wc, WcOpcode, WcStatus, WrOp,
};
use rdmaxprt_mock::{Delivery, MockBuf, MockDevice, MockQp, QpConfig};

pub const NO_WC: Wc = Wc {
    wr_id: u64::MAX,
    status: WcStatus::Other(0),
    opcode: WcOpcode::Unknown,
    byte_len: 0,
    invalidated_rkey: None,
};

/// A buffer filled with `fill` and one mapping of all of it.
pub fn mapped(dev: &MockDevice, fill: &[u8]) -> (MockBuf, Sge) {
    let mut b = dev.alloc_buf(fill.len()).unwrap();
    b.as_mut_slice().copy_from_slice(fill);
    let sge = dev.dma_map(&b, 0, fill.len()).unwrap();
    (b, sge)
}

/// A zeroed receive buffer of `len` bytes, mapped and posted as `wr_id`.
pub fn post_recv_buf(qp: &MockQp, len: usize, wr_id: u64) -> (MockBuf, Sge) {
    let (b, sge) = mapped(qp.device(), &vec![0; len]);
    // SAFETY: tests keep the buffer alive and untouched until polled.
    unsafe { qp.post_recv(&[RecvWr { wr_id, sge }]) }.unwrap();
    (b, sge)
}

pub fn send(wr_id: u64, sges: &[Sge], signaled: bool) -> SendWr<'_> {
    SendWr {
        wr_id,
        op: WrOp::Send,
        sges,
        signaled,
    }
}

/// Posts `chain`; the tests' buffers outlive every completion.
pub fn post(
    qp: &MockQp,
    chain: &[SendWr<'_>],
) -> Result<(), rdmaxprt_core::backend::PostError<rdmaxprt_mock::MockError>> {
    // SAFETY: tests keep every SGE's buffer alive and untouched until the
    // completions are polled or the QP drained.
    unsafe { qp.post_send(chain) }
}

pub fn poll_send(qp: &MockQp) -> Vec<Wc> {
    let mut out = [NO_WC; 64];
    let n = qp.poll_send(&mut out).unwrap();
    out[..n].to_vec()
}

pub fn poll_recv(qp: &MockQp) -> Vec<Wc> {
    let mut out = [NO_WC; 64];
    let n = qp.poll_recv(&mut out).unwrap();
    out[..n].to_vec()
}

/// `(wr_id, status)` of each completion.
pub fn ids(wcs: &[Wc]) -> Vec<(u64, WcStatus)> {
    wcs.iter().map(|w| (w.wr_id, w.status)).collect()
}

pub fn unmap_all(dev: &MockDevice, sges: &[Sge]) {
    for s in sges {
        dev.dma_unmap(*s).unwrap();
    }
}

/// A connected pair on `dev` whose WRs run only when stepped.
pub fn stepped_pair(dev: &MockDevice) -> (MockQp, MockQp) {
    let c = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    MockDevice::connect_pair(dev, dev, c).unwrap()
}
