//! The server runtime (the svc layer, std): worker threads, a ready queue
//! of transports, completion pollers, accept, graceful shutdown.
//!
//! `enqueue` follows `svc_xprt_enqueue`: a transport is queued only if it
//! is ready (CLOSE set, or DATA set and the SQ has space:
//! `svc_xprt_ready`) and a worker can take BUSY. A worker runs `recvfrom`,
//! clears BUSY and re-enqueues (`svc_xprt_received`, so another worker may
//! take the next call), dispatches, `sendto`, then `release_ctxt`. Because
//! an enqueue is refused while the SQ is full, the transport drains its
//! release list after every SQ wait (the seed's reason, reproduced).
//!
//! # Modes
//! [`ServerMode::ThreadPool`] (the default) is the kernel's shape: pollers
//! (shared doorbell pollers, completion-channel threads for `listen_rdma`)
//! run the completion handlers and enqueue; [`ServerConfig::workers`]
//! threads take transports off one ready queue. Every call costs a handoff
//! from a poller to a worker, but not a wakeup per call: the queue (`pool`)
//! wakes an idle worker only when none is already on its way, a worker
//! takes the next job before it sleeps, and after a pass it takes the same
//! transport again (a few times in a row at most) if that transport's next
//! call is already queued, so one connection's replies leave together.
//! Beyond the kernel, an enqueue wakes no idle worker while the queue holds
//! no more jobs than workers in a pass that will look at it before they
//! sleep (a worker inside a call of a
//! [`blocking`](crate::service::Service::blocking) program does not
//! count): in particular a worker's own `svc_xprt_received` wakes no one
//! unless its call blocks ([`ServerReport::received_wakes`]), so one
//! connection's calls do not spread over two workers posting on one QP.
//!
//! [`ServerMode::PollGroup`] runs to completion: [`ServerConfig::groups`]
//! threads (default one per CPU), each owning the transports assigned to
//! it at accept (the least loaded group). A group thread polls its
//! transports' CQs, and runs their passes (recvfrom, dispatch, sendto,
//! release_ctxt) itself. `svc_xprt_enqueue` becomes "queue a pass in my
//! group": on the group's own thread (completion handlers, the Deferred
//! policy's empty -> non-empty push, `svc_xprt_received`) it wakes nothing;
//! from another thread (a close, a CM event) it wakes the group. Idle, a
//! group sleeps on its doorbell (mock) or in `poll(2)` on its completion
//! channel and eventfd (verbs): no timer. A sendto that must wait for SQ
//! space polls on the group thread instead of sleeping (only that thread
//! would poll the completions it waits for). Calls of a program whose
//! [`Service::blocking`](crate::service::Service::blocking) is true are
//! handed to the workers, so a disk wait does not stall the group. Closing
//! keeps the kernel's order in both modes: CLOSE, then a pass retires the
//! transport and the last holder frees it.
//!
//! Transport ids come from a [`slab`] registry: slot index in the low 32
//! bits, a generation in the high 32, so an id that outlived its transport
//! never names the one that reused the slot.
//!
//! [`ServerReport`] counts the wakeups either way (`poller_wakeups`,
//! `worker_wakeups`, `worker_passes`, `handoffs`, `remote_pushes`).
//!
//! Beyond the kernel, one idle sweeper thread per server gives the send
//! contexts of transports idle for `XprtConfig::idle_shrink` back down to a
//! floor; it parks without a timer once every pool is at its floor.

mod accept;
mod bellgroup;
mod groupwait;
mod listener;
mod mode;
mod poller;
mod pollgroup;
mod pool;
#[cfg(feature = "verbs")]
mod rdma;
mod registry;
mod stats;
mod svc;
mod sweep;
mod xprt;

pub use listener::Listener;
#[cfg(feature = "mock")]
pub use listener::{MockConnector, MockListener, MockNetwork};
pub use mode::UnknownMode;
#[cfg(feature = "verbs")]
pub use rdma::{ListenConfig, ListenCounters, ListenError, RdmaListener};
pub use stats::{merge_stats, ServerReport, TransportReport};
pub use sweep::SweepReport;
pub use xprt::{CompletionWait, RtError, ServerXprt};

use crate::service::Dispatcher;
use bellgroup::PollGroup;
use pollgroup::RunQueue;
use pool::ReadyQueue;
use rdmaxprt_core::lifecycle::{Policy, WorkqueuePool};
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use svc::{worker, Job};

