//! A completion-channel poller: one thread serving the CQs of many verbs
//! transports through one `ibv_comp_channel`, as the kernel's CQ polling
//! serves many svcrdma connections per core.
//!
//! Each transport's two CQs are created on the group's channel with the
//! transport id as their user value, so a channel event names the
//! transport. The thread sleeps in `poll(2)` on the channel fd and its
//! [`Wake`] eventfd, never on a timer. For each transport an event names
//! (or that was just added) it runs the loop the kernel runs: poll until
//! empty, arm both CQs, poll again (a completion that landed before the arm
//! raised no event), and only then move on. Every channel event is
//! acknowledged as soon as it is read.

use super::super::{lock, Entry};
use super::wake::{wait_readable, Wake};
use rdmaxprt_core::xprt::XprtFlags;
use rdmaxprt_verbs::CompletionChannel;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One poller thread's channel and transports.
#[derive(Debug)]
pub(crate) struct ChannelGroup {
    pub(crate) channel: CompletionChannel,
    wake: Arc<Wake>,
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    /// Times the thread woke from its sleep.
    pub(crate) wakeups: AtomicU64,
}

impl ChannelGroup {
    pub(crate) fn new(channel: CompletionChannel) -> std::io::Result<Self> {
        Ok(Self {
            channel,
            wake: Arc::new(Wake::new()?),
            entries: Mutex::default(),
            wakeups: AtomicU64::new(0),
        })
    }

    /// Adds a transport whose CQs are on this group's channel; the poller
    /// arms and polls it at once. When a worker retires the transport
    /// (CLOSE), the poller is told and lets go of it.
    pub(crate) fn add(&self, e: Arc<Entry>) {
        let id = e.id;
        let wake = Arc::clone(&self.wake);
        let _ = e.on_close.set(Box::new(move || wake.note_closed(id)));
        lock(&self.entries).insert(id, e);
        self.wake.note_added(id);
    }

    /// Transports this poller serves.
    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Wakes the thread (to see `exit`).
    pub(crate) fn wake(&self) {
        self.wake.ring();
    }

    /// The poller thread. Returns when `exit` is set (and the group woken).
    pub(crate) fn run(&self, budget: usize, exit: &AtomicBool) {
        let fds = [self.channel.fd(), self.wake.fd()];
        let mut ready: Vec<u64> = Vec::new();
        while !exit.load(Ordering::Acquire) {
            self.wake.reset();
            while let Some(id) = self.channel.next_event() {
                ready.push(id);
            }
            self.wake.take_added(&mut ready);
            ready.sort_unstable();
            ready.dedup();
            // Retired transports: drop our Arc outside the lock (the last
            // one frees the transport: QP drain, release, unmap, destroy).
            let retired: Vec<Arc<Entry>> = {
                let mut m = lock(&self.entries);
                self.wake
                    .take_closed()
                    .iter()
                    .filter_map(|id| m.remove(id))
                    .collect()
            };
            drop(retired);
            for id in ready.drain(..) {
                let e = lock(&self.entries).get(&id).cloned();
                if let Some(e) = e {
                    service(&e, budget);
                }
            }
            if exit.load(Ordering::Acquire) {
                break;
            }
            wait_readable(&fds);
            self.wakeups.fetch_add(1, Ordering::Relaxed);
        }
        let left: Vec<Arc<Entry>> = lock(&self.entries).drain().map(|(_, e)| e).collect();
        drop(left);
    }
}

/// Polls one transport until its CQs are empty and armed.
fn service(e: &Entry, budget: usize) {
    let x = e.xprt();
    if x.flags().test(XprtFlags::CLOSE) {
        return;
    }
    loop {
        match x.poll(budget) {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(id = e.id, %err, "poll failed: closing");
                x.close();
                return;
            }
        }
        if !x.arm_completions() {
            tracing::warn!(id = e.id, "arming the CQs failed: closing");
            x.close();
            return;
        }
        match x.poll(budget) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(err) => {
                tracing::debug!(id = e.id, %err, "poll failed: closing");
                x.close();
                return;
            }
        }
    }
}
