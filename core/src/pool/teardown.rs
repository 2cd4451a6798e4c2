//! Teardown: reclaiming contexts a drained QP left posted, and dropping
//! the pool (never freeing memory the device may still touch).

use super::{SendCtxtPool, EARLY, POSTED, POSTING, RELEASING};
use crate::backend::DmaDevice;
use crate::llist::FreeList;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

impl<D: DmaDevice, F: FreeList> SendCtxtPool<D, F> {
    /// Teardown step after the QP has been drained: any context still
    /// POSTED can no longer be touched by the device (every WR completed or
    /// flushed), so it is released here. Returns how many were reclaimed;
    /// a non-zero count means a backend lost completions.
    ///
    /// # Safety
    /// The QP these contexts were posted on must be drained (no WR
    /// outstanding), and no completion handler may run concurrently.
    pub unsafe fn reclaim_after_qp_drain(&self) -> usize {
        let mut n = 0;
        for (i, s) in self.slots.iter().enumerate() {
            let st = s.state.load(Ordering::Acquire);
            if st == POSTED || st == EARLY {
                s.state.store(RELEASING, Ordering::Relaxed);
                // SAFETY: the QP is drained and no completion handler runs
                // (this fn's contract), so nobody else can claim the slot
                // and the device no longer touches its buffers.
                unsafe { self.send_ctxt_release(i as u32) };
                n += 1;
            }
        }
        n
    }
}

impl<D: DmaDevice, F: FreeList> Drop for SendCtxtPool<D, F> {
    fn drop(&mut self) {
        let mut leaked = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let st = s.state.load(Ordering::Relaxed);
            let ctxt = s.ctxt.with_mut(|p| {
                // SAFETY: `&mut self`: no other reference to the pool exists.
                unsafe { (*p).take() }
            });
            let Some(c) = ctxt else { continue };
            if matches!(st, POSTING | POSTED | EARLY) {
                // The device may still DMA into these buffers: never free
                // memory hardware could touch. Leak it, loudly.
                leaked.push(i);
                core::mem::forget(c);
            } else {
                let _ = c.destroy(&self.dev);
            }
        }
        if !leaked.is_empty() {
            // Not a panic: a user who drops a transport without draining
            // its QP gets a leak (safe), not a crash.
            tracing::error!(
                ?leaked,
                "send ctxt pool dropped with posted contexts: leaked them; drain the QP first"
            );
        }
    }
}
