//! Run-to-completion poll groups ([`ServerMode::PollGroup`](super::ServerMode)):
//! one thread per group owns a shard of the transports and does, for each,
//! poll CQ -> recvfrom -> dispatch -> sendto -> release_ctxt, with no
//! handoff per call (SPDK's poll group per core).
//!
//! A transport's `svc_xprt_enqueue` puts it on its group's [`RunQueue`]
//! instead of the server-wide ready queue. On the group's own thread (a
//! completion handler it ran while polling, the Deferred policy's
//! empty -> non-empty push, `svc_xprt_received`) that is a push on a list
//! and nothing more; only a push from another thread (a close, a CM event,
//! a worker finishing a handed-off call) wakes the group. Idle, the thread
//! sleeps on its doorbell (mock QPs ring it when they queue a completion)
//! or, for verbs, in `poll(2)` on its completion channel and eventfd
//! (`rdma::ChannelGroup`): never on a timer. The doorbell groups are in
//! `bellgroup`.

use super::groupwait::in_pass;
use super::svc::{handle, STREAK};
use super::{lock, Entry, Shared};
use rdmaxprt_core::xprt::XprtFlags;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

thread_local! {
    /// The run queue whose group this thread runs (its address; 0: none).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// A poll group's transports that want a pass, and how to wake its thread.
pub(crate) struct RunQueue {
    ready: Mutex<VecDeque<Arc<Entry>>>,
    /// Wakes the group's thread from its sleep (rings its doorbell or its
    /// eventfd); cheap, callable from any thread.
    wake: Box<dyn Fn() + Send + Sync>,
    /// Pushes from another thread (each one rang `wake`).
    pub(crate) remote_pushes: AtomicU64,
}

impl std::fmt::Debug for RunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunQueue").finish_non_exhaustive()
    }
}

impl RunQueue {
    pub(crate) fn new(wake: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            ready: Mutex::default(),
            wake,
            remote_pushes: AtomicU64::new(0),
        }
    }

    fn addr(&self) -> usize {
        self as *const Self as usize
    }

    /// Marks the calling thread as this group's thread.
    pub(crate) fn enter(&self) {
        CURRENT.with(|c| c.set(self.addr()));
    }

    /// Whether the calling thread is this group's thread.
    pub(crate) fn on_own_thread(&self) -> bool {
        CURRENT.with(|c| c.get()) == self.addr()
    }

    /// Whether the calling thread runs any poll group.
    pub(crate) fn on_a_group_thread() -> bool {
        CURRENT.with(|c| c.get()) != 0
    }

    /// Queues `e` (its caller holds BUSY for it) for a pass; wakes the
    /// group unless this is its own thread, which looks at the queue
    /// before it sleeps.
    pub(crate) fn push(&self, e: Arc<Entry>) {
        lock(&self.ready).push_back(e);
        if !self.on_own_thread() {
            self.remote_pushes.fetch_add(1, Ordering::Relaxed);
            (self.wake)();
        }
    }

    /// One pass over the transports queued when it starts (a transport
    /// re-queued by its own pass waits for the next round, after the group
    /// polled again, so each round bounds the Send WRs posted per
    /// transport between two polls), except that a transport whose next
    /// call was already received when its pass ended runs again at once,
    /// up to [`STREAK`] passes in a row (its replies leave together, so
    /// its client wakes once for several). Returns the passes run.
    pub(crate) fn run(&self, shared: &Shared) -> usize {
        let n = lock(&self.ready).len();
        let mut passes = 0;
        for _ in 0..n {
            let Some(mut e) = lock(&self.ready).pop_front() else {
                break;
            };
            for streak in 1.. {
                let id = e.id;
                in_pass(&e, || handle(shared, e.clone()));
                passes += 1;
                if streak >= STREAK {
                    break;
                }
                // `svc_xprt_received` queued it again during the pass,
                // behind the transports already queued.
                let mut q = lock(&self.ready);
                match q.iter().rposition(|x| x.id == id) {
                    Some(i) => match q.remove(i) {
                        Some(x) => e = x,
                        None => break,
                    },
                    None => break,
                }
            }
        }
        passes
    }

    /// Drops every queued transport (at exit).
    pub(crate) fn clear(&self) {
        let left: Vec<Arc<Entry>> = lock(&self.ready).drain(..).collect();
        drop(left);
    }
}

/// A sleeping group thread's doorbell. A ring costs an atomic swap unless
/// the thread is asleep (then a lock and a notify); a ring before the
/// sleep is never lost.
#[derive(Debug, Default)]
pub(crate) struct GroupBell {
    rung: AtomicBool,
    sleeping: AtomicBool,
    m: Mutex<()>,
    cv: Condvar,
}

impl GroupBell {
    /// Wakes the thread (any thread, cheap).
    pub(crate) fn ring(&self) {
        // SeqCst pairs with `wait`'s store of `sleeping` then swap of
        // `rung` (Dekker): either the sleeper sees the ring or we see it
        // sleeping and notify under its mutex.
        if self.rung.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.sleeping.load(Ordering::SeqCst) {
            let _g = lock(&self.m);
            self.cv.notify_one();
        }
    }

    /// Whether a ring is waiting to be consumed (tests).
    #[cfg(test)]
    pub(crate) fn is_rung(&self) -> bool {
        self.rung.load(Ordering::SeqCst)
    }

    /// Sleeps until rung (no timer); consumes the ring. Returns whether
    /// the thread actually slept.
    pub(crate) fn wait(&self) -> bool {
        if self.rung.swap(false, Ordering::SeqCst) {
            return false;
        }
        let mut g = lock(&self.m);
        self.sleeping.store(true, Ordering::SeqCst);
        let mut slept = false;
        while !self.rung.swap(false, Ordering::SeqCst) {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            slept = true;
        }
        self.sleeping.store(false, Ordering::SeqCst);
        slept
    }
}

/// A group of one for a QP that can ring no doorbell (a verbs QP handed
/// to `Server::accept`): polls, runs its passes, and sleeps on the QP
/// itself (with `IDLE_WAIT`, as the thread pool's dedicated poller) until
/// the transport closed and its closing pass ran.
pub(crate) fn dedicated(
    entry: Arc<Entry>,
    runq: Arc<RunQueue>,
    shared: Arc<Shared>,
    budget: usize,
) {
    runq.enter();
    let x = entry.xprt();
    while !x.flags().test(XprtFlags::CLOSE) {
        let polled = match x.poll(budget) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(id = entry.id, %e, "poll failed: closing");
                x.close();
                0
            }
        };
        if polled + runq.run(&shared) == 0 {
            x.wait_for_completions(super::poller::IDLE_WAIT);
        }
    }
    // The closing pass (and any pass queued before it).
    runq.run(&shared);
    runq.clear();
}
