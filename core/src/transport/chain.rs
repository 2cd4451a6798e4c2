//! Posting a work-request chain that may be longer than the Send Queue:
//! in batches of at most the SQ depth, each reserving its slots first
//! (`svc_rdma_sq_wait`) and waiting for completions between batches, as
//! the kernel posts one rw context after another.
//!
//! Every batch but the last ends in a signaled WR whose `wr_id` is a
//! batch tag carrying the batch's slot count, so its completion (or flush)
//! gives the slots back. The last batch is the caller's own tail (the Send
//! of a reply, or the Read that completes a call), whose completion
//! returns the tail's slots.

use super::{DevError, SvcRdmaXprt, XprtError, TAG};
use crate::backend::{PostError, QueuePair, SendWr};
use crate::lifecycle::SendCtxtLifecycle;
use crate::sq::Reserved;
use crate::wait::WaitQueue;
use crate::xprt::Enqueue;
use alloc::vec::Vec;

/// High word of a batch tag's `wr_id` (its low word is [`TAG`] | slots).
/// Send contexts never set [`TAG`]; Read contexts use a high word of 0.
const BATCH_HI: u64 = 1;

/// The `wr_id` of a batch's signaled last WR, returning `sqes` slots.
fn batch_wr_id(sqes: u32) -> u64 {
    (BATCH_HI << 32) | (TAG | sqes) as u64
}

/// The slot count of a batch tag, if `wr_id` is one.
pub(super) fn batch_sqes(wr_id: u64) -> Option<u32> {
    let low = wr_id as u32;
    (wr_id >> 32 == BATCH_HI && low & TAG != 0).then_some(low & !TAG)
}

/// Where a chain of `len` WRs splits so that its tail (which ends in the
/// caller's own signaled WR) holds at most `tail_max` WRs (at least one);
/// the head before it goes out in SQ-sized batches.
pub(super) fn chain_split(len: usize, tail_max: usize) -> usize {
    len.saturating_sub(tail_max.max(1))
}

/// Why a batched post stopped. `consumed` counts every WR the device took
/// (across batches): non-zero means part of the chain is on the wire.
pub(super) type BatchFailed<E> = PostError<XprtError<E>>;

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    /// Reserves SQ slots; drains after a wait (the backstop's enqueue may
    /// have been rejected meanwhile: `svc_rdma_sq_wait`).
    #[doc(alias = "svc_rdma_sq_wait")]
    pub(super) fn reserve(&self, n: u32) -> Result<(), XprtError<DevError<L>>> {
        match self.sq.reserve(n) {
            Ok(Reserved::Immediately) => Ok(()),
            Ok(Reserved::AfterWait) => {
                self.send.stats().record_sq_starved();
                self.send.drain();
                Ok(())
            }
            Err(_) => Err(XprtError::Closed),
        }
    }

    /// Posts `head` in batches of at most the SQ depth (each batch's last
    /// WR made signaled with a batch tag), then `tail` as one batch as
    /// given. Each batch reserves its slots first, waiting for completions
    /// if need be; slots of WRs the device refused are returned here. The
    /// caller makes sure `tail` holds at most the SQ depth.
    ///
    /// # Safety
    /// Every SGE of every WR must name memory that stays mapped, alive and
    /// untouched by the host until the WR's completion is handled (for the
    /// tail: until its owner's completion releases it), or until teardown
    /// after the QP drain; also when this returns an error with a non-zero
    /// `consumed`.
    pub(super) unsafe fn post_batched(
        &self,
        head: &[SendWr<'_>],
        tail: &[SendWr<'_>],
    ) -> Result<(), BatchFailed<DevError<L>>> {
        let depth = (self.sq.depth() as usize).max(1);
        let mut consumed = 0usize;
        let mut batch: Vec<SendWr<'_>> = Vec::with_capacity(depth.min(head.len()));
        for part in head.chunks(depth) {
            batch.clear();
            batch.extend_from_slice(part);
            let last = batch.len() - 1;
            batch[last].signaled = true;
            batch[last].wr_id = batch_wr_id(batch.len() as u32);
            // SAFETY: the WRs are the caller's (this fn's contract); only
            // their `wr_id` and signaling changed.
            consumed += unsafe { self.post_batch(&batch) }.map_err(|e| PostError {
                consumed: consumed + e.consumed,
                error: e.error,
            })?;
        }
        // SAFETY: the caller's WRs (this fn's contract).
        unsafe { self.post_batch(tail) }
            .map(|_| ())
            .map_err(|e| PostError {
                consumed: consumed + e.consumed,
                error: e.error,
            })
    }

    /// Reserves `chain.len()` slots and posts the chain. Returns how many
    /// WRs went out.
    ///
    /// # Safety
    /// As for [`post_batched`](Self::post_batched).
    unsafe fn post_batch(&self, chain: &[SendWr<'_>]) -> Result<usize, BatchFailed<DevError<L>>> {
        let n = chain.len() as u32;
        self.reserve(n)
            .map_err(|error| PostError { consumed: 0, error })?;
        // SAFETY: this fn's contract: every SGE stays valid until the
        // chain's completions are handled or the QP is drained.
        match unsafe { self.qp.post_send(chain) } {
            Ok(()) => Ok(chain.len()),
            Err(e) => {
                let took = e.consumed.min(chain.len());
                // WRs the device never took return their slots now.
                self.sq.wake_send_waiters(n - took as u32);
                Err(PostError {
                    consumed: took,
                    error: XprtError::Backend(e.error),
                })
            }
        }
    }

    /// A batch's signaled last WR completed (or flushed): its slots back.
    pub(super) fn batch_done(&self, sqes: u32, ok: bool) {
        self.sq.wake_send_waiters(sqes);
        if !ok {
            self.deferred_close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_sqes, batch_wr_id, chain_split};
    use crate::pool::wr_id;
    use crate::transport::{TAG, WR_ID_IGNORE};

    #[test]
    fn batch_tags_round_trip_and_name_nothing_else() {
        for n in [1, 4, 128, i32::MAX as u32] {
            assert_eq!(batch_sqes(batch_wr_id(n)), Some(n));
        }
        // A Read's last WR, unsignaled Writes, send contexts of any
        // generation: none is a batch tag.
        assert_eq!(batch_sqes((TAG | 7) as u64), None);
        assert_eq!(batch_sqes(WR_ID_IGNORE), None);
        for gen in [0, 1, 2, u32::MAX] {
            assert_eq!(batch_sqes(wr_id(5, gen)), None, "generation {gen}");
        }
    }

    #[test]
    fn the_tail_never_exceeds_the_sq() {
        assert_eq!(chain_split(3, 4), 0, "fits: one batch");
        assert_eq!(chain_split(25, 4), 21, "21 in batches, 4 with the Send");
        assert_eq!(chain_split(25, 0), 24, "an SQ of 0 still posts one by one");
    }
}
