//! Transport flags and the enqueue hook (`svc_xprt_enqueue`).

use crate::sync::AtomicU32;
use core::sync::atomic::Ordering;

/// Per-transport flag word (`xpt_flags`).
#[derive(Debug)]
pub struct XprtFlags(AtomicU32);

impl XprtFlags {
    /// Work is pending: a receive, a read completion, or contexts to drain.
    #[doc(alias = "XPT_DATA")]
    pub const DATA: u32 = 1 << 0;
    /// The transport is closing; no new work.
    #[doc(alias = "XPT_CLOSE")]
    pub const CLOSE: u32 = 1 << 1;
    /// A worker owns the transport right now.
    #[doc(alias = "XPT_BUSY")]
    pub const BUSY: u32 = 1 << 2;
    /// A connection request waits to be accepted (listeners).
    #[doc(alias = "XPT_CONN")]
    pub const CONN_PENDING: u32 = 1 << 3;

    /// No flags set.
    pub fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Sets `bits`; returns whether all of them were already set.
    ///
    /// SeqCst: the flag protocol is a Dekker pattern (a producer sets DATA
    /// then checks BUSY; a worker clears BUSY then checks DATA), which needs
    /// a total order between the store of one flag and the load of another.
    #[inline]
    pub fn set(&self, bits: u32) -> bool {
        self.0.fetch_or(bits, Ordering::SeqCst) & bits == bits
    }

    /// Clears `bits`; returns whether any of them was set.
    #[inline]
    pub fn clear(&self, bits: u32) -> bool {
        self.0.fetch_and(!bits, Ordering::SeqCst) & bits != 0
    }

    /// Whether any of `bits` is set.
    #[inline]
    pub fn test(&self, bits: u32) -> bool {
        self.0.load(Ordering::SeqCst) & bits != 0
    }

    /// Sets `bits` and returns `true` only if none of them was set before
    /// (`test_and_set_bit`, used to take BUSY).
    #[inline]
    pub fn test_and_set(&self, bits: u32) -> bool {
        self.0.fetch_or(bits, Ordering::SeqCst) & bits == 0
    }
}

impl Default for XprtFlags {
    fn default() -> Self {
        Self::new()
    }
}

/// What the server runtime provides to a transport: its flags and a way to
/// schedule it on a worker (`svc_xprt_enqueue`). The runtime decides whether
/// the enqueue really queues (DATA set, not BUSY, SQ space: `svc_xprt_ready`).
pub trait Enqueue: Send + Sync {
    /// The transport's flags.
    fn flags(&self) -> &XprtFlags;
    /// Asks the runtime to run a worker on this transport.
    #[doc(alias = "svc_xprt_enqueue")]
    fn enqueue(&self);
}

impl<T: Enqueue + ?Sized> Enqueue for &T {
    fn flags(&self) -> &XprtFlags {
        (**self).flags()
    }
    fn enqueue(&self) {
        (**self).enqueue()
    }
}

#[cfg(feature = "alloc")]
impl<T: Enqueue + ?Sized> Enqueue for alloc::sync::Arc<T> {
    fn flags(&self) -> &XprtFlags {
        (**self).flags()
    }
    fn enqueue(&self) {
        (**self).enqueue()
    }
}
