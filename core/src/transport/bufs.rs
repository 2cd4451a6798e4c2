//! Who holds the transport's landing and staging buffers, and how they
//! come back: a reply's send context holds the ones its chunk Writes read
//! (`SendCtxt::hold`), and the release step of that context (the worker's
//! drain under Deferred) leaves them on the pool's returned list, from
//! which [`SvcRdmaXprt::take_back_bufs`] returns them to the free lists
//! and schedules a call waiting for a landing buffer; idle ones beyond
//! `keep_bufs` go back to the device (`trim_bufs_to`).

use super::call::{CallBuf, CallHolder};
use super::landing::HeldBuf;
use super::{DevError, SvcRdmaXprt};
use crate::backend::QueuePair;
use crate::lifecycle::{Policy, SendCtxtLifecycle};
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};
use core::sync::atomic::Ordering;

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    /// What the completion path adds to `complete` for the buffers a
    /// reply's send context holds, by release policy (compile-time):
    /// - Deferred: nothing (the worker's drain releases the context and
    ///   [`release_ctxt`](Self::release_ctxt) takes its buffers back);
    /// - Inline: the release just ran here, so its buffers come back here
    ///   too (the policy's nature: the pre-2026 kernel released on the
    ///   completion path);
    /// - Workqueue: the release runs later on a release thread, which
    ///   cannot schedule the transport; if a call waits for a landing
    ///   buffer, schedule it now, and the worker waits for the releases in
    ///   transit (`flush`) before it looks again.
    #[inline]
    pub(super) fn after_complete(&self) {
        match L::POLICY {
            Policy::Deferred => {}
            Policy::Inline => self.take_back_bufs(),
            Policy::Workqueue => {
                if self.landing_wait.load(Ordering::SeqCst) {
                    self.flags().set(XprtFlags::DATA);
                    self.xprt.enqueue();
                }
            }
        }
    }

    /// Takes back the landing and staging buffers of released send
    /// contexts (the pool's returned list) and, if that freed a landing
    /// buffer while a call waits for one, schedules the transport. One
    /// atomic load when there are none (every inline reply).
    #[inline]
    pub(super) fn take_back_bufs(&self) {
        if self.send.pool().has_returned() {
            self.take_back_bufs_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn take_back_bufs_slow(&self) {
        let freed_landing = self.with_reads(|r| {
            let mut toks = core::mem::take(&mut r.returned);
            self.send.pool().take_returned(&mut toks);
            let mut freed = false;
            for &t in &toks {
                match HeldBuf::from_token(t) {
                    HeldBuf::Landing(i) => freed |= r.land.put(i),
                    HeldBuf::Staging(i) => {
                        r.stage.put(i);
                    }
                    HeldBuf::Posted => r.ctxt_held = r.ctxt_held.saturating_sub(1),
                }
            }
            toks.clear();
            r.returned = toks;
            freed
        });
        // A reply may be about to wait in `stage` for these buffers (it
        // read `bufs_back` before it looked at the free ones): wake it.
        self.bufs_back.fetch_add(1, Ordering::SeqCst);
        self.sq.wake_space_waiters();
        if freed_landing {
            self.recheck_backlog();
        }
    }

    /// Take-backs so far (see [`take_back_bufs`](Self::take_back_bufs)).
    pub(super) fn bufs_back(&self) -> u64 {
        self.bufs_back.load(Ordering::SeqCst)
    }

    /// A landing buffer came back: schedule the transport if calls wait
    /// for one (the worker that held it may already have let go of BUSY).
    pub(super) fn recheck_backlog(&self) {
        if self.landing_wait.load(Ordering::SeqCst) {
            self.flags().set(XprtFlags::DATA);
            self.xprt.enqueue();
        }
    }

    /// Frees idle landing and staging buffers beyond
    /// [`XprtConfig::keep_bufs`].
    pub(super) fn trim_bufs(&self) {
        self.trim_bufs_to(self.cfg.keep_bufs as usize);
    }

    /// Frees idle (free) landing and staging buffers beyond `keep` of each
    /// kind; returns how many were freed. With `keep` 0 this gives the
    /// device back every idle buffer: an allocation that failed
    /// (registered memory exhausted) retries after it, so the transport's
    /// own cache never starves its next call.
    pub(super) fn trim_bufs_to(&self, keep: usize) -> usize {
        let (land, stage) = self.with_reads(|r| {
            // No more free slots than `keep` (those without a buffer
            // included): nothing to free, the common case between calls.
            if r.land.free.len() <= keep && r.stage.free.len() <= keep {
                return (alloc::vec::Vec::new(), alloc::vec::Vec::new());
            }
            (
                r.land.take_excess(&self.landings, keep),
                r.stage.take_excess(&self.staging, keep),
            )
        });
        if land.is_empty() && stage.is_empty() {
            return 0;
        }
        let dev = self.send.pool().device();
        for &i in &land {
            // SAFETY: `take_excess` handed these free slots to this worker;
            // a free slot has no holder, so no posted work request names it.
            unsafe { self.landings.release(dev, i) };
        }
        for &i in &stage {
            // SAFETY: as above.
            unsafe { self.staging.release(dev, i) };
        }
        self.with_reads(|r| {
            r.land.give_back(&land);
            r.stage.give_back(&stage);
        });
        land.len() + stage.len()
    }
}

impl<L, Q, E, W> CallHolder for SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    fn put_call_buf(&self, buf: CallBuf) {
        match buf {
            CallBuf::Recv(i) => self.recv.put(i),
            CallBuf::Landing(i) => {
                // Free now unless a reply's send context still holds it
                // (then its release gives it back).
                if self.with_reads(|r| r.land.put(i)) {
                    self.recheck_backlog();
                }
            }
        }
    }
}
