//! Send Queue accounting (`sc_sq_avail` and the fair ticket wait).
//!
//! `avail` starts at the SQ depth. A post subtracts its chain's WR count;
//! non-negative means go (the fast path). Otherwise the poster undoes the
//! subtraction and joins the slow path: it takes a ticket, waits until the
//! ticket is served (or the transport closes), then waits for enough slots,
//! then serves the next ticket. Every ticket holder bumps `tail` exactly
//! once, also on close; tickets are compared with `==`, so wrapping is
//! harmless. Close wakes both queues (the May 2026 fix: the ticket queue has
//! no completion-driven wakeup). Send completions return slots with
//! [`SqAccount::wake_send_waiters`] and wake the space queue only if it has waiters.

use crate::sync::{fence, AtomicBool, AtomicI32, AtomicU32};
use crate::wait::WaitQueue;
use core::sync::atomic::Ordering;

/// The transport is closing: the caller must not post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqClosed;

impl core::fmt::Display for SqClosed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("transport closed while waiting for Send Queue space")
    }
}

/// How a reservation was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "after a wait the caller must drain the release list"]
pub enum Reserved {
    /// Fast path.
    Immediately,
    /// After waiting. While this thread waited, `has_wspace` was false and
    /// the runtime rejected enqueues, so the backstop's enqueue may have
    /// been dropped: drain the send release list now.
    AfterWait,
}

/// Send Queue slots of one transport.
#[derive(Debug)]
pub struct SqAccount<W: WaitQueue> {
    depth: i32,
    avail: AtomicI32,
    ticket_head: AtomicU32,
    ticket_tail: AtomicU32,
    closed: AtomicBool,
    ticket_wait: W,
    space_wait: W,
}

impl<W: WaitQueue + Default> SqAccount<W> {
    /// `depth` free slots (clamped to `i32::MAX`).
    pub fn new(depth: u32) -> Self {
        let depth = depth.min(i32::MAX as u32) as i32;
        Self {
            depth,
            avail: AtomicI32::new(depth),
            ticket_head: AtomicU32::new(0),
            ticket_tail: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            ticket_wait: W::default(),
            space_wait: W::default(),
        }
    }
}

impl<W: WaitQueue> SqAccount<W> {
    /// Free slots now (may be negative transiently during a fast-path try).
    pub fn avail(&self) -> i32 {
        self.avail.load(Ordering::Acquire)
    }

    /// The SQ depth.
    pub fn depth(&self) -> u32 {
        self.depth as u32
    }

    /// `has_wspace`: false while anyone waits for space or a ticket, so the
    /// runtime does not schedule the transport for more sends.
    #[doc(alias = "svc_rdma_has_wspace")]
    pub fn has_wspace(&self) -> bool {
        !self.ticket_wait.has_waiters() && !self.space_wait.has_waiters()
    }

    fn try_take(&self, n: i32) -> bool {
        // AcqRel: pairs with `wake_send_waiters`, ordering the completion's return of
        // slots before our reuse of them.
        if self.avail.fetch_sub(n, Ordering::AcqRel) - n >= 0 {
            true
        } else {
            self.avail.fetch_add(n, Ordering::AcqRel);
            false
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Reserves `n` slots for a chain of `n` WRs (`svc_rdma_sq_wait`).
    /// A chain longer than the whole SQ can never fit: callers must split
    /// it; here it is reported as closed-equivalent rather than hanging.
    #[doc(alias = "svc_rdma_sq_wait")]
    pub fn reserve(&self, n: u32) -> Result<Reserved, SqClosed> {
        if n == 0 {
            return Ok(Reserved::Immediately);
        }
        if n > self.depth as u32 {
            return Err(SqClosed);
        }
        let n = n as i32;
        if self.try_take(n) {
            return Ok(Reserved::Immediately);
        }
        let ticket = self.ticket_head.fetch_add(1, Ordering::SeqCst);
        self.ticket_wait
            .wait_until(&|| self.ticket_tail.load(Ordering::SeqCst) == ticket || self.is_closed());
        let res = loop {
            if self.is_closed() {
                break Err(SqClosed);
            }
            if self.try_take(n) {
                break Ok(Reserved::AfterWait);
            }
            self.space_wait
                .wait_until(&|| self.avail.load(Ordering::SeqCst) >= n || self.is_closed());
        };
        // Serve the next ticket whether we got slots or saw close: every
        // holder bumps the tail exactly once.
        self.ticket_tail.fetch_add(1, Ordering::SeqCst);
        self.ticket_wait.wake_all();
        res
    }

    /// Returns `n` slots (Send completion, or a post that consumed nothing).
    #[inline]
    #[doc(alias = "svc_rdma_wake_send_waiters")]
    pub fn wake_send_waiters(&self, n: u32) {
        self.return_slots(n);
        self.wake_space_waiters();
    }

    /// Returns `n` slots without waking anyone: the caller calls
    /// [`wake_space_waiters`](Self::wake_space_waiters) after its other
    /// state changes (one wake for all of them).
    #[inline]
    pub fn return_slots(&self, n: u32) {
        self.avail.fetch_add(n as i32, Ordering::AcqRel);
    }

    /// Wakes the space queue's waiters, if any, after a state change they
    /// may wait for other than slots (a send context back on the free or
    /// release list, for a `get` waiting at the pool's cap).
    #[inline]
    pub fn wake_space_waiters(&self) {
        // Dekker with `wait_until`'s registration: either the waiter sees
        // the new state (`avail`, a context back), or we see the waiter and
        // wake it.
        fence(Ordering::SeqCst);
        if self.space_wait.has_waiters() {
            self.space_wait.wake_all();
        }
    }

    /// Closes: every current and future waiter returns [`SqClosed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ticket_wait.wake_all();
        self.space_wait.wake_all();
    }

    /// Tickets taken so far by slow-path waiters (wrapping).
    pub fn tickets_issued(&self) -> u32 {
        self.ticket_head.load(Ordering::SeqCst)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn closed(&self) -> bool {
        self.is_closed()
    }

    /// The space wait queue, for callers that wait on Send completions for
    /// another reason (a send-context pool at its cap).
    pub fn space_wait(&self) -> &W {
        &self.space_wait
    }
}
