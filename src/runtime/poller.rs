//! Completion pollers: shared poller threads for QPs that can ring a
//! doorbell when completions arrive (they sleep until rung, no timer), and
//! a dedicated thread per QP for the ones that cannot (verbs QPs given to
//! `Server::accept` by hand; `listen_rdma` uses completion channels
//! instead, see `rdma`). Either way a poller only runs the completion handlers
//! (push on the release list, queue receives, enqueue); it never releases.

use super::{lock, Entry};
use rdmaxprt_core::xprt::XprtFlags;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a dedicated poller sleeps in its QP's wait before looking at
/// CLOSE again.
pub(crate) const IDLE_WAIT: Duration = Duration::from_millis(5);

/// A wakeup flag a sleeping poller waits on. `ring` before `wait` is never
/// lost: the flag stays set until the waiter consumes it.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell {
    /// Wakes the poller (cheap; callable from any thread).
    pub(crate) fn ring(&self) {
        *lock(&self.rung) = true;
        self.cv.notify_one();
    }

    /// Sleeps until rung (no timer: every reason to look again rings);
    /// consumes the ring.
    fn wait(&self) {
        let mut rung = lock(&self.rung);
        while !*rung {
            rung = self.cv.wait(rung).unwrap_or_else(|p| p.into_inner());
        }
        *rung = false;
    }
}

/// One shared poller thread's transports.
#[derive(Debug, Default)]
pub(crate) struct PollerGroup {
    pub(crate) bell: Arc<Doorbell>,
    entries: Mutex<Vec<Arc<Entry>>>,
    /// Times the thread woke from its sleep.
    pub(crate) wakeups: AtomicU64,
}

impl PollerGroup {
    /// Adds a transport whose QP rings this group's bell; its retirement
    /// (a worker saw CLOSE) rings it too, so the poller lets go of it.
    pub(crate) fn add(&self, e: Arc<Entry>) {
        let bell = Arc::clone(&self.bell);
        let _ = e.on_close.set(Box::new(move || bell.ring()));
        lock(&self.entries).push(e);
        self.bell.ring();
    }

    /// The shared poller: poll every transport, drop the closing ones (the
    /// last Arc frees them, outside the lock), sleep when a round found
    /// nothing. Returns when `exit` is set.
    pub(crate) fn run(&self, budget: usize, exit: &AtomicBool) {
        let mut closing = Vec::new();
        while !exit.load(Ordering::Acquire) {
            let mut work = 0;
            lock(&self.entries).retain(|e| {
                let x = e.xprt();
                if x.flags().test(XprtFlags::CLOSE) {
                    closing.push(e.clone());
                    return false;
                }
                match x.poll(budget) {
                    Ok(n) => {
                        work += n;
                        true
                    }
                    Err(err) => {
                        tracing::debug!(id = e.id, %err, "poll failed: closing");
                        x.close();
                        true
                    }
                }
            });
            closing.clear();
            if work == 0 && !exit.load(Ordering::Acquire) {
                self.bell.wait();
                self.wakeups.fetch_add(1, Ordering::Relaxed);
            }
        }
        lock(&self.entries).clear();
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
