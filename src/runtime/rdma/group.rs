//! A completion-channel poller: one thread serving the CQs of many verbs
//! transports through one `ibv_comp_channel`, as the kernel's CQ polling
//! serves many svcrdma connections per core.
//!
//! Each transport's two CQs are created on the group's channel with the
//! transport's key in the group (a [`Slab`] slot reserved before the CQs
//! exist) as their user value, so a channel event names the transport. The thread sleeps in `poll(2)` on the channel fd and its
//! [`Wake`] eventfd, never on a timer. For each transport an event names
//! (or that was just added) it runs the loop the kernel runs: poll until
//! empty, arm both CQs, poll again (a completion that landed before the arm
//! raised no event), and only then move on. Every channel event is
//! acknowledged as soon as it is read.
//!
//! In poll-group mode the thread is also the transports' poll group: it
//! runs their passes itself (its [`RunQueue`]) between polls, and sleeps
//! only when none is queued.

use super::super::pollgroup::RunQueue;
use super::super::{lock, Entry, Shared};
use super::wake::{wait_readable, Wake};
use rdmaxprt_core::xprt::XprtFlags;
use rdmaxprt_verbs::CompletionChannel;
use slab::Slab;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One poller thread's channel and transports.
#[derive(Debug)]
pub(crate) struct ChannelGroup {
    pub(crate) channel: CompletionChannel,
    wake: Arc<Wake>,
    /// Transports by key (`None`: reserved for a connection being set up).
    entries: Mutex<Slab<Option<Arc<Entry>>>>,
    /// Poll-group mode: the passes this thread runs.
    runq: Option<Arc<RunQueue>>,
    /// Times the thread woke from its sleep.
    pub(crate) wakeups: AtomicU64,
}

impl ChannelGroup {
    /// A group on `channel`; `poll_group`: it runs its transports'
    /// passes too.
    pub(crate) fn new(channel: CompletionChannel, poll_group: bool) -> std::io::Result<Self> {
        let wake = Arc::new(Wake::new()?);
        let runq = poll_group.then(|| {
            let w = wake.clone();
            Arc::new(RunQueue::new(Box::new(move || w.ring())))
        });
        Ok(Self {
            channel,
            wake,
            entries: Mutex::default(),
            runq,
            wakeups: AtomicU64::new(0),
        })
    }

    /// The group's run queue (poll-group mode).
    pub(crate) fn runq(&self) -> Option<&Arc<RunQueue>> {
        self.runq.as_ref()
    }

    /// Reserves a key for a transport about to be set up (its CQs' user
    /// value); [`add`](Self::add) fills it, [`cancel`](Self::cancel) gives
    /// it back if setup fails.
    pub(crate) fn reserve(&self) -> u64 {
        lock(&self.entries).insert(None) as u64
    }

    /// Frees a reserved key that never got its transport.
    pub(crate) fn cancel(&self, key: u64) {
        let mut m = lock(&self.entries);
        if matches!(m.get(key as usize), Some(None)) {
            m.remove(key as usize);
        }
    }

    /// Adds a transport whose CQs are on this group's channel with user
    /// value `key` (from [`reserve`](Self::reserve)); the poller arms and
    /// polls it at once. When a pass retires the transport (CLOSE), the
    /// poller is told and lets go of it.
    pub(crate) fn add(&self, key: u64, e: Arc<Entry>) {
        let wake = Arc::clone(&self.wake);
        let _ = e.on_close.set(Box::new(move || wake.note_closed(key)));
        if let Some(slot) = lock(&self.entries).get_mut(key as usize) {
            *slot = Some(e);
        }
        self.wake.note_added(key);
    }

    /// Transports this poller serves (and keys reserved for new ones).
    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Wakes the thread (to see `exit`).
    pub(crate) fn wake(&self) {
        self.wake.ring();
    }

    /// The poller thread. Returns when `shared.exit` is set (and the group
    /// woken).
    pub(crate) fn run(&self, shared: &Shared, budget: usize) {
        let exit = &shared.exit;
        if let Some(q) = &self.runq {
            q.enter();
        }
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
                    .filter_map(|&k| {
                        let live = matches!(m.get(k as usize), Some(Some(_)));
                        live.then(|| m.remove(k as usize)).flatten()
                    })
                    .collect()
            };
            drop(retired);
            for key in ready.drain(..) {
                // A key retired and reused within this round names the new
                // transport: one extra poll/arm/poll, harmless.
                let e = lock(&self.entries).get(key as usize).cloned().flatten();
                if let Some(e) = e {
                    service(&e, budget);
                }
            }
            // Passes: a transport they re-queue waits for the next round.
            let passes = self.runq.as_ref().map_or(0, |q| q.run(shared));
            if exit.load(Ordering::Acquire) {
                break;
            }
            if passes > 0 {
                // Their sends' completions (and re-queued passes) first.
                continue;
            }
            wait_readable(&fds);
            self.wakeups.fetch_add(1, Ordering::Relaxed);
        }
        let left: Vec<Arc<Entry>> = lock(&self.entries).drain().flatten().collect();
        drop(left);
        if let Some(q) = &self.runq {
            q.clear();
        }
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
