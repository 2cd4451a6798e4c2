//! The one lock type the mock uses: `std::sync::Mutex` with `std` (so the
//! NIC thread and pollers can sleep on a `Condvar`), a tiny spin lock on
//! `alloc`-only builds. Poisoning is ignored: a panicking test thread must
//! not turn every later check of the tracker into a second panic.

#[cfg(feature = "std")]
mod imp {
    pub(crate) use std::sync::MutexGuard;

    /// `std::sync::Mutex` without poisoning.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }

    /// Waits on `cv` for at most `timeout`, ignoring poisoning.
    pub(crate) fn wait_timeout<'a, T>(
        cv: &std::sync::Condvar,
        g: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, T> {
        match cv.wait_timeout(g, timeout) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    /// Waits on `cv` until notified, ignoring poisoning.
    pub(crate) fn wait<'a, T>(cv: &std::sync::Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cv.wait(g)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(not(feature = "std"))]
#[allow(unsafe_code)]
mod imp {
    use core::cell::UnsafeCell;
    use core::ops::{Deref, DerefMut};
    use core::sync::atomic::{AtomicBool, Ordering};

    /// A test-and-test-and-set spin lock around a value.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T> {
        locked: AtomicBool,
        data: UnsafeCell<T>,
    }

    // SAFETY: 1. `data` is only reached through a `MutexGuard`, and
    // 2. at most one guard exists at a time (the `locked` CAS), so the
    // lock hands `T` from thread to thread like `std::sync::Mutex`, which
    // needs exactly `T: Send`.
    unsafe impl<T: Send> Sync for Mutex<T> {}

    /// Access to the locked value; unlocks on drop.
    pub(crate) struct MutexGuard<'a, T> {
        m: &'a Mutex<T>,
    }

    impl<T> Mutex<T> {
        pub(crate) const fn new(v: T) -> Self {
            Self {
                locked: AtomicBool::new(false),
                data: UnsafeCell::new(v),
            }
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            loop {
                // Acquire pairs with the Release in `MutexGuard::drop`: the
                // previous holder's writes to `data` are visible to us.
                if self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return MutexGuard { m: self };
                }
                // Spin on a plain load so waiters do not bounce the line.
                while self.locked.load(Ordering::Relaxed) {
                    core::hint::spin_loop();
                }
            }
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: this guard is the only one (the CAS in `lock`), so no
            // `&mut T` exists elsewhere; the borrow ends with the guard's.
            unsafe { &*self.m.data.get() }
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`, and `&mut self` makes this the only
            // reference derived from the guard.
            unsafe { &mut *self.m.data.get() }
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            // Release publishes our writes to `data` to the next `lock`.
            self.m.locked.store(false, Ordering::Release);
        }
    }
}

pub(crate) use imp::*;
