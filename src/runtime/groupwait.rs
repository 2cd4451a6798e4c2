//! The send-queue wait of a transport in a poll group.
//!
//! A `sendto` that finds the SQ full waits for Send completions to return
//! slots (`svc_rdma_sq_wait`). In the thread pool a poller thread handles
//! those completions while the worker sleeps. In a poll group the thread
//! that waits is the one that polls: sleeping would wait forever. So on a
//! group thread [`GroupWait`] polls the transport whose pass is running
//! until the condition holds (yielding between empty polls while the NIC
//! still owns the WRs); anywhere else (a worker answering a handed-off
//! call) it sleeps as [`CondvarWait`] does.
//!
//! In the thread pool, [`PoolWait`] sleeps as [`CondvarWait`] does after
//! ringing the poller's doorbells the worker deferred (`poller::defer_rings`):
//! the completions it waits for may be the ones it has not rung for yet.

use super::Entry;
use rdmaxprt_core::wait::{CondvarWait, WaitQueue};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// The transport whose pass this group thread is running.
    static PASS: RefCell<Option<Arc<Entry>>> = const { RefCell::new(None) };
}

/// Completions polled per round while waiting.
const WAIT_POLL_BUDGET: usize = 64;

/// Runs `f` (a pass over `e`) with `e` as the transport a wait on this
/// thread polls.
pub(crate) fn in_pass<R>(e: &Arc<Entry>, f: impl FnOnce() -> R) -> R {
    let prev = PASS.with(|p| p.borrow_mut().replace(e.clone()));
    let r = f();
    PASS.with(|p| *p.borrow_mut() = prev);
    r
}

/// A [`WaitQueue`] that polls instead of sleeping on a poll group's thread.
#[derive(Debug, Default)]
pub(crate) struct GroupWait {
    inner: CondvarWait,
}

impl WaitQueue for GroupWait {
    fn wait_until(&self, cond: &dyn Fn() -> bool) {
        let Some(e) = PASS.with(|p| p.borrow().clone()) else {
            return self.inner.wait_until(cond);
        };
        let x = e.xprt();
        while !cond() {
            // The completion handlers return SQ slots and wake waiters; a
            // failed poll closes the transport, and a closed SQ satisfies
            // every SQ wait.
            match x.poll(WAIT_POLL_BUDGET) {
                Ok(0) => std::thread::yield_now(),
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(id = e.id, %err, "poll failed while waiting: closing");
                    x.close();
                    std::thread::yield_now();
                }
            }
        }
    }

    fn wake_all(&self) {
        self.inner.wake_all();
    }

    fn has_waiters(&self) -> bool {
        self.inner.has_waiters()
    }
}

/// The thread pool's [`WaitQueue`]: [`CondvarWait`], after the waiting
/// worker rang the doorbells it deferred.
#[derive(Debug, Default)]
pub(crate) struct PoolWait {
    inner: CondvarWait,
}

impl WaitQueue for PoolWait {
    fn wait_until(&self, cond: &dyn Fn() -> bool) {
        super::poller::flush_rings();
        self.inner.wait_until(cond);
    }

    fn wake_all(&self) {
        self.inner.wake_all();
    }

    fn has_waiters(&self) -> bool {
        self.inner.has_waiters()
    }
}
