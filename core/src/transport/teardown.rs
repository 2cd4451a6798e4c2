//! `svc_rdma_free`: transport teardown in the kernel's order, and what it
//! found.

use super::{DevError, SvcRdmaXprt, XprtCountersSnapshot};
use crate::backend::QueuePair;
use crate::lifecycle::SendCtxtLifecycle;
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};

/// What [`SvcRdmaXprt::free`] found at teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TeardownReport {
    /// Send contexts no completion released (released by reclaim after
    /// the QP drain): chains that failed part-way (their Send never went
    /// out, see [`XprtCounters::partial_posts`](super::XprtCounters::partial_posts)) plus any completion a
    /// backend lost. More than `partial_posts` means the latter.
    pub reclaimed_send: usize,
    /// Receives still marked posted after the drain.
    pub stuck_recvs: u32,
    /// Read contexts released at teardown.
    pub reads_released: usize,
    /// The send-context counters after the final drain and reclaim (so
    /// they include the contexts teardown released).
    pub send_stats: crate::stats::StatsSnapshot,
    /// The QP drain failed (e.g. the verbs marker wait timed out): the
    /// device may still access what is posted, so that memory was leaked
    /// (never unmapped nor freed) instead of released; see the `leaked_*`
    /// counts.
    pub drain_failed: bool,
    /// Send contexts still posted after a failed drain, leaked.
    pub leaked_send: usize,
    /// Receive buffers still posted after a failed drain, leaked (also
    /// counted in `stuck_recvs`).
    pub leaked_recvs: u32,
    /// Read contexts whose Reads had not completed after a failed drain,
    /// leaked.
    pub leaked_reads: usize,
    /// Landing buffers (Read chunk targets) unmapped and freed.
    pub landings_freed: usize,
    /// Staging buffers (copied reply chunk data) unmapped and freed.
    pub staging_freed: usize,
    /// Calls with Read chunks still waiting for a landing buffer, dropped.
    pub calls_waiting: usize,
    /// Landing and staging buffers still held by a send context after
    /// the final drain and reclaim: only contexts a failed QP drain left
    /// posted hold any (those buffers are leaked, not freed). 0 otherwise:
    /// every reply in flight at teardown gave its buffers back when it was
    /// released.
    pub bufs_held: usize,
    /// The transport counters at teardown.
    pub counters: XprtCountersSnapshot,
}

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    /// Teardown in the kernel's order: drain the QP (every posted WR
    /// completes or flushes), handle those completions, drain the send
    /// release list, reclaim anything the backend failed to complete,
    /// flush receives, release Read contexts, unmap every buffer.
    ///
    /// Taking `self` by value proves no poller or worker can still touch
    /// the transport.
    #[doc(alias = "svc_rdma_free")]
    pub fn free(self) -> TeardownReport {
        self.flags().set(XprtFlags::CLOSE);
        self.sq.close();
        let drained = match self.qp.drain_qp() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%e, "drain_qp failed at teardown: leaking what is still posted");
                false
            }
        };
        // Handle every completion the drain produced. A backend may hold a
        // completion back for a few polls: keep polling while anything is
        // still posted, for a bounded number of empty rounds.
        let mut empty_rounds = 0;
        while empty_rounds < 1000 {
            match self.poll(usize::MAX) {
                Ok(0) | Err(_) => {
                    let outstanding = self.recv.posted() > 0
                        || self.send.pool().census().posted > 0
                        || self.with_reads(|r| r.slots.iter().flatten().any(|c| !c.done));
                    if !outstanding {
                        break;
                    }
                    empty_rounds += 1;
                    core::hint::spin_loop();
                }
                Ok(_) => empty_rounds = 0,
            }
        }
        self.send.flush();
        let (reclaimed_send, leaked_send) = if drained {
            // SAFETY: the QP is drained (above) and `self` is owned, so no
            // completion handler runs concurrently.
            (unsafe { self.send.pool().reclaim_after_qp_drain() }, 0)
        } else {
            // The pool's `Drop` leaks every context still posted (the
            // device may still DMA into it) and frees the rest.
            (0, self.send.pool().census().posted as usize)
        };
        // The landing and staging buffers of every context released above
        // (the final drain, the reclaim) come back; those of contexts a
        // failed drain left posted stay held (leaked below).
        self.take_back_bufs();
        let dev = self.send.pool().device();
        let reads = self.reads.into_inner();
        let (mut reads_released, mut leaked_reads) = (0, 0);
        // Landing buffers the device may still touch after a failed drain:
        // Read targets not completed, Write sources of send contexts still
        // posted (still held: no call is alive, `self` is owned).
        let mut in_flight: alloc::vec::Vec<u32> = alloc::vec::Vec::new();
        let mut read_done: alloc::vec::Vec<u32> = alloc::vec::Vec::new();
        for r in reads.slots.into_iter().flatten() {
            if drained || r.done {
                reads_released += 1;
                read_done.push(r.landing);
            } else {
                in_flight.push(r.landing);
                leaked_reads += 1;
            }
        }
        let in_flight_reads = in_flight.clone();
        if !drained {
            in_flight.extend(
                (0..self.landings.count() as u32)
                    .filter(|i| !reads.land.is_free(*i) && !read_done.contains(i))
                    .filter(|i| !in_flight_reads.contains(i)),
            );
        }
        // Calls that waited for a landing buffer hold receive contexts,
        // which `recv.destroy` unmaps with the others.
        let calls_waiting = reads.backlog.len();
        let held_landings = (0..self.landings.count() as u32)
            .filter(|i| !reads.land.is_free(*i) && !read_done.contains(i))
            .filter(|i| !in_flight_reads.contains(i))
            .count();
        let (landings_freed, _) = self.landings.destroy(dev, &in_flight);
        // Staging buffers a Write may still read after a failed drain.
        let staged_in_flight: alloc::vec::Vec<u32> = if drained {
            alloc::vec::Vec::new()
        } else {
            (0..self.staging.count() as u32)
                .filter(|i| !reads.stage.is_free(*i))
                .collect()
        };
        let held_staging = (0..self.staging.count() as u32)
            .filter(|i| !reads.stage.is_free(*i))
            .count();
        let (staging_freed, _) = self.staging.destroy(dev, &staged_in_flight);
        let stuck_recvs = self.recv.destroy(dev, drained);
        let leaked_recvs = if drained { 0 } else { stuck_recvs };
        if !drained {
            tracing::error!(
                leaked_send,
                leaked_recvs,
                leaked_reads,
                "transport freed after a failed QP drain: leaked memory the device may still access"
            );
        }
        TeardownReport {
            reclaimed_send,
            stuck_recvs,
            reads_released,
            send_stats: self.send.stats().snapshot(),
            drain_failed: !drained,
            leaked_send,
            leaked_recvs,
            leaked_reads,
            landings_freed,
            staging_freed,
            calls_waiting,
            bufs_held: held_landings + held_staging,
            counters: self.counters.snapshot(),
        }
    }
}
