//! The idle send-context shrink's transport side (beyond the kernel, whose
//! transports keep every send context until teardown): its configuration,
//! and the two cheap reads an idle sweeper needs.
//!
//! Who notices idleness is the caller's business (the runtime runs one
//! coarse sweeper per server): the transport adds nothing to the completion
//! path or to the worker's pass. A sweeper reads [`SvcRdmaXprt::activity`]
//! (the replies counter `sendto` bumps anyway) once per period; a value
//! unchanged since its previous look means no reply for at least one full
//! period, and then [`SvcRdmaXprt::shrink_idle`] gives the free contexts
//! above the floor back.

use super::SvcRdmaXprt;
use crate::backend::QueuePair;
use crate::lifecycle::SendCtxtLifecycle;
use crate::wait::WaitQueue;
use crate::xprt::Enqueue;
use core::sync::atomic::Ordering;
use core::time::Duration;

/// When and how far an idle transport's send-context cache shrinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleShrink {
    /// How long a transport must send no reply before it shrinks (a
    /// sweeper looking once per `after` shrinks it after between one and
    /// two periods of silence).
    pub after: Duration,
    /// Contexts kept: the pool shrinks to `max(floor, contexts in use)`.
    pub floor: u32,
}

impl IdleShrink {
    /// The default: 30 s of silence, 4 contexts kept (a sequential client
    /// never needs more than 2).
    pub const DEFAULT: Self = Self {
        after: Duration::from_secs(30),
        floor: 4,
    };
}

impl Default for IdleShrink {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair,
    E: Enqueue,
    W: WaitQueue,
{
    /// A counter that moves whenever the transport uses a send context
    /// (replies posted, RDMA_ERROR ones included). Unchanged between two
    /// looks = no send context was taken in between.
    pub fn activity(&self) -> u64 {
        self.counters.replies.load(Ordering::Relaxed)
    }

    /// Send contexts that exist right now (the pool's size).
    pub fn send_ctxts(&self) -> u64 {
        self.send.pool().stats().pool_size.load(Ordering::Relaxed)
    }

    /// Whether the pool holds more contexts than the idle floor (always
    /// `false` with the shrink off).
    pub fn above_idle_floor(&self) -> bool {
        self.cfg
            .idle_shrink
            .is_some_and(|s| self.send_ctxts() > u64::from(s.floor))
    }

    /// The idle shrink: frees the free send contexts above the configured
    /// floor (unmapping their header buffers); contexts in use are never
    /// touched. Returns how many were freed (0 with the shrink off). Safe
    /// at any time; a `get` that needs more contexts later reallocates.
    pub fn shrink_idle(&self) -> usize {
        let Some(s) = self.cfg.idle_shrink else {
            return 0;
        };
        let n = self.send.pool().shrink(s.floor);
        if n != 0 {
            // A `get` at the cap may have missed the contexts the shrink
            // held for a moment: let it look again (now at the hollow list).
            self.sq.wake_space_waiters();
        }
        n
    }
}
