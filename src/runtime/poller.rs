//! Completion pollers: shared poller threads for QPs that can ring a
//! doorbell when completions arrive (they sleep until rung, no timer, and
//! poll only the transports whose QP rang, so idle transports cost a
//! wakeup nothing), and
//! a dedicated thread per QP for the ones that cannot (verbs QPs given to
//! `Server::accept` by hand; `listen_rdma` uses completion channels
//! instead, see `rdma`). Either way a poller only runs the completion handlers
//! (push on the release list, queue receives, enqueue); it never releases.

use super::pollgroup::GroupBell;
use super::{lock, Entry};
use rdmaxprt_core::xprt::XprtFlags;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a dedicated poller sleeps in its QP's wait before looking at
/// CLOSE again.
pub(crate) const IDLE_WAIT: Duration = Duration::from_millis(5);

/// One transport's place in a shared poller group: the group polls it only
/// when its QP rang (it is on the group's ready list), never by scanning
/// every transport it serves.
struct PollSlot {
    /// On the ready list (or about to be): rings while set push nothing.
    queued: AtomicBool,
    /// The transport, until the poller sees CLOSE and lets go of it (the
    /// QP's notifier holds this slot: taking the entry out breaks the
    /// cycle so the transport can be freed).
    entry: Mutex<Option<Arc<Entry>>>,
}

/// One shared poller thread's transports.
#[derive(Debug, Default)]
pub(crate) struct PollerGroup {
    pub(crate) bell: Arc<PollerBell>,
    /// Transports whose QP rang since the poller last looked at them.
    ready: Arc<Mutex<Vec<Arc<PollSlot>>>>,
    /// Every transport the group serves, by id (let go of at exit).
    live: Mutex<HashMap<u64, Arc<PollSlot>>>,
    /// Times the thread woke from its sleep.
    pub(crate) wakeups: AtomicU64,
    /// Transports polled (one per ready-list entry looked at).
    pub(crate) polls: AtomicU64,
}

impl std::fmt::Debug for PollSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollSlot")
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

/// Puts `slot` on the ready list unless it is there already, and rings
/// (or, on a worker, defers the ring: [`defer_rings`]).
fn schedule(slot: &Arc<PollSlot>, ready: &Mutex<Vec<Arc<PollSlot>>>, bell: &Arc<PollerBell>) {
    // SeqCst pairs with the poller's clear before it polls: either this
    // sees the clear (and queues again), or the poller's poll, which comes
    // after its clear, sees the completion that made the QP ring.
    if !slot.queued.swap(true, Ordering::SeqCst) {
        lock(ready).push(Arc::clone(slot));
        ring_or_defer(bell);
    } else if bell.deferred.load(Ordering::SeqCst) && !DEFERS.with(Cell::get) {
        // Queued by a worker that has not rung yet: this completion (a
        // client's call, say) must not wait for that worker's flush.
        bell.ring();
    }
}

/// A shared poller's doorbell, and whether a worker holds back a ring.
#[derive(Debug, Default)]
pub(crate) struct PollerBell {
    bell: GroupBell,
    /// A worker pushed a slot and deferred its ring (cleared by any ring).
    deferred: AtomicBool,
}

impl PollerBell {
    /// Wakes the poller.
    pub(crate) fn ring(&self) {
        self.deferred.store(false, Ordering::SeqCst);
        self.bell.ring();
    }

    fn wait(&self) -> bool {
        self.bell.wait()
    }
}

thread_local! {
    /// Set on worker threads: their rings wait for [`flush_rings`].
    static DEFERS: Cell<bool> = const { Cell::new(false) };
    /// The doorbell a worker's pass rang since its last flush.
    static DEFERRED: RefCell<Option<Arc<PollerBell>>> = const { RefCell::new(None) };
}

/// Makes the calling thread (a worker) defer the doorbell rings its posts
/// make until [`flush_rings`]: a reply's Send completion then wakes a
/// sleeping poller once per run of passes, not once per reply. The worker
/// flushes before anything that could wait on the poller (its sleep on
/// the ready queue, a blocking program's call, an SQ wait). Its rings'
/// transports are on the poller's ready list meanwhile: any other ring
/// makes the poller poll them too.
pub(crate) fn defer_rings() {
    DEFERS.with(|d| d.set(true));
}

/// Rings the doorbell this thread deferred, if any.
pub(crate) fn flush_rings() {
    if let Some(b) = DEFERRED.with(|d| d.borrow_mut().take()) {
        b.ring();
    }
}

fn ring_or_defer(bell: &Arc<PollerBell>) {
    if !DEFERS.with(Cell::get) {
        bell.ring();
        return;
    }
    bell.deferred.store(true, Ordering::SeqCst);
    let prev = DEFERRED.with(|d| d.borrow_mut().replace(Arc::clone(bell)));
    // Another group's bell (several shared pollers): ring it now.
    if let Some(p) = prev.filter(|p| !Arc::ptr_eq(p, bell)) {
        p.ring();
    }
}

