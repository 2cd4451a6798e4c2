//! The one lock type the mock uses: `std::sync::Mutex` with `std` (so the
//! NIC thread and pollers can sleep on a `Condvar`), core's
//! [`SpinMutex`](rdmaxprt_core::spin::SpinMutex) on `alloc`-only builds. Poisoning is ignored: a panicking test thread must
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
mod imp {
    // The core crate's spin lock (no poisoning to ignore).
    pub(crate) use rdmaxprt_core::spin::SpinMutex as Mutex;
}

pub(crate) use imp::*;
