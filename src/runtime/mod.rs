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
mod stats;
mod xprt;

pub use listener::Listener;
#[cfg(feature = "mock")]
pub use listener::{MockConnector, MockListener, MockNetwork};
pub use stats::{merge_stats, ServerReport};
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

struct Entry {
    id: u64,
    hook: Arc<RtHook>,
    xprt: Option<Box<dyn ServerXprt>>,
    shared: Weak<Shared>,
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
pub struct Server {
    cfg: ServerConfig,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    pollers: Mutex<Vec<JoinHandle<()>>>,
    groups: Vec<Arc<poller::PollerGroup>>,
    wq: Option<Arc<WorkqueuePool>>,
    next_id: AtomicU64,
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
            workers,
            pollers: Mutex::new(pollers),
            groups,
            wq,
            next_id: AtomicU64::new(1),
        }
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
        if self.shared.exit.load(Ordering::Acquire) {
            return Err(RtError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
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
        let x = self.cfg.xprt;
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
        });
        let _ = hook.entry.set(Arc::downgrade(&entry));
        *lock(&self.shared.live) += 1;
        lock(&self.shared.registry).insert(id, entry.clone());
        let budget = self.cfg.poll_budget;
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
        for e in lock(&self.shared.registry).values() {
            r.add_live(&e.xprt().stats());
        }
        r
    }

    /// Graceful shutdown: closes every transport, waits until each is
    /// drained and freed (QP drained, contexts released, buffers unmapped),
    /// then stops the workers and pollers. Returns the final counters.
    pub fn shutdown(mut self) -> ServerReport {
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
        for w in self.workers.drain(..) {
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
        return;
    }
    match x.recvfrom() {
        Ok(Some(call)) => {
            received(&entry);
            if let Some(reply) = shared.dispatcher.dispatch(&call.msg) {
                let parts: [&[u8]; 2] = [&reply.header, &reply.body.results];
                match x.sendto(&call, &parts, reply.body.bulk.as_deref()) {
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