/// How the server runs its transports' calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerMode {
    /// The kernel's way (svc_xprt_enqueue + nfsd threads): completion
    /// pollers run the handlers and enqueue the transport on one ready
    /// queue; a worker thread takes it and runs recvfrom, dispatch,
    /// sendto, release_ctxt. Every call is handed from a poller to a
    /// worker.
    #[default]
    ThreadPool,
    /// Run to completion: [`ServerConfig::groups`] threads, each owning
    /// the transports assigned to it at accept (the least loaded group),
    /// poll their CQs and run their passes themselves, with no handoff per
    /// call. Only calls of a [`Service::blocking`](crate::service::Service::blocking)
    /// program are handed to the [`ServerConfig::workers`] threads.
    PollGroup,
}

/// Server configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// How calls are run: a thread pool (the default) or poll groups.
    pub mode: ServerMode,
    /// Poll-group threads ([`ServerMode::PollGroup`]); 0: one per CPU.
    pub groups: usize,
    /// Worker threads (nfsd threads). In [`ServerMode::PollGroup`] they run
    /// only the calls of blocking programs.
    pub workers: usize,
    /// Send-context release policy for new transports.
    pub policy: Policy,
    /// Per-transport sizing.
    pub xprt: XprtConfig,
    /// Threads of the shared release workqueue (Workqueue policy only);
    /// default one per CPU ([`WorkqueuePool::default_threads`]).
    pub workqueue_threads: usize,
    /// Safety cap on contexts per transport under the Workqueue policy
    /// (it grows while releases lag; the cap stops it short of OOM).
    pub workqueue_cap: u32,
    /// Completions handled per poll round.
    pub poll_budget: usize,
    /// Shared completion-poller threads, serving every QP that can ring a
    /// doorbell (the mock can); 0 gives every connection a poller thread of
    /// its own, as QPs that cannot ring always get. With `listen_rdma`: the
    /// completion-channel poller threads per device. Not used in
    /// [`ServerMode::PollGroup`] (the groups poll).
    pub pollers: usize,
}

