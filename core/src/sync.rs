//! The one place that chooses between real atomics and loom's model-checked
//! ones. Every lock-free structure in this crate imports its primitives from
//! here, so `RUSTFLAGS="--cfg rdmaxprt_loom"` checks the code that ships.

#[cfg(not(rdmaxprt_loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8};

#[cfg(rdmaxprt_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8};

#[cfg(rdmaxprt_loom)]
pub(crate) use loom::sync::{Condvar, Mutex};
#[cfg(all(feature = "std", not(rdmaxprt_loom)))]
pub(crate) use std::sync::{Condvar, Mutex};

/// Interior mutability for slot contents. Under loom this is loom's tracked
/// cell, so the model also checks that no two threads touch a context at once.
#[cfg(not(rdmaxprt_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(rdmaxprt_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(core::cell::UnsafeCell::new(v))
    }
    /// Runs `f` with a shared pointer to the contents.
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Runs `f` with an exclusive pointer to the contents.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
    /// The contents, by value.
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(rdmaxprt_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Called in every spin loop: a CPU hint normally, a scheduling point under
/// loom (a spin loop without it would never let the other thread run).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(rdmaxprt_loom)]
    loom::thread::yield_now();
    #[cfg(not(rdmaxprt_loom))]
    core::hint::spin_loop();
}
