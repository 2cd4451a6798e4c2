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

mod listener;
mod poller;
#[cfg(feature = "verbs")]
mod rdma;
mod stats;
mod xprt;

pub use listener::Listener;
#[cfg(feature = "mock")]
pub use listener::{MockConnector, MockListener, MockNetwork};
#[cfg(feature = "verbs")]
pub use rdma::{ListenConfig, ListenCounters, ListenError, RdmaListener};
pub use stats::{merge_stats, ServerReport, TransportReport};
pub use xprt::{CompletionWait, RtError, ServerXprt};

use crate::service::Dispatcher;
use rdmaxprt_core::backend::{DmaDevice, QueuePair};
use rdmaxprt_core::lifecycle::{Deferred, Inline, Policy, Workqueue, WorkqueuePool};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{SvcRdmaXprt, XprtConfig};
use rdmaxprt_core::wait::CondvarWait;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// Server configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Worker threads (nfsd threads).
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
    /// its own, as QPs that cannot ring always get.
    pub pollers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
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

struct Shared {
    ready: Mutex<VecDeque<Arc<Entry>>>,
    ready_cv: Condvar,
    registry: Mutex<HashMap<u64, Arc<Entry>>>,
    exit: AtomicBool,
    dispatcher: Dispatcher,
    report: Mutex<ServerReport>,
    live: Mutex<usize>,
    live_cv: Condvar,
    /// Worker passes started (see [`ServerReport::worker_passes`]).
    passes: AtomicU64,
}

