//! [`SpinMutex`]: the crate's one spin lock, a test-and-test-and-set lock
//! around a value, for the no_std build and for critical sections of a
//! handful of instructions (the kernel holds `sc_send_lock` for exactly one
//! `llist_del_first`, `sc_rq_dto_lock` for one list operation).
//!
//! Loom-aware like the rest of the crate's sync: under
//! `--cfg rdmaxprt_loom` the flag is loom's atomic and the value sits in
//! loom's tracked cell, so the model checks that no two guards overlap.

use crate::sync::{spin_hint, AtomicBool, UnsafeCell};
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::Ordering;

/// A spin lock protecting a `T`: [`lock`](Self::lock) spins until the
/// lock is free and returns a guard that derefs to the value and unlocks
/// when dropped. No poisoning; never sleeps.
pub struct SpinMutex<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: 1. `data` is only reached through a `SpinMutexGuard`, and 2. at
// most one guard exists at a time (the Acquire CAS in `lock`; the Release
// store in the guard's drop hands the value to the next holder), so the
// lock moves `T` from thread to thread like `std::sync::Mutex`, which needs
// exactly `T: Send`.
unsafe impl<T: Send> Sync for SpinMutex<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: Send> Send for SpinMutex<T> {}

/// Access to the value of a locked [`SpinMutex`]; unlocks on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinMutexGuard<'a, T> {
    locked: &'a AtomicBool,
    #[cfg(not(rdmaxprt_loom))]
    data: *mut T,
    /// Loom's tracked exclusive access, ended before the unlock.
    #[cfg(rdmaxprt_loom)]
    data: Option<loom::cell::MutPtr<T>>,
    // The guard borrows the value mutably and is neither Send nor Sync
    // (the raw pointer already makes it so; this documents the borrow).
    _value: PhantomData<&'a mut T>,
}

impl<T> SpinMutex<T> {
    /// An unlocked lock around `value`.
    #[cfg(not(rdmaxprt_loom))]
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(value),
        }
    }

    /// An unlocked lock around `value` (loom's atomics have no const
    /// constructor).
    #[cfg(rdmaxprt_loom)]
    pub fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is ours.
    pub fn lock(&self) -> SpinMutexGuard<'_, T> {
        loop {
            // Acquire pairs with the Release in the guard's drop: everything
            // the previous holder did to the value is visible to us.
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinMutexGuard {
                    locked: &self.locked,
                    #[cfg(not(rdmaxprt_loom))]
                    data: self.data.with_mut(|p| p),
                    #[cfg(rdmaxprt_loom)]
                    data: Some(self.data.get_mut()),
                    _value: PhantomData,
                };
            }
            // Wait on a plain load so waiters do not bounce the line with
            // read-modify-writes.
            while self.locked.load(Ordering::Relaxed) {
                spin_hint();
            }
        }
    }

    /// The value, with the lock consumed (no other user can exist).
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for SpinMutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> fmt::Debug for SpinMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never lock in Debug (it could spin on a held lock forever).
        f.debug_struct("SpinMutex")
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> Deref for SpinMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (the CAS in `lock`), so no
        // `&mut T` exists elsewhere; the borrow ends with the guard's.
        #[cfg(not(rdmaxprt_loom))]
        unsafe {
            &*self.data
        }
        // SAFETY: as above; the tracked pointer lives until `drop`.
        #[cfg(rdmaxprt_loom)]
        unsafe {
            &*self.ptr().deref()
        }
    }
}

impl<T> DerefMut for SpinMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference derived from the guard.
        #[cfg(not(rdmaxprt_loom))]
        unsafe {
            &mut *self.data
        }
        // SAFETY: as above.
        #[cfg(rdmaxprt_loom)]
        unsafe {
            self.ptr().deref()
        }
    }
}

#[cfg(rdmaxprt_loom)]
impl<T> SpinMutexGuard<'_, T> {
    fn ptr(&self) -> &loom::cell::MutPtr<T> {
        match &self.data {
            Some(p) => p,
            None => unreachable!("the tracked pointer lives until drop"),
        }
    }
}

impl<T> Drop for SpinMutexGuard<'_, T> {
    fn drop(&mut self) {
        // End loom's tracked access before another thread can lock.
        #[cfg(rdmaxprt_loom)]
        drop(self.data.take());
        // Release publishes our writes to the value to the next `lock`.
        self.locked.store(false, Ordering::Release);
    }
}

impl<T: fmt::Debug> fmt::Debug for SpinMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(all(test, not(rdmaxprt_loom)))]
mod tests {
    use super::SpinMutex;

    #[test]
    fn the_guard_gives_the_value_and_unlocks() {
        let m = SpinMutex::new(1u32);
        *m.lock() += 1;
        {
            let g = m.lock();
            assert_eq!(*g, 2);
        }
        // Re-locking after the guard dropped does not spin forever.
        *m.lock() += 1;
        assert_eq!(m.into_inner(), 3);
    }

    #[cfg(feature = "std")]
    #[test]
    fn two_threads_never_lose_an_update() {
        extern crate std;
        let m = SpinMutex::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        *m.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(m.into_inner(), 20_000);
    }
}
