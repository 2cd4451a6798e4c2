//! Completion pollers: shared poller threads for QPs that can ring a
//! doorbell when completions arrive, and a dedicated thread per QP for the
//! ones that cannot. Either way a poller only runs the completion handlers
//! (push on the release list, queue receives, enqueue); it never releases.

use super::{lock, Entry};
use rdmaxprt_core::xprt::XprtFlags;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a poller sleeps when nothing rang (a safety net: a ring always
/// wakes it sooner).
const IDLE_WAIT: Duration = Duration::from_millis(5);

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

    /// Sleeps until rung or `timeout`; consumes the ring.
    fn wait(&self, timeout: Duration) {
        let mut rung = lock(&self.rung);
        if !*rung {
            rung = self
                .cv
                .wait_timeout(rung, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *rung = false;
    }
}

/// One shared poller thread's transports.
#[derive(Debug, Default)]
pub(crate) struct PollerGroup {
    pub(crate) bell: Arc<Doorbell>,
    entries: Mutex<Vec<Arc<Entry>>>,
}

impl PollerGroup {
    /// Adds a transport whose QP rings this group's bell.
    pub(crate) fn add(&self, e: Arc<Entry>) {
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
            if work == 0 {
                self.bell.wait(IDLE_WAIT);
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
