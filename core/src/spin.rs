//! A minimal test-and-test-and-set spin lock, for the no_std build and for
//! the free list's pop side (the kernel holds `sc_send_lock` for exactly one
//! `llist_del_first`, so critical sections are a handful of instructions).

use crate::sync::{spin_hint, AtomicBool};
use core::sync::atomic::Ordering;

/// Serializes a tiny critical section without an OS.
#[derive(Debug, Default)]
pub(crate) struct SpinLock {
    locked: AtomicBool,
}

/// Releases the lock when dropped.
pub(crate) struct SpinGuard<'a> {
    lock: &'a SpinLock,
}

impl SpinLock {
    /// An unlocked lock.
    #[cfg(not(rdmaxprt_loom))]
    pub(crate) const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// An unlocked lock (loom atomics have no const constructor).
    #[cfg(rdmaxprt_loom)]
    pub(crate) fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// Spins until the lock is ours.
    pub(crate) fn lock(&self) -> SpinGuard<'_> {
        loop {
            // Acquire pairs with the Release in `SpinGuard::drop`: everything
            // the previous holder did is visible to us.
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinGuard { lock: self };
            }
            // Wait on a plain load so waiters do not bounce the line with RMWs.
            while self.locked.load(Ordering::Relaxed) {
                spin_hint();
            }
        }
    }
}

impl Drop for SpinGuard<'_> {
    fn drop(&mut self) {
        // Release: publishes the critical section to the next Acquire.
        self.lock.locked.store(false, Ordering::Release);
    }
}