/// The runtime's hook in a transport: its flags and its enqueue.
#[derive(Debug)]
pub struct RtHook {
    flags: XprtFlags,
    shared: Weak<Shared>,
    entry: OnceLock<Weak<Entry>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Enqueue for RtHook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }

    /// `svc_xprt_enqueue`.
    fn enqueue(&self) {
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
        lock(&shared.ready).push_back(entry);
        shared.ready_cv.notify_one();
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
    wq: Option<Arc<WorkqueuePool>>,
    next_id: AtomicU64,
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
    /// A poller thread serving a completion channel (verbs).
    #[cfg(feature = "verbs")]
    Channel(Arc<rdma::ChannelGroup>),
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
            ready: Mutex::new(VecDeque::new()),
            ready_cv: Condvar::new(),
            registry: Mutex::new(HashMap::new()),
            exit: AtomicBool::new(false),
            dispatcher,
            report: Mutex::new(ServerReport::default()),
            live: Mutex::new(0),
            live_cv: Condvar::new(),
            passes: AtomicU64::new(0),
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
        let groups: Vec<Arc<poller::PollerGroup>> =
            (0..cfg.pollers).map(|_| Arc::default()).collect();
        let pollers = groups
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
        Self {
            cfg,
            shared,
            workers: Mutex::new(workers),
            pollers: Mutex::new(pollers),
            groups,
            wq,
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            #[cfg(feature = "verbs")]
            listeners: Mutex::new(Vec::new()),
            #[cfg(feature = "verbs")]
            chan_groups: Mutex::new(Vec::new()),
        }
    }

    /// The configuration the server was started with.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    fn alloc_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Closes transport `id` (CLOSE and enqueue: a worker frees it in the
    /// kernel's order once no one uses it). Returns whether it was live.
    pub fn close_transport(&self, id: u64) -> bool {
        let Some(e) = lock(&self.shared.registry).get(&id).cloned() else {
            return false;
        };
        e.xprt().close();
        e.hook.enqueue();
        true
    }

    /// Accepts a connected QP: builds its transport with the configured
    /// policy, posts its receives, starts its completion poller. Returns
    /// the transport id.
    pub fn accept<D, Q>(&self, dev: D, qp: Q) -> Result<u64, RtError>
    where
        D: DmaDevice + Send + Sync + 'static,
        D::Buf: Send,
        D::Error: Send + 'static,
        Q: QueuePair<Error = D::Error> + CompletionWait + Send + Sync + 'static,
    {
        let id = self.alloc_id();
        self.accept_placed(dev, qp, self.cfg.xprt, id, Placement::Auto)
    }

    /// [`accept`](Self::accept) with this connection's own transport
    /// configuration (e.g. negotiated inline thresholds), its id chosen by
    /// the caller (from `alloc_id`), and where to poll it.
    pub(crate) fn accept_placed<D, Q>(
        &self,
        dev: D,
        qp: Q,
        x: XprtConfig,
        id: u64,
        placement: Placement,
    ) -> Result<u64, RtError>
    where
        D: DmaDevice + Send + Sync + 'static,
        D::Buf: Send,
        D::Error: Send + 'static,
        Q: QueuePair<Error = D::Error> + CompletionWait + Send + Sync + 'static,
    {
        if self.stopping.load(Ordering::Acquire) || self.shared.exit.load(Ordering::Acquire) {
            return Err(RtError::Closed);
        }
        let hook = Arc::new(RtHook {
            flags: XprtFlags::new(),
            shared: Arc::downgrade(&self.shared),
            entry: OnceLock::new(),
        });
        let caps = qp.caps();
        let pcfg = PoolConfig {
            xprt_id: id as u32,
            ..PoolConfig::for_transport(caps.sq_depth, self.cfg.xprt.credits, caps.max_send_sge)
        };
        let map = |e| xprt_err::<D>(e);
        let boxed: Box<dyn ServerXprt> = match (self.cfg.policy, &self.wq) {
            (Policy::Workqueue, Some(wq)) => {
                let pcfg = PoolConfig {
                    cap: self.cfg.workqueue_cap,
                    ..pcfg
                };
                let life: Workqueue<D> = Workqueue::new(dev, pcfg, wq.clone());
                Box::new(
                    SvcRdmaXprt::<_, _, _, CondvarWait>::new(x, qp, life, hook.clone())
                        .map_err(map)?,
                )
            }
            (Policy::Inline, _) => {
                let life: Inline<D> = Inline::new(dev, pcfg);
                Box::new(
                    SvcRdmaXprt::<_, _, _, CondvarWait>::new(x, qp, life, hook.clone())
                        .map_err(map)?,
                )
            }
            _ => {
                let life: Deferred<D, Arc<RtHook>> = Deferred::new(dev, pcfg, hook.clone());
                Box::new(
                    SvcRdmaXprt::<_, _, _, CondvarWait>::new(x, qp, life, hook.clone())
                        .map_err(map)?,
                )
            }
        };
        let entry = Arc::new(Entry {
            id,
            hook: hook.clone(),
            xprt: Some(boxed),
            shared: Arc::downgrade(&self.shared),
            on_close: OnceLock::new(),
        });
        let _ = hook.entry.set(Arc::downgrade(&entry));
        *lock(&self.shared.live) += 1;
        lock(&self.shared.registry).insert(id, entry.clone());
        let budget = self.cfg.poll_budget;
        #[cfg(feature = "verbs")]
        if let Placement::Channel(group) = placement {
            group.add(entry);
            hook.enqueue();
            return Ok(id);
        }
        #[cfg(not(feature = "verbs"))]
        let Placement::Auto = placement;
        let group =
            (!self.groups.is_empty()).then(|| &self.groups[id as usize % self.groups.len()]);
        match group {
            Some(g)
                if {
                    let bell = g.bell.clone();
                    entry
                        .xprt()
                        .set_completion_notifier(Arc::new(move || bell.ring()))
                } =>
            {
                g.add(entry);
            }
            _ => {
                let poller = std::thread::Builder::new()
                    .name(format!("rdmaxprt-poll-x{id}"))
                    .spawn(move || poller::dedicated(entry, budget))
                    .map_err(|e| RtError::Fatal {
                        kind: rdmaxprt_core::backend::ErrorKind::OutOfResources,
                        msg: e.to_string(),
                    })?;
                lock(&self.pollers).push(poller);
            }
        }
        // Receives may have completed already.
        hook.enqueue();
        Ok(id)
    }

    /// Accepts every connection `listener` yields, on its own thread, until
    /// it returns `None` or the server shuts down.
    pub fn serve<L: Listener>(self: &Arc<Self>, mut listener: L) -> JoinHandle<()>
    where
        L::Dev: DmaDevice + Send + Sync + 'static,
        <L::Dev as DmaDevice>::Buf: Send,
        <L::Dev as rdmaxprt_core::backend::ErrorType>::Error: Send + 'static,
        L::Qp: QueuePair<Error = <L::Dev as rdmaxprt_core::backend::ErrorType>::Error>
            + CompletionWait
            + Send
            + Sync
            + 'static,
    {
        let me = self.clone();
        std::thread::spawn(move || {
            while let Some((dev, qp)) = listener.accept() {
                if let Err(e) = me.accept(dev, qp) {
                    tracing::warn!(%e, "accept failed");
                }
            }
        })
    }

    /// Transports alive (not yet freed).
    pub fn live_transports(&self) -> usize {
        *lock(&self.shared.live)
    }

    /// Counters: freed transports' totals plus live ones' current values.
    pub fn report(&self) -> ServerReport {
        let mut r = lock(&self.shared.report).clone();
        r.worker_passes = self.shared.passes.load(Ordering::Relaxed);
        for t in self.transports() {
            r.add_live(&t);
        }
        r
    }

    /// How often the shared completion pollers (doorbell and
    /// completion-channel ones) woke from their sleep: idle means asleep,
    /// so on an idle server this does not move.
    pub fn poller_wakeups(&self) -> u64 {
        let doorbell: u64 = self
            .groups
            .iter()
            .map(|g| g.wakeups.load(Ordering::Relaxed))
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

    /// Each live transport's counters, by id.
    pub fn transports(&self) -> Vec<TransportReport> {
        let entries: Vec<Arc<Entry>> = lock(&self.shared.registry).values().cloned().collect();
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
        #[cfg(feature = "verbs")]
        {
            let stops: Vec<rdma::ListenerStop> = lock(&self.listeners).drain(..).collect();
            for l in stops {
                l.stop();
            }
        }
        let entries: Vec<Arc<Entry>> = lock(&self.shared.registry).values().cloned().collect();
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
                for e in lock(&self.shared.registry).values() {
                    e.hook.enqueue();
                }
            }
        }
        self.shared.exit.store(true, Ordering::Release);
        self.shared.ready_cv.notify_all();
        for g in &self.groups {
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
        let mut r = lock(&self.shared.report).clone();
        r.worker_passes = self.shared.passes.load(Ordering::Relaxed);
        r
    }
}

