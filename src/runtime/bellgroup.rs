//! A poll group for QPs that ring a doorbell when a completion may be
//! queued (the mock): the group polls only the transports whose QP rang
//! since it last polled them, so an idle transport costs a group nothing,
//! as a completion channel's event names the CQ that fired.

use super::pollgroup::{GroupBell, RunQueue};
use super::{lock, Entry, Shared};
use rdmaxprt_core::xprt::XprtFlags;
use slab::Slab;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A transport of the group, and whether its key is queued to be polled.
struct Member {
    entry: Arc<Entry>,
    queued: Arc<AtomicBool>,
}

/// Keys of transports to poll, and of transports to let go.
#[derive(Default)]
struct Notes {
    signalled: Mutex<Vec<usize>>,
    closed: Mutex<Vec<usize>>,
}

/// One poll-group thread's transports ([`ServerMode::PollGroup`](super::ServerMode)).
pub(crate) struct PollGroup {
    pub(crate) runq: Arc<RunQueue>,
    pub(crate) bell: Arc<GroupBell>,
    members: Mutex<Slab<Member>>,
    notes: Arc<Notes>,
    /// Times the thread woke from a sleep.
    pub(crate) wakeups: AtomicU64,
}

impl std::fmt::Debug for PollGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollGroup")
            .field("transports", &self.len())
            .finish_non_exhaustive()
    }
}

impl PollGroup {
    pub(crate) fn new() -> Self {
        let bell = Arc::new(GroupBell::default());
        let b = bell.clone();
        Self {
            runq: Arc::new(RunQueue::new(Box::new(move || b.ring()))),
            bell,
            members: Mutex::default(),
            notes: Arc::default(),
            wakeups: AtomicU64::new(0),
        }
    }

    /// Transports the group serves.
    pub(crate) fn len(&self) -> usize {
        lock(&self.members).len()
    }

    /// Takes the transport if its QP accepts this group's completion
    /// notifier (`false`: it cannot ring, and the group kept nothing). The
    /// notifier queues the transport's key to be polled and rings the bell,
    /// except on the group's own thread, which polls again after any round
    /// that did work.
    pub(crate) fn add(&self, e: Arc<Entry>) -> bool {
        let queued = Arc::new(AtomicBool::new(true));
        let key = lock(&self.members).insert(Member {
            entry: e.clone(),
            queued: queued.clone(),
        });
        // Holds no Entry: the QP keeps this closure, and the entry the QP.
        let (notes, bell, runq) = (self.notes.clone(), self.bell.clone(), self.runq.clone());
        let notifier = Arc::new(move || {
            // Queued once until the group takes the key and clears the
            // flag, which it does before polling (SeqCst with that store):
            // a completion after the clear queues the key again.
            if !queued.swap(true, Ordering::SeqCst) {
                lock(&notes.signalled).push(key);
            }
            if !runq.on_own_thread() {
                bell.ring();
            }
        });
        if !e.xprt().set_completion_notifier(notifier) {
            lock(&self.members).remove(key);
            return false;
        }
        let (notes, bell) = (self.notes.clone(), self.bell.clone());
        let _ = e.on_close.set(Box::new(move || {
            lock(&notes.closed).push(key);
            bell.ring();
        }));
        // Receives may have completed before the notifier was in place.
        lock(&self.notes.signalled).push(key);
        self.bell.ring();
        true
    }

    /// Polls one signalled transport until its CQs are empty; returns the
    /// completions handled.
    fn poll_member(&self, key: usize, budget: usize) -> usize {
        let m = lock(&self.members)
            .get(key)
            .map(|m| (m.entry.clone(), m.queued.clone()));
        // A key retired (and maybe reused) since it was queued: nothing,
        // or one extra poll of the new transport.
        let Some((e, queued)) = m else { return 0 };
        queued.store(false, Ordering::SeqCst);
        let x = e.xprt();
        if x.flags().test(XprtFlags::CLOSE) {
            // Its closing pass retires it.
            return 0;
        }
        let mut work = 0;
        loop {
            match x.poll(budget) {
                Ok(n) => {
                    work += n;
                    if n < budget {
                        return work;
                    }
                }
                Err(err) => {
                    tracing::debug!(id = e.id, %err, "poll failed: closing");
                    x.close();
                    return work;
                }
            }
        }
    }

    /// The group's thread: let go of retired transports, poll the
    /// signalled ones, run the queued passes, sleep when a round did
    /// nothing. Returns when `exit` is set.
    pub(crate) fn run(&self, shared: &Shared, budget: usize) {
        self.runq.enter();
        let exit = &shared.exit;
        while !exit.load(Ordering::Acquire) {
            let closed = std::mem::take(&mut *lock(&self.notes.closed));
            // Dropped outside the members lock: a last Arc frees its
            // transport here (QP drain, release, unmap).
            let retired: Vec<Member> = {
                let mut m = lock(&self.members);
                closed.iter().filter_map(|&k| m.try_remove(k)).collect()
            };
            drop(retired);
            let mut keys = std::mem::take(&mut *lock(&self.notes.signalled));
            keys.sort_unstable();
            keys.dedup();
            let mut work: usize = keys.iter().map(|&k| self.poll_member(k, budget)).sum();
            work += self.runq.run(shared);
            if work == 0 && !exit.load(Ordering::Acquire) && self.bell.wait() {
                self.wakeups.fetch_add(1, Ordering::Relaxed);
            }
        }
        let left: Vec<Member> = lock(&self.members).drain().collect();
        drop(left);
        self.runq.clear();
    }
}