impl PollerGroup {
    /// Serves `e` from this group if its QP can ring a doorbell: its
    /// completions and its retirement (a worker saw CLOSE) put it on the
    /// group's ready list. Returns `false` (and keeps nothing) if the QP
    /// cannot ring; the caller then gives it a dedicated poller.
    pub(crate) fn attach(&self, e: &Arc<Entry>) -> bool {
        let slot = Arc::new(PollSlot {
            queued: AtomicBool::new(false),
            entry: Mutex::new(Some(Arc::clone(e))),
        });
        let ring: Arc<dyn Fn() + Send + Sync> = {
            let (slot, ready, bell) = (slot.clone(), self.ready.clone(), self.bell.clone());
            Arc::new(move || schedule(&slot, &ready, &bell))
        };
        if !e.xprt().set_completion_notifier(ring.clone()) {
            return false;
        }
        let _ = e.on_close.set(Box::new(move || ring()));
        lock(&self.live).insert(e.id, slot.clone());
        // Receives may have completed already.
        schedule(&slot, &self.ready, &self.bell);
        true
    }

    /// The shared poller: poll the transports whose QP rang, let go of the
    /// closing ones (the last Arc frees them, outside the locks), sleep
    /// when none rang. Returns when `exit` is set.
    pub(crate) fn run(&self, budget: usize, exit: &AtomicBool) {
        let mut batch = Vec::new();
        let mut closing = Vec::new();
        while !exit.load(Ordering::Acquire) {
            std::mem::swap(&mut batch, &mut *lock(&self.ready));
            if batch.is_empty() {
                // A ring since the last look is consumed without sleeping
                // (and without a system call): only real sleeps count.
                if self.bell.wait() {
                    self.wakeups.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            for slot in batch.drain(..) {
                // Cleared before the poll: a ring from here on queues again.
                slot.queued.store(false, Ordering::SeqCst);
                let Some(e) = lock(&slot.entry).clone() else {
                    continue;
                };
                let x = e.xprt();
                if x.flags().test(XprtFlags::CLOSE) {
                    lock(&slot.entry).take();
                    lock(&self.live).remove(&e.id);
                    closing.push(e);
                    continue;
                }
                self.polls.fetch_add(1, Ordering::Relaxed);
                match x.poll(budget) {
                    // The budget ran out: more may be waiting.
                    Ok(n) if n >= budget => schedule(&slot, &self.ready, &self.bell),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(id = e.id, %err, "poll failed: closing");
                        x.close();
                    }
                }
            }
            closing.clear();
        }
        for (_, slot) in lock(&self.live).drain() {
            lock(&slot.entry).take();
        }
        lock(&self.ready).clear();
    }
}

/// A dedicated poller for a QP that cannot ring a doorbell: polls, and
/// sleeps on the QP itself when idle, until the transport closes.
pub(crate) fn dedicated(entry: Arc<Entry>, budget: usize) {
    let x = entry.xprt();
    while !x.flags().test(XprtFlags::CLOSE) {
        match x.poll(budget) {
            Ok(0) => {
                x.wait_for_completions(IDLE_WAIT);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(id = entry.id, %e, "poll failed: closing");
                x.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Arc<PollSlot> {
        Arc::new(PollSlot {
            queued: AtomicBool::new(false),
            entry: Mutex::new(None),
        })
    }

    /// On a thread of its own (the deferral is per thread).
    fn on_a_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| s.spawn(f).join().unwrap())
    }

    #[test]
    fn a_workers_rings_wait_for_its_flush_and_ring_once() {
        let bell = Arc::new(PollerBell::default());
        let ready = Mutex::new(Vec::new());
        let (a, b) = (slot(), slot());
        on_a_thread(|| {
            defer_rings();
            // Two replies' Send completions on two transports: both
            // queued for the poller, its doorbell not rung yet.
            schedule(&a, &ready, &bell);
            schedule(&b, &ready, &bell);
            assert_eq!(lock(&ready).len(), 2);
            assert!(!bell.bell.is_rung(), "a deferred ring woke the poller");
            flush_rings();
            assert!(bell.bell.is_rung());
            assert!(!bell.wait(), "one ring, consumed without sleeping");
            flush_rings();
            assert!(!bell.bell.is_rung(), "a flush rings once");
        });
    }

    #[test]
    fn a_ring_from_another_thread_is_not_swallowed_by_a_deferred_one() {
        let bell = Arc::new(PollerBell::default());
        let ready = Mutex::new(Vec::new());
        let a = slot();
        on_a_thread(|| {
            defer_rings();
            schedule(&a, &ready, &bell);
        });
        assert!(!bell.bell.is_rung());
        // A client's call on the same transport: already queued, but the
        // poller must not wait for the worker's flush to see it.
        on_a_thread(|| schedule(&a, &ready, &bell));
        assert!(bell.bell.is_rung());
        assert_eq!(lock(&ready).len(), 1);
    }

    #[test]
    fn rings_off_worker_threads_are_not_deferred() {
        let bell = Arc::new(PollerBell::default());
        let ready = Mutex::new(Vec::new());
        let a = slot();
        on_a_thread(|| schedule(&a, &ready, &bell));
        assert!(bell.bell.is_rung());
    }
}
