//! The fake NIC's execution of one Send Queue WR: Send/Send-with-Invalidate
//! into the peer's next Recv, RDMA Write/Read against the peer's registered
//! regions, and the error paths real RC hardware takes.
#![allow(unsafe_code)]

use super::dma::{self, Piece, Pieces};
use super::state::{End, PairState, PendingWr};
use crate::device::MockDevice;
use crate::fault::{ExecFault, FaultInjector};
use crate::region::Region;
use alloc::sync::Arc;
use rdmaxprt_core::backend::{Wc, WcOpcode, WcStatus, WrOp};

/// What one execution attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing pending on this SQ.
    Idle,
    /// The head is a Send and the peer has no Recv posted (RNR: it waits,
    /// as with an infinite `rnr_retry`).
    Blocked,
    /// A WR was executed, failed or flushed.
    Ran,
}

/// Why a WR failed: the requester's status, and whether the responder's QP
/// goes to error too.
struct Failure {
    status: WcStatus,
    peer_too: bool,
}

impl Failure {
    fn local(status: WcStatus) -> Self {
        Self {
            status,
            peer_too: false,
        }
    }
    fn both(status: WcStatus) -> Self {
        Self {
            status,
            peer_too: true,
        }
    }
}

/// The peer's registered region behind `rkey`, checked for validity and
/// for `remote_addr..remote_addr + len` lying inside it.
fn remote(
    dev: &MockDevice,
    rkey: u32,
    remote_addr: u64,
    len: usize,
) -> Option<(Arc<Region>, usize)> {
    let (region, valid) = dev.shared.mr_lookup(rkey)?;
    let off = usize::try_from(remote_addr.checked_sub(region.base())?).ok()?;
    let end = off.checked_add(len)?;
    (valid && end <= region.len()).then_some((region, off))
}

