//! The idle shrink (beyond the kernel, which frees send contexts only at
//! teardown): give free contexts above a floor back to the device.
//!
//! Only contexts on the free list are touched. Popping one makes the
//! shrinker its owner exactly as a `get` would, so a context that is owned,
//! posted or waiting for release can never be freed here, and the
//! completion path (`put`: one push on the release list) is unchanged. The
//! freed slot keeps its index and goes on the hollow list; a later `get`
//! that finds no free context reallocates into it, so a shrunk pool grows
//! again under load up to the same cap.

use super::{SendCtxtPool, HOLLOW};
use crate::backend::DmaDevice;
use crate::llist::FreeList;
use core::sync::atomic::Ordering;

impl<D: DmaDevice, F: FreeList> SendCtxtPool<D, F> {
    /// Frees contexts from the free list until at most `floor` exist (or
    /// the free list is empty: contexts in use are never touched); unmaps
    /// and frees each one's buffers. Returns how many were freed.
    ///
    /// Safe to call at any time from any thread, concurrently with `get`,
    /// completions and drains; one shrink runs at a time (a concurrent call
    /// returns 0). Meant for an idle transport: on a busy one the freed
    /// contexts are simply reallocated.
    pub fn shrink(&self, floor: u32) -> usize {
        // Acquire/Release: a shrink sees the previous one's writes.
        if self.shrinking.swap(true, Ordering::Acquire) {
            return 0;
        }
        let freed = self.shrink_locked(floor);
        self.shrinking.store(false, Ordering::Release);
        freed
    }

    fn shrink_locked(&self, floor: u32) -> usize {
        let mut freed = 0usize;
        // Bounded by the cap: a concurrent `get` that reallocates makes
        // `pool_size` rise again, and we must not chase it forever.
        for _ in 0..self.cfg.cap {
            if self.stats.pool_size.load(Ordering::Relaxed) <= u64::from(floor) {
                break;
            }
            // The list's Acquire makes us the slot's only owner, exactly as
            // for a `get`; its state stays FREE while we hold it.
            let Some(idx) = self.free.pop(&self.slots) else {
                break;
            };
            let slot = &self.slots[idx as usize];
            let ctxt = slot.ctxt.with_mut(|p| {
                // SAFETY: popping the slot off the free list made us its
                // owner; nobody else can reach its cell until we push it.
                unsafe { (*p).take() }
            });
            if let Some(c) = ctxt {
                // A free context is released: only SGE 0 (its header
                // buffer) is still mapped, and the device holds none of it.
                let (_, failed) = c.destroy(&self.dev);
                if failed != 0 {
                    tracing::warn!(idx, failed, "send ctxt shrink: backend refused unmaps");
                }
                self.stats.pool_size.fetch_sub(1, Ordering::Relaxed);
                self.stats.shrunk.fetch_add(1, Ordering::Relaxed);
                freed += 1;
            }
            slot.state.store(HOLLOW, Ordering::Relaxed);
            // Release (inside push) hands the empty slot to the next taker.
            self.hollow.push(&self.slots, idx);
        }
        freed
    }
}