impl ServerConfig {
    /// Poll-group threads this configuration starts (`groups`, or one per
    /// CPU when 0).
    pub fn group_threads(&self) -> usize {
        if self.groups > 0 {
            self.groups
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            mode: ServerMode::ThreadPool,
            groups: 0,
            workers: 2,
            policy: Policy::Deferred,
            xprt: XprtConfig::default(),
            workqueue_threads: WorkqueuePool::default_threads(),
            workqueue_cap: 1 << 16,
            poll_budget: 64,
            pollers: 1,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) struct Shared {
    ready: ReadyQueue<Job>,
    registry: Mutex<Registry>,
    /// Poll-group mode: calls of blocking programs go to the workers.
    handoff: bool,
    exit: AtomicBool,
    dispatcher: Dispatcher,
    report: Mutex<ServerReport>,
    live: Mutex<usize>,
    live_cv: Condvar,
    /// Worker passes started (see [`ServerReport::worker_passes`]).
    passes: AtomicU64,
    /// Calls handed from a poll group to the workers.
    handoffs: AtomicU64,
    /// Idle workers woken by a worker's own `svc_xprt_received`.
    received_wakes: AtomicU64,
    /// The idle sweeper's handle (its thread runs only with
    /// `XprtConfig::idle_shrink` set).
    sweeper: sweep::Sweeper,
}

/// The runtime's hook in a transport: its flags and its enqueue.
#[derive(Debug)]
pub struct RtHook {
    flags: XprtFlags,
    shared: Weak<Shared>,
    entry: OnceLock<Weak<Entry>>,
    /// The transport's poll group (poll-group mode); unset: the thread
    /// pool's ready queue. Set before `entry`, so no enqueue misses it.
    runq: OnceLock<Arc<RunQueue>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl RtHook {
    /// `svc_xprt_enqueue`; `received`: called by a pass's own
    /// `svc_xprt_received` (counted in `received_wakes` if it wakes a
    /// worker).
    fn enqueue_from(&self, received: bool) {
        let (Some(entry), Some(shared)) = (
            self.entry.get().and_then(Weak::upgrade),
            self.shared.upgrade(),
        ) else {
            return;
        };
        let f = &self.flags;
        // svc_xprt_ready: CLOSE always; DATA only with SQ space.
        let ready =
            f.test(XprtFlags::CLOSE) || (f.test(XprtFlags::DATA) && entry.xprt().has_wspace());
        if !ready || !f.test_and_set(XprtFlags::BUSY) {
            return;
        }
        match self.runq.get() {
            Some(q) => q.push(entry),
            None => {
                if shared.ready.push(Job::Xprt(entry)) && received {
                    shared.received_wakes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Enqueue for RtHook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }

    /// `svc_xprt_enqueue`.
    fn enqueue(&self) {
        self.enqueue_from(false);
    }
}

pub(crate) struct Entry {
    id: u64,
    hook: Arc<RtHook>,
    xprt: Option<Box<dyn ServerXprt>>,
    shared: Weak<Shared>,
    /// Tells the transport's poller that it closed (so the poller lets go
    /// of it without waiting for a completion).
    on_close: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("id", &self.id).finish()
    }
}

impl Entry {
    fn xprt(&self) -> &dyn ServerXprt {
        match &self.xprt {
            Some(x) => x.as_ref(),
            None => panic!("runtime invariant: a live entry holds its transport until drop"),
        }
    }
}

impl Drop for Entry {
    /// The last user is gone (workers, poller, ready queue, registry): no
    /// completion handler can run any more, so tear down.
    fn drop(&mut self) {
        let Some(x) = self.xprt.take() else { return };
        let td = x.free();
        let stats = td.send_stats;
        tracing::debug!(id = self.id, ?td, "transport freed");
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.report).add_freed(&stats, &td);
            *lock(&shared.live) -= 1;
            shared.live_cv.notify_all();
        }
    }
}

/// A running server.
///
/// Every method takes `&self`: share it in an `Arc` between the threads
/// that accept, listen and report, and call [`shutdown`](Self::shutdown)
/// from any of them, even while listeners run.
pub struct Server {
    cfg: ServerConfig,
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    pollers: Mutex<Vec<JoinHandle<()>>>,
    groups: Vec<Arc<poller::PollerGroup>>,
    /// Poll groups (poll-group mode) for QPs that ring a doorbell.
    /// Started with the first such QP: a server that only listens on
    /// rdma_cm runs its groups on its completion channels instead.
    pgroups: OnceLock<Vec<Arc<PollGroup>>>,
    sweeper: Mutex<Option<JoinHandle<()>>>,
    wq: Option<Arc<WorkqueuePool>>,
    /// Set by the first shutdown; later accepts fail.
    stopping: AtomicBool,
    /// Stops (and joins) the listeners started by `listen_rdma`.
    #[cfg(feature = "verbs")]
    listeners: Mutex<Vec<rdma::ListenerStop>>,
    /// Completion-channel poller groups (verbs), woken at shutdown.
    #[cfg(feature = "verbs")]
    chan_groups: Mutex<Vec<Arc<rdma::ChannelGroup>>>,
}

/// Where a new transport's completions are polled.
pub(crate) enum Placement {
    /// A shared poller group if the QP can ring a doorbell, else a
    /// dedicated poller thread.
    Auto,
    /// A poller thread serving a completion channel (verbs), and the key
    /// the group reserved for the transport (its CQs' user value).
    #[cfg(feature = "verbs")]
    Channel(Arc<rdma::ChannelGroup>, u64),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts the worker threads.
    pub fn start(cfg: ServerConfig, dispatcher: Dispatcher) -> Self {
        let shared = Arc::new(Shared {
            ready: ReadyQueue::new(poller::flush_rings),
            registry: Mutex::new(Registry::default()),
            handoff: cfg.mode == ServerMode::PollGroup,
            exit: AtomicBool::new(false),
            dispatcher,
            report: Mutex::new(ServerReport::default()),
            live: Mutex::new(0),
            live_cv: Condvar::new(),
            passes: AtomicU64::new(0),
            handoffs: AtomicU64::new(0),
            received_wakes: AtomicU64::new(0),
            sweeper: sweep::Sweeper::default(),
        });
        let workers = (0..cfg.workers.max(1))
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("rdmaxprt-svc{i}"))
                    .spawn(move || worker(&s))
                    .expect("spawning a server worker thread")
            })
            .collect();
        let wq =
            (cfg.policy == Policy::Workqueue).then(|| WorkqueuePool::new(cfg.workqueue_threads));
        let thread_pool = cfg.mode == ServerMode::ThreadPool;
        let groups: Vec<Arc<poller::PollerGroup>> = (0..cfg.pollers)
            .filter(|_| thread_pool)
            .map(|_| Arc::default())
            .collect();
        let pollers: Vec<JoinHandle<()>> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let (g, s) = (g.clone(), shared.clone());
                let budget = cfg.poll_budget;
                std::thread::Builder::new()
                    .name(format!("rdmaxprt-poll{i}"))
                    .spawn(move || g.run(budget, &s.exit))
                    .expect("spawning a completion poller thread")
            })
            .collect();
        let sweeper = cfg.xprt.idle_shrink.map(|s| {
            let sh = shared.clone();
            std::thread::Builder::new()
                .name("rdmaxprt-sweep".into())
                .spawn(move || sh.sweeper.run(&sh, s.after))
                .expect("spawning the idle sweeper thread")
        });
        Self {
            cfg,
            shared,
            workers: Mutex::new(workers),
            pollers: Mutex::new(pollers),
            groups,
            pgroups: OnceLock::new(),
            sweeper: Mutex::new(sweeper),
            wq,
            stopping: AtomicBool::new(false),
            #[cfg(feature = "verbs")]
            listeners: Mutex::new(Vec::new()),
            #[cfg(feature = "verbs")]
            chan_groups: Mutex::new(Vec::new()),
        }
    }

    /// The poll groups for QPs that ring a doorbell (poll-group mode),
    /// their threads started on first use. A thread that cannot be spawned
    /// leaves its group out (logged).
    fn poll_groups(&self) -> &[Arc<PollGroup>] {
        self.pgroups.get_or_init(|| {
            let mut threads = lock(&self.pollers);
            (0..self.cfg.group_threads())
                .filter_map(|i| {
                    let g = Arc::new(PollGroup::new());
                    let (g2, s) = (g.clone(), self.shared.clone());
                    let budget = self.cfg.poll_budget;
                    match std::thread::Builder::new()
                        .name(format!("rdmaxprt-group{i}"))
                        .spawn(move || g2.run(&s, budget))
                    {
                        Ok(t) => {
                            threads.push(t);
                            Some(g)
                        }
                        Err(e) => {
                            tracing::error!(%e, "spawning a poll-group thread failed");
                            None
                        }
                    }
                })
                .collect()
        })
    }

    /// The configuration the server was started with.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Reserves a transport id (a slot in the registry); a connection
    /// whose setup fails before `accept_placed` gives it back with
    /// [`cancel_id`](Self::cancel_id).
    fn alloc_id(&self) -> Result<u64, RtError> {
        lock(&self.shared.registry).reserve()
    }

    /// Frees a reserved id whose transport was never built.
    fn cancel_id(&self, id: u64) {
        lock(&self.shared.registry).cancel(id);
    }

    /// Closes transport `id` (CLOSE and enqueue: a worker, or in
    /// poll-group mode its group, frees it in the kernel's order once no
    /// one uses it). Returns whether it was live; an id whose transport
    /// is gone (even if its slot was reused since) is not.
    pub fn close_transport(&self, id: u64) -> bool {
        let Some(e) = lock(&self.shared.registry).get(id).cloned() else {
            return false;
        };
        e.xprt().close();
        e.hook.enqueue();
        true
    }

    /// Transports alive (not yet freed).
    pub fn live_transports(&self) -> usize {
        *lock(&self.shared.live)
    }

    /// Counters: freed transports' totals plus live ones' current values.
    pub fn report(&self) -> ServerReport {
        let mut r = self.counted();
        for t in self.transports() {
            r.add_live(&t);
        }
        r
    }

    /// How often the shared completion pollers (doorbell and
    /// completion-channel ones) and the poll groups woke from their sleep:
    /// idle means asleep, so on an idle server this does not move.
    pub fn poller_wakeups(&self) -> u64 {
        let doorbell: u64 = self
            .groups
            .iter()
            .map(|g| g.wakeups.load(Ordering::Relaxed))
            .chain(
                self.pgroups
                    .get()
                    .into_iter()
                    .flatten()
                    .map(|g| g.wakeups.load(Ordering::Relaxed)),
            )
            .sum();
        #[cfg(feature = "verbs")]
        let channel: u64 = lock(&self.chan_groups)
            .iter()
            .map(|g| g.wakeups.load(Ordering::Relaxed))
            .sum();
        #[cfg(not(feature = "verbs"))]
        let channel = 0;
        doorbell + channel
    }

    /// What the idle sweeper did so far (all zero with the idle shrink
    /// off).
    pub fn idle_sweeps(&self) -> SweepReport {
        self.shared.sweeper.report()
    }

    /// How many transport polls the shared doorbell pollers made: a
    /// poller polls only the transports whose QP rang, so this grows with
    /// the work, not with the transports served.
    pub fn poller_polls(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| g.polls.load(Ordering::Relaxed))
            .sum()
    }

    /// Each live transport's counters, by id.
    pub fn transports(&self) -> Vec<TransportReport> {
        let entries: Vec<Arc<Entry>> = lock(&self.shared.registry).live().cloned().collect();
        let mut v: Vec<TransportReport> = entries
            .iter()
            .map(|e| {
                let x = e.xprt();
                TransportReport {
                    id: e.id,
                    stats: x.stats(),
                    counters: x.counters(),
                    census: x.census(),
                }
            })
            .collect();
        v.sort_by_key(|t| t.id);
        v
    }

    /// Graceful shutdown: closes every transport, waits until each is
    /// drained and freed (QP drained, contexts released, buffers unmapped),
    /// then stops the workers and pollers. Returns the final counters.
    pub fn shutdown(&self) -> ServerReport {
        self.stopping.store(true, Ordering::Release);
        self.shared.sweeper.stop();
        if let Some(t) = lock(&self.sweeper).take() {
            let _ = t.join();
        }
        #[cfg(feature = "verbs")]
        {
            let stops: Vec<rdma::ListenerStop> = lock(&self.listeners).drain(..).collect();
            for l in stops {
                l.stop();
            }
        }
        let entries: Vec<Arc<Entry>> = lock(&self.shared.registry).live().cloned().collect();
        for e in &entries {
            e.xprt().close();
            e.hook.enqueue();
        }
        drop(entries);
        {
            let mut live = lock(&self.shared.live);
            while *live > 0 {
                let (g, _) = self
                    .shared
                    .live_cv
                    .wait_timeout(live, Duration::from_millis(50))
                    .unwrap_or_else(|p| p.into_inner());
                live = g;
                // A transport whose CLOSE enqueue was refused (BUSY) is
                // re-offered until a worker takes it.
                for e in lock(&self.shared.registry).live() {
                    e.hook.enqueue();
                }
            }
        }
        self.shared.exit.store(true, Ordering::Release);
        self.shared.ready.stop();
        for g in &self.groups {
            g.bell.ring();
        }
        for g in self.pgroups.get().into_iter().flatten() {
            g.bell.ring();
        }
        #[cfg(feature = "verbs")]
        for g in lock(&self.chan_groups).iter() {
            g.wake();
        }
        let workers: Vec<JoinHandle<()>> = lock(&self.workers).drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
        for p in lock(&self.pollers).drain(..) {
            let _ = p.join();
        }
        self.counted()
    }

    /// The freed transports' totals with the server's own counters.
    fn counted(&self) -> ServerReport {
        let mut r = lock(&self.shared.report).clone();
        r.worker_passes = self.shared.passes.load(Ordering::Relaxed);
        r.handoffs = self.shared.handoffs.load(Ordering::Relaxed);
        r.worker_wakeups = self.shared.ready.wakeups.load(Ordering::Relaxed);
        r.worker_notifies = self.shared.ready.notifies.load(Ordering::Relaxed);
        r.received_wakes = self.shared.received_wakes.load(Ordering::Relaxed);
        r.poller_wakeups = self.poller_wakeups();
        r.remote_pushes = self.remote_pushes();
        r
    }

    /// Pushes on a poll group's run queue from another thread (each woke
    /// the group): closes, handed-off calls' re-enqueues, CM events.
    fn remote_pushes(&self) -> u64 {
        let doorbell: u64 = self
            .pgroups
            .get()
            .into_iter()
            .flatten()
            .map(|g| g.runq.remote_pushes.load(Ordering::Relaxed))
            .sum();
        #[cfg(feature = "verbs")]
        let channel: u64 = lock(&self.chan_groups)
            .iter()
            .filter_map(|g| g.runq())
            .map(|q| q.remote_pushes.load(Ordering::Relaxed))
            .sum();
        #[cfg(not(feature = "verbs"))]
        let channel = 0;
        doorbell + channel
    }
}
