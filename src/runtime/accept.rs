//! Accepting a connection: its transport built with the configured
//! release policy, its id from the registry, and where its completions
//! are polled (a shared poller, a poller of its own, a poll group, a
//! completion channel).

use super::groupwait::{GroupWait, PoolWait};
use super::poller;
use super::pollgroup::{self, RunQueue};
use super::{
    lock, Entry, Listener, Placement, RtError, RtHook, Server, ServerMode, ServerXprt, Shared,
};
use crate::runtime::CompletionWait;
use rdmaxprt_core::backend::{DmaDevice, QueuePair};
use rdmaxprt_core::lifecycle::{Deferred, Inline, Policy, Workqueue};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{SvcRdmaXprt, XprtConfig};
use rdmaxprt_core::wait::WaitQueue;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

impl Server {
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
        let id = self.alloc_id()?;
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
        let r = self.build_placed(dev, qp, x, id, placement);
        if r.is_err() {
            self.cancel_id(id);
        }
        r
    }

    fn build_placed<D, Q>(
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
            runq: OnceLock::new(),
        });
        let caps = qp.caps();
        let pcfg = PoolConfig {
            // The id's generation: unique per accept (as the old
            // sequential ids), where the slot index repeats.
            xprt_id: (id >> 32) as u32,
            ..PoolConfig::for_transport(caps.sq_depth, self.cfg.xprt.credits, caps.max_send_sge)
        };
        let boxed = match self.cfg.mode {
            ServerMode::PollGroup => self.build::<GroupWait, D, Q>(dev, qp, x, pcfg, &hook)?,
            _ => self.build::<PoolWait, D, Q>(dev, qp, x, pcfg, &hook)?,
        };
        let entry = Arc::new(Entry {
            id,
            hook: hook.clone(),
            xprt: Some(boxed),
            shared: Arc::downgrade(&self.shared),
            on_close: OnceLock::new(),
        });
        *lock(&self.shared.live) += 1;
        if !lock(&self.shared.registry).fill(id, entry.clone()) {
            // Not reachable through the crate's callers (they reserve the
            // id first); the transport is freed as `entry` drops.
            return Err(RtError::Fatal {
                kind: rdmaxprt_core::backend::ErrorKind::Other,
                msg: format!("transport id {id:#x} was not reserved"),
            });
        }
        let budget = self.cfg.poll_budget;
        #[cfg(feature = "verbs")]
        if let Placement::Channel(group, key) = placement {
            if let Some(q) = group.runq() {
                let _ = hook.runq.set(q.clone());
            }
            let _ = hook.entry.set(Arc::downgrade(&entry));
            group.add(key, entry);
            hook.enqueue();
            return Ok(id);
        }
        #[cfg(not(feature = "verbs"))]
        let Placement::Auto = placement;
        if self.cfg.mode == ServerMode::PollGroup {
            return self.place_in_group(entry, budget);
        }
        let _ = hook.entry.set(Arc::downgrade(&entry));
        let group =
            (!self.groups.is_empty()).then(|| &self.groups[id as usize % self.groups.len()]);
        match group {
            Some(g) if g.attach(&entry) => {}
            _ => {
                let poller = std::thread::Builder::new()
                    .name(format!("rdmaxprt-poll-x{id}"))
                    .spawn(move || poller::dedicated(entry, budget))
                    .map_err(|e| spawn_failed(&self.shared, id, e))?;
                lock(&self.pollers).push(poller);
            }
        }
        // Receives may have completed already.
        hook.enqueue();
        Ok(id)
    }

    /// The transport with the configured release policy, `W` its SQ wait.
    fn build<W, D, Q>(
        &self,
        dev: D,
        qp: Q,
        x: XprtConfig,
        pcfg: PoolConfig,
        hook: &Arc<RtHook>,
    ) -> Result<Box<dyn ServerXprt>, RtError>
    where
        W: WaitQueue + Default + 'static,
        D: DmaDevice + Send + Sync + 'static,
        D::Buf: Send,
        D::Error: Send + 'static,
        Q: QueuePair<Error = D::Error> + CompletionWait + Send + Sync + 'static,
    {
        let map = |e| xprt_err::<D>(e);
        Ok(match (self.cfg.policy, &self.wq) {
            (Policy::Workqueue, Some(wq)) => {
                let pcfg = PoolConfig {
                    cap: self.cfg.workqueue_cap,
                    ..pcfg
                };
                let life: Workqueue<D> = Workqueue::new(dev, pcfg, wq.clone());
                Box::new(SvcRdmaXprt::<_, _, _, W>::new(x, qp, life, hook.clone()).map_err(map)?)
            }
            (Policy::Inline, _) => {
                let life: Inline<D> = Inline::new(dev, pcfg);
                Box::new(SvcRdmaXprt::<_, _, _, W>::new(x, qp, life, hook.clone()).map_err(map)?)
            }
            _ => {
                let life: Deferred<D, Arc<RtHook>> = Deferred::new(dev, pcfg, hook.clone());
                Box::new(SvcRdmaXprt::<_, _, _, W>::new(x, qp, life, hook.clone()).map_err(map)?)
            }
        })
    }

    /// Poll-group mode: the least loaded group takes the transport if its
    /// QP can ring the group's doorbell; otherwise it gets a group of its
    /// own.
    fn place_in_group(&self, entry: Arc<Entry>, budget: usize) -> Result<u64, RtError> {
        let (id, hook) = (entry.id, entry.hook.clone());
        let group = self.poll_groups().iter().min_by_key(|g| g.len());
        match group {
            Some(g) if g.add(entry.clone()) => {
                let _ = hook.runq.set(g.runq.clone());
                let _ = hook.entry.set(Arc::downgrade(&entry));
            }
            _ => {
                let runq = Arc::new(RunQueue::new(Box::new(|| {})));
                let _ = hook.runq.set(runq.clone());
                let _ = hook.entry.set(Arc::downgrade(&entry));
                let shared = self.shared.clone();
                let t = std::thread::Builder::new()
                    .name(format!("rdmaxprt-group-x{id}"))
                    .spawn(move || pollgroup::dedicated(entry, runq, shared, budget))
                    .map_err(|e| spawn_failed(&self.shared, id, e))?;
                lock(&self.pollers).push(t);
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
}

/// A poller thread could not start: the transport leaves the registry
/// (the thread's closure, dropped, held the other Arc: it is freed now).
fn spawn_failed(shared: &Shared, id: u64, e: std::io::Error) -> RtError {
    let gone = lock(&shared.registry).remove(id);
    drop(gone);
    RtError::Fatal {
        kind: rdmaxprt_core::backend::ErrorKind::OutOfResources,
        msg: e.to_string(),
    }
}

fn xprt_err<D: DmaDevice>(e: rdmaxprt_core::transport::XprtError<D::Error>) -> RtError {
    RtError::Fatal {
        kind: rdmaxprt_core::backend::ErrorKind::Other,
        msg: e.to_string(),
    }
}