fn byte_len(n: usize) -> u32 {
    // SGE lengths are u32 and a QP has at most `max_send_sge` of them; a
    // total past u32 saturates like the hardware field would wrap.
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn exec_send(
    me: &mut End,
    peer: &mut End,
    devs: [&MockDevice; 2],
    wr: &PendingWr,
    inv: Option<u32>,
    p: &mut Pieces,
) -> Result<(), Failure> {
    let len = dma::resolve(devs[0], &wr.sges, &mut p.src)
        .ok_or(Failure::local(WcStatus::LocalProtection))?;
    // `step_one` checked a Recv is posted; if not, RNR retries are spent.
    let recv = peer
        .rq
        .pop_front()
        .ok_or(Failure::local(WcStatus::RetryExceeded))?;
    if len > recv.sge.length as usize {
        peer.recv_err(recv.wr_id, WcStatus::LocalLength);
        return Err(Failure::both(WcStatus::RemoteOp));
    }
    let landed = dma::resolve(devs[1], core::slice::from_ref(&recv.sge), &mut p.dst).is_some()
        // SAFETY: the sources belong to a WR posted with `unsafe
        // post_send`, the destination to a Recv posted with `unsafe
        // post_recv`: their contracts keep the host off both until the
        // completions are polled (region.rs, rule 2).
        && unsafe { dma::copy(&p.src, &p.dst, len) };
    if !landed {
        peer.recv_err(recv.wr_id, WcStatus::LocalProtection);
        return Err(Failure::both(WcStatus::RemoteOp));
    }
    if let Some(rkey) = inv {
        devs[1].shared.invalidate(rkey);
    }
    peer.push_recv(Wc {
        wr_id: recv.wr_id,
        status: WcStatus::Success,
        opcode: WcOpcode::Recv,
        byte_len: byte_len(len),
        invalidated_rkey: inv,
    });
    me.send_ok(wr, WcOpcode::Send, byte_len(len));
    Ok(())
}

/// RDMA Write (`read == false`: local SGEs into the remote range) or Read
/// (`read == true`: the remote range into local SGEs) against the peer's
/// registered region named by `rkey`.
fn exec_rdma(
    me: &mut End,
    devs: [&MockDevice; 2],
    wr: &PendingWr,
    (remote_addr, rkey): (u64, u32),
    read: bool,
    p: &mut Pieces,
) -> Result<(), Failure> {
    let local_fault = Failure::local(WcStatus::LocalProtection);
    let remote_fault = Failure::both(WcStatus::RemoteAccess);
    // The local side named by the WR, the remote side by rkey and address;
    // a Write checks its local SGEs first, a Read the remote range.
    let len = if read {
        let len = wr.sges.iter().map(|s| s.length as usize).sum();
        let (region, off) = remote(devs[1], rkey, remote_addr, len).ok_or(remote_fault)?;
        p.src.push(Piece { region, off, len });
        dma::resolve(devs[0], &wr.sges, &mut p.dst).ok_or(local_fault)?;
        len
    } else {
        let len = dma::resolve(devs[0], &wr.sges, &mut p.src).ok_or(local_fault)?;
        let (region, off) = remote(devs[1], rkey, remote_addr, len).ok_or(remote_fault)?;
        p.dst.push(Piece { region, off, len });
        len
    };
    // SAFETY: the local pieces belong to a WR posted with `unsafe
    // post_send` (the host stays off them until its completion); the remote
    // range lies in a registered region (`remote` checked its bounds), whose
    // host accessors take the same lock the NIC's copy takes (region.rs,
    // rule 2).
    if !unsafe { dma::copy(&p.src, &p.dst, len) } {
        return Err(if read {
            Failure::local(WcStatus::LocalProtection)
        } else {
            Failure::both(WcStatus::RemoteAccess)
        });
    }
    let opcode = if read {
        WcOpcode::Read
    } else {
        WcOpcode::Write
    };
    me.send_ok(wr, opcode, byte_len(len));
    Ok(())
}

/// Executes (or fails, or flushes) the head WR of end `s`'s Send Queue.
pub(crate) fn step_one(st: &mut PairState, devs: &[MockDevice; 2], s: usize) -> Step {
    let PairState { ends, pieces, .. } = st;
    let [a, b] = ends;
    let (me, peer) = if s == 0 { (a, b) } else { (b, a) };
    let r = step_one_with(me, peer, devs, s, pieces);
    // No region stays referenced between WRs.
    pieces.clear();
    r
}

/// [`step_one`] on end `me` (index `s`) and its `peer`, with the piece
/// lists (empty).
fn step_one_with(
    me: &mut End,
    peer: &mut End,
    devs: &[MockDevice; 2],
    s: usize,
    pieces: &mut Pieces,
) -> Step {
    let Some(head) = me.sq.front() else {
        return Step::Idle;
    };
    let is_send = matches!(head.op, WrOp::Send | WrOp::SendInv { .. });
    if is_send && !peer.error && peer.rq.is_empty() {
        return Step::Blocked;
    }
    match me
        .faults
        .as_mut()
        .map_or(ExecFault::None, FaultInjector::on_exec)
    {
        ExecFault::None => {}
        ExecFault::QpError => {
            me.flush();
            return Step::Ran;
        }
        ExecFault::Disconnect => {
            me.flush();
            peer.flush();
            return Step::Ran;
        }
        ExecFault::ErrorCompletion(status) => {
            if let Some(wr) = me.sq.pop_front() {
                me.send_err(wr.wr_id, status);
            }
            me.flush();
            peer.flush();
            return Step::Ran;
        }
    }
    let Some(wr) = me.sq.pop_front() else {
        return Step::Idle;
    };
    let devs = [&devs[s], &devs[1 - s]];
    let res = if peer.error {
        // The responder is gone: transport retries run out.
        Err(Failure::local(WcStatus::RetryExceeded))
    } else {
        match wr.op {
            WrOp::Send => exec_send(me, peer, devs, &wr, None, pieces),
            WrOp::SendInv { rkey } => exec_send(me, peer, devs, &wr, Some(rkey), pieces),
            WrOp::Write { remote_addr, rkey } => {
                exec_rdma(me, devs, &wr, (remote_addr, rkey), false, pieces)
            }
            WrOp::Read { remote_addr, rkey } => {
                exec_rdma(me, devs, &wr, (remote_addr, rkey), true, pieces)
            }
        }
    };
    if let Err(f) = res {
        // An error completion moves the QP to error; the rest flushes.
        me.send_err(wr.wr_id, f.status);
        me.flush();
        if f.peer_too {
            peer.flush();
        }
    }
    Step::Ran
}

/// Runs both ends until neither can progress; returns WRs processed.
pub(crate) fn run_until_quiet(st: &mut PairState, devs: &[MockDevice; 2]) -> usize {
    let mut total = 0;
    loop {
        let mut ran = 0;
        for s in 0..2 {
            // An empty SQ has nothing to run (no step, no fault draw).
            while !st.ends[s].sq.is_empty() && step_one(st, devs, s) == Step::Ran {
                ran += 1;
            }
        }
        if ran == 0 {
            return total;
        }
        total += ran;
    }
}
