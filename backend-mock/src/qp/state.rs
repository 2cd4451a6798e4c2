//! One QP end's queues and the accounting that makes depths real: an SQ
//! slot is held from post until the completion that covers it is polled
//! (an unsignaled WR's slot is covered by the next signaled completion, or
//! freed by a flush), an RQ slot from post until its completion is polled.

use crate::fault::FaultInjector;
use alloc::collections::VecDeque;
use rdmaxprt_core::backend::{Caps, RecvWr, Sge, Wc, WcOpcode, WcStatus, WrOp};

/// An accepted Send Queue WR the NIC has not executed yet.
#[derive(Debug, Clone)]
pub(crate) struct PendingWr {
    pub(crate) wr_id: u64,
    pub(crate) op: WrOp,
    /// Inline up to 4 (a posted WR allocates nothing below that).
    pub(crate) sges: smallvec::SmallVec<[Sge; 4]>,
    pub(crate) signaled: bool,
    /// When the NIC thread may execute it (`Delivery::Thread`).
    #[cfg(feature = "std")]
    pub(crate) due: Option<std::time::Instant>,
}

#[derive(Debug, Clone, Copy)]
struct CqEntry {
    wc: Wc,
    /// SQ slots this completion frees when polled (RQ: always 1).
    slots: u32,
    /// Polls of this CQ still to skip before it is delivered.
    hold: u32,
}

/// Both ends of a connected pair, under one lock.
#[derive(Debug)]
pub(crate) struct PairState {
    pub(crate) ends: [End; 2],
    /// Set when both `MockQp` handles are gone: the NIC thread exits.
    pub(crate) shutdown: bool,
    /// The regions the WR being executed moves bytes between (kept
    /// between WRs, emptied).
    pub(crate) pieces: super::dma::Pieces,
}

/// One QP end.
#[derive(Debug)]
pub(crate) struct End {
    pub(crate) caps: Caps,
    pub(crate) error: bool,
    pub(crate) sq: VecDeque<PendingWr>,
    sq_used: u32,
    unsignaled_done: u32,
    send_cq: VecDeque<CqEntry>,
    pub(crate) rq: VecDeque<RecvWr>,
    rq_used: u32,
    recv_cq: VecDeque<CqEntry>,
    pub(crate) faults: Option<FaultInjector>,
    pub(crate) next_post_failure: Option<usize>,
}

fn wc(wr_id: u64, status: WcStatus, opcode: WcOpcode, byte_len: u32) -> Wc {
    Wc {
        wr_id,
        status,
        opcode,
        byte_len,
        invalidated_rkey: None,
    }
}

/// Returns `n` queue slots.
fn release_slots(used: &mut u32, n: u32) {
    match used.checked_sub(n) {
        Some(u) => *used = u,
        None => {
            panic!("mock QP invariant: a queue slot is released only once ({n} > {used} in use)")
        }
    }
}

/// Pops deliverable entries of `cq` into `out`, calling `freed` with each
/// one's slot count. A held entry at the head blocks the rest (in order).
fn poll_cq(cq: &mut VecDeque<CqEntry>, out: &mut [Wc], mut freed: impl FnMut(u32)) -> usize {
    let mut n = 0;
    while n < out.len() {
        let Some(head) = cq.front_mut() else { break };
        if head.hold > 0 {
            head.hold -= 1;
            break;
        }
        let e = cq.pop_front();
        if let Some(e) = e {
            freed(e.slots);
            out[n] = e.wc;
            n += 1;
        }
    }
    n
}

impl End {
    pub(crate) fn new(caps: Caps, faults: Option<FaultInjector>) -> Self {
        Self {
            caps,
            error: false,
            sq: VecDeque::new(),
            sq_used: 0,
            unsignaled_done: 0,
            send_cq: VecDeque::new(),
            rq: VecDeque::new(),
            rq_used: 0,
            recv_cq: VecDeque::new(),
            faults,
            next_post_failure: None,
        }
    }

    pub(crate) fn sq_full(&self) -> bool {
        self.sq_used >= self.caps.sq_depth
    }

    pub(crate) fn rq_full(&self) -> bool {
        self.rq_used >= self.caps.rq_depth
    }

    pub(crate) fn accept_send(&mut self, wr: PendingWr) {
        self.sq.push_back(wr);
        self.sq_used += 1;
    }

    pub(crate) fn accept_recv(&mut self, wr: RecvWr) {
        self.rq.push_back(wr);
        self.rq_used += 1;
    }

    /// SQ slots in use (pending, executed-unreaped, completions unpolled).
    pub(crate) fn sq_used(&self) -> u32 {
        self.sq_used
    }

    /// RQ slots in use (posted, or completed but not polled).
    pub(crate) fn rq_used(&self) -> u32 {
        self.rq_used
    }

    pub(crate) fn has_completions(&self) -> bool {
        !self.send_cq.is_empty() || !self.recv_cq.is_empty()
    }

    fn hold(&mut self) -> u32 {
        self.faults.as_mut().map_or(0, FaultInjector::on_complete)
    }

    fn push_send(&mut self, wc: Wc) {
        // This completion also retires the unsignaled WRs before it.
        let slots = 1 + core::mem::take(&mut self.unsignaled_done);
        let hold = self.hold();
        self.send_cq.push_back(CqEntry { wc, slots, hold });
    }

    /// A successful SQ WR: a completion if signaled, else its slot waits for
    /// the next completion.
    pub(crate) fn send_ok(&mut self, wr: &PendingWr, opcode: WcOpcode, byte_len: u32) {
        if wr.signaled {
            self.push_send(wc(wr.wr_id, WcStatus::Success, opcode, byte_len));
        } else {
            self.unsignaled_done += 1;
        }
    }

    /// A failed SQ WR: error completions are generated even if unsignaled.
    pub(crate) fn send_err(&mut self, wr_id: u64, status: WcStatus) {
        self.push_send(wc(wr_id, status, WcOpcode::Unknown, 0));
    }

    pub(crate) fn push_recv(&mut self, wc: Wc) {
        let hold = self.hold();
        self.recv_cq.push_back(CqEntry { wc, slots: 1, hold });
    }

    pub(crate) fn recv_err(&mut self, wr_id: u64, status: WcStatus) {
        self.push_recv(wc(wr_id, status, WcOpcode::Unknown, 0));
    }

    /// Moves to the error state: every outstanding SQ and RQ WR (signaled
    /// or not) completes with `Flushed`. Idempotent.
    pub(crate) fn flush(&mut self) {
        self.error = true;
        while let Some(wr) = self.sq.pop_front() {
            self.send_err(wr.wr_id, WcStatus::Flushed);
        }
        // Executed unsignaled WRs no completion will ever cover.
        let done = core::mem::take(&mut self.unsignaled_done);
        release_slots(&mut self.sq_used, done);
        while let Some(wr) = self.rq.pop_front() {
            self.recv_err(wr.wr_id, WcStatus::Flushed);
        }
    }

    pub(crate) fn poll_send(&mut self, out: &mut [Wc]) -> usize {
        let used = &mut self.sq_used;
        poll_cq(&mut self.send_cq, out, |s| release_slots(used, s))
    }

    pub(crate) fn poll_recv(&mut self, out: &mut [Wc]) -> usize {
        let used = &mut self.rq_used;
        poll_cq(&mut self.recv_cq, out, |s| release_slots(used, s))
    }
}