fn xprt_err<D: DmaDevice>(e: rdmaxprt_core::transport::XprtError<D::Error>) -> RtError {
    RtError::Fatal {
        kind: rdmaxprt_core::backend::ErrorKind::Other,
        msg: e.to_string(),
    }
}

/// `svc_xprt_received`: let another worker take the transport.
fn received(e: &Entry) {
    e.hook.flags.clear(XprtFlags::BUSY);
    e.hook.enqueue();
}

fn worker(shared: &Shared) {
    loop {
        let entry = {
            let mut q = lock(&shared.ready);
            loop {
                if let Some(e) = q.pop_front() {
                    break e;
                }
                if shared.exit.load(Ordering::Acquire) {
                    return;
                }
                q = shared.ready_cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        handle(shared, entry);
    }
}

fn handle(shared: &Shared, entry: Arc<Entry>) {
    shared.passes.fetch_add(1, Ordering::Relaxed);
    let x = entry.xprt();
    let flags = x.flags();
    if flags.test(XprtFlags::CLOSE) {
        // Keep BUSY set: nobody schedules a closing transport again. The
        // poller exits on CLOSE; the last Arc frees it.
        x.close();
        lock(&shared.registry).remove(&entry.id);
        if let Some(f) = entry.on_close.get() {
            f();
        }
        return;
    }
    match x.recvfrom() {
        Ok(Some(call)) => {
            received(&entry);
            if let Some(reply) = shared.dispatcher.dispatch(call.msg()) {
                let parts: [&[u8]; 2] = [&reply.header, &reply.body.results];
                match x.sendto(&call, &parts, reply.bulk(call.msg())) {
                    Ok(()) | Err(RtError::ReplyRejected(_)) | Err(RtError::Closed) => {}
                    Err(e) => {
                        tracing::warn!(id = entry.id, %e, "sendto failed: closing");
                        x.close();
                    }
                }
            }
            x.release_ctxt();
        }
        Ok(None) => {
            received(&entry);
            x.release_ctxt();
        }
        Err(e) => {
            tracing::debug!(id = entry.id, %e, "recvfrom failed: closing");
            x.close();
            flags.clear(XprtFlags::BUSY);
            entry.hook.enqueue();
        }
    }
}
