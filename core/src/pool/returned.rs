//! The returned list: transport buffers that released send contexts held
//! (see [`SendCtxt::hold`](crate::ctxt::SendCtxt::hold)), waiting for
//! their transport to take them back.
//!
//! The release step runs where the policy puts it (the worker's drain
//! under Deferred, the completion handler under Inline, a release thread
//! under Workqueue), none of which owns the transport's buffer pools; it
//! leaves the tokens here, behind a spin lock held for one `extend` or one
//! `swap`. Only a context that holds buffers (a reply whose chunk Writes
//! read a landing or staging buffer) touches the lock: an inline reply's
//! release checks one count. The transport takes them with
//! [`SendCtxtPool::take_returned`] on the worker side.

use super::SendCtxtPool;
use crate::backend::DmaDevice;
use crate::ctxt::HeldBufs;
use crate::llist::FreeList;
use crate::spin::SpinMutex;
use crate::sync::AtomicBool;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Tokens of released contexts' transport buffers.
pub(crate) struct Returned {
    toks: SpinMutex<Vec<u32>>,
    /// Whether `toks` may be non-empty: written under the lock, read
    /// without it so a taker with nothing to take skips the lock.
    any: AtomicBool,
}

impl Returned {
    pub(crate) fn new() -> Self {
        Self {
            toks: SpinMutex::new(Vec::new()),
            any: AtomicBool::new(false),
        }
    }

    /// Leaves `held` for the transport.
    pub(crate) fn push(&self, held: &HeldBufs) {
        let mut t = self.toks.lock();
        t.extend_from_slice(held.as_slice());
        // Release: a taker whose Acquire load sees `true` then finds the
        // tokens under the lock (the lock orders them anyway; this keeps
        // the hint exact for a taker that synchronised with us otherwise).
        self.any.store(true, Ordering::Release);
    }

    /// Moves every token into `out` (cleared first); returns whether any.
    pub(crate) fn take(&self, out: &mut Vec<u32>) -> bool {
        out.clear();
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let mut t = self.toks.lock();
        core::mem::swap(&mut *t, out);
        self.any.store(false, Ordering::Relaxed);
        !out.is_empty()
    }
}

impl<D: DmaDevice, F: FreeList> SendCtxtPool<D, F> {
    /// Takes the transport-buffer tokens of every context released since
    /// the last call into `out` (cleared first; reusing its capacity).
    /// Returns whether there were any. Cheap when there are none: one
    /// atomic load.
    ///
    /// For the pool's owner (its transport), which frees the buffers the
    /// tokens name: tokens taken by anyone else never come back to it, and
    /// their buffers stay held until teardown.
    pub fn take_returned(&self, out: &mut Vec<u32>) -> bool {
        self.returned.take(out)
    }

    /// Whether released contexts left transport buffers to take back
    /// (hint).
    pub fn has_returned(&self) -> bool {
        self.returned.any.load(Ordering::Acquire)
    }
}
