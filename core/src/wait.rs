//! Wait queues: how a thread sleeps until a condition holds.
//!
//! The Send Queue accounting waits on two of them (tickets and space). The
//! condition lives in atomics outside the queue; the queue only parks and
//! wakes. [`SpinWait`] works everywhere (no_std); [`CondvarWait`] (std)
//! parks on a condvar.

use crate::sync::{fence, spin_hint, AtomicU32};
use core::sync::atomic::Ordering;

/// A wait queue.
pub trait WaitQueue: Send + Sync {
    /// Blocks until `cond()` is true. `cond` is re-evaluated after every
    /// wakeup and must read state that wakers change *before* calling
    /// [`wake_all`](Self::wake_all).
    fn wait_until(&self, cond: &dyn Fn() -> bool);

    /// Wakes every waiter so it re-checks its condition.
    fn wake_all(&self);

    /// Whether anyone may be waiting (`waitqueue_active`). Callers that skip
    /// `wake_all` when this is false must have made their state change
    /// visible with a SeqCst fence first; waiters register before checking.
    fn has_waiters(&self) -> bool;
}

/// Busy-waits (no_std). Under loom each spin is a yield point.
#[derive(Debug, Default)]
pub struct SpinWait {
    waiters: AtomicU32,
}

impl SpinWait {
    /// A queue with no waiters.
    pub fn new() -> Self {
        Self {
            waiters: AtomicU32::new(0),
        }
    }
}

impl WaitQueue for SpinWait {
    fn wait_until(&self, cond: &dyn Fn() -> bool) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        while !cond() {
            spin_hint();
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    fn wake_all(&self) {}

    fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) != 0
    }
}

#[cfg(feature = "std")]
pub use self::condvar::CondvarWait;

#[cfg(feature = "std")]
mod condvar {
    use super::WaitQueue;
    use crate::sync::{fence, AtomicU32, Condvar, Mutex};
    use core::sync::atomic::Ordering;

    /// Parks on a condvar (std).
    ///
    /// No lost wakeup: a waiter checks `cond` while holding the mutex, and
    /// `wake_all` takes the same mutex before notifying, so a state change
    /// made before `wake_all` is either seen by the check or followed by a
    /// notify that finds the waiter parked.
    #[derive(Debug, Default)]
    pub struct CondvarWait {
        lock: Mutex<()>,
        cv: Condvar,
        waiters: AtomicU32,
    }

    impl CondvarWait {
        /// A queue with no waiters.
        pub fn new() -> Self {
            Self::default()
        }
    }

    impl WaitQueue for CondvarWait {
        fn wait_until(&self, cond: &dyn Fn() -> bool) {
            // Register before the first check (pairs with the waker's
            // SeqCst fence + `has_waiters`).
            self.waiters.fetch_add(1, Ordering::SeqCst);
            // Full fence between registering and checking, pairing with the
            // waker's fence between changing state and `has_waiters`
            // (both sides need one, as with `waitqueue_active`).
            fence(Ordering::SeqCst);
            let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            while !cond() {
                g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            drop(g);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }

        fn wake_all(&self) {
            drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
            self.cv.notify_all();
        }

        fn has_waiters(&self) -> bool {
            self.waiters.load(Ordering::SeqCst) != 0
        }
    }
}
