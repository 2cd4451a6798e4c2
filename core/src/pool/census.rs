//! The census: how many contexts are in each state.

use super::{SendCtxtPool, EARLY, FREE, HOLLOW, OWNED, POSTED, POSTING, RELEASING};
use crate::backend::DmaDevice;
use crate::llist::FreeList;
use core::sync::atomic::Ordering;

/// How many contexts are in each state (for tests and the accounting
/// invariant `allocated == free + owned + posted + pending`; hollow slots
/// hold no context and count in none of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Census {
    /// Contexts that exist (allocated and not given back by a shrink).
    pub allocated: u32,
    /// On the free list.
    pub free: u32,
    /// Held by a caller (being built, or waiting to be posted).
    pub owned: u32,
    /// Posted (or being posted), completion not yet seen.
    pub posted: u32,
    /// Completed and waiting for (or undergoing) release.
    pub pending_release: u32,
    /// Slots without a context (freed by an idle shrink, or a failed
    /// allocation), reallocated when `get` needs them.
    pub hollow: u32,
}

impl<D: DmaDevice, F: FreeList> SendCtxtPool<D, F> {
    /// Counts contexts per state. Exact only when the pool is quiescent
    /// (used by tests to check the accounting invariant).
    pub fn census(&self) -> Census {
        let mut c = Census {
            allocated: self.allocated.load(Ordering::Relaxed),
            ..Census::default()
        };
        for s in self.slots.iter() {
            match s.state.load(Ordering::Relaxed) {
                FREE => c.free += 1,
                OWNED => c.owned += 1,
                POSTING | POSTED => c.posted += 1,
                EARLY | RELEASING => c.pending_release += 1,
                HOLLOW => c.hollow += 1,
                _ => {}
            }
        }
        // `allocated` reserves slot indices; hollow ones hold no context.
        c.allocated = c.allocated.saturating_sub(c.hollow);
        c
    }
}
