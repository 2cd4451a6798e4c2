//! The design the seed replaced: every Send completion queues one work item
//! on a shared, mutex-protected queue served by worker threads
//! (`svcrdma_wq`). Kept so benchmarks can show its lock cost and its lag.
//!
//! Faithful to the pre-seed kernel, `get` never drains: contexts in transit
//! on the queue are invisible to it, so it allocates whenever the free list
//! is empty. That is the unbounded growth that took servers to OOM; here it
//! stops at the pool's (generous) cap and is counted in `cap_hits`.

extern crate std;

use super::{ClaimedCtxt, GetError, OwnedCtxt, Policy, SendCtxtLifecycle};
use crate::backend::{DmaDevice, ErrorType};
use crate::llist::{FreeList, LockedFreeList};
use crate::pool::{PoolConfig, SendCtxtPool};
use crate::stats::Stats;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;

/// Something a work item releases a context of.
trait Release: Send + Sync {
    fn release_from_wq(&self, ctxt: ClaimedCtxt);
}

struct Job {
    target: Arc<dyn Release>,
    ctxt: ClaimedCtxt,
}

struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    shutdown: AtomicBool,
}

/// A shared pool of release worker threads (one per process, like the
/// kernel's unbound workqueue). Dropping the last handle stops the workers
/// after they finish every queued item.
pub struct WorkqueuePool {
    queue: Arc<Queue>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl core::fmt::Debug for WorkqueuePool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkqueuePool").finish_non_exhaustive()
    }
}

impl WorkqueuePool {
    /// Starts `threads` release workers (at least one).
    pub fn new(threads: usize) -> Arc<Self> {
        let queue = Arc::new(Queue {
            jobs: Mutex::new(VecDeque::with_capacity(1024)),
            ready: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let workers = (0..threads.max(1))
            .map(|i| {
                let q = queue.clone();
                std::thread::Builder::new()
                    .name(alloc::format!("rdmaxprt-wq{i}"))
                    .spawn(move || worker(&q))
                    .expect("spawning a workqueue thread")
            })
            .collect();
        Arc::new(Self {
            queue,
            workers: Mutex::new(workers),
        })
    }

    fn queue_work(&self, job: Job) {
        // The lock every completion handler contends on: the point of the
        // comparison.
        let mut jobs = self.queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.push_back(job);
        drop(jobs);
        self.queue.ready.notify_one();
    }
}

fn worker(q: &Queue) {
    loop {
        let job = {
            let mut jobs = q.jobs.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(j) = jobs.pop_front() {
                    break Some(j);
                }
                if q.shutdown.load(Ordering::Acquire) {
                    break None;
                }
                jobs = q.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
        };
        match job {
            Some(j) => j.target.release_from_wq(j.ctxt),
            None => return,
        }
    }
}

impl Drop for WorkqueuePool {
    fn drop(&mut self) {
        {
            // Set under the lock so a worker between its empty check and its
            // wait cannot miss the wakeup.
            let _g = self.queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
            self.queue.shutdown.store(true, Ordering::Release);
        }
        self.queue.ready.notify_all();
        let workers = core::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}

struct Shared<D: DmaDevice, F: FreeList> {
    pool: SendCtxtPool<D, F>,
    in_transit: AtomicU64,
}

impl<D, F> Release for Shared<D, F>
where
    D: DmaDevice + Send + Sync,
    D::Buf: Send,
    F: FreeList,
{
    fn release_from_wq(&self, ctxt: ClaimedCtxt) {
        // SAFETY: a `ClaimedCtxt` proves the slot was claimed for us.
        unsafe { self.pool.release(ctxt.index()) };
        let s = self.pool.stats();
        Stats::bump(&s.completions);
        s.record_batch(1);
        // Release: `flush` (Acquire) then sees the context back on the list.
        self.in_transit.fetch_sub(1, Ordering::Release);
    }
}

/// Workqueue release.
pub struct Workqueue<D: DmaDevice, F: FreeList = LockedFreeList> {
    shared: Arc<Shared<D, F>>,
    wq: Arc<WorkqueuePool>,
}

impl<D: DmaDevice, F: FreeList> core::fmt::Debug for Workqueue<D, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Workqueue")
            .field("pool", &self.shared.pool)
            .finish_non_exhaustive()
    }
}

impl<D, F> Workqueue<D, F>
where
    D: DmaDevice + Send + Sync + 'static,
    D::Buf: Send,
    F: FreeList + Default + 'static,
{
    /// A workqueue-release lifecycle over `dev` on the shared `wq`.
    /// `cfg.cap` is the safety cap: give it room to show the growth.
    pub fn new(dev: D, cfg: PoolConfig, wq: Arc<WorkqueuePool>) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool: SendCtxtPool::new(dev, cfg),
                in_transit: AtomicU64::new(0),
            }),
            wq,
        }
    }

    /// Work items queued but not yet run.
    pub fn in_transit(&self) -> u64 {
        self.shared.in_transit.load(Ordering::Acquire)
    }
}

impl<D, F> SendCtxtLifecycle for Workqueue<D, F>
where
    D: DmaDevice + Send + Sync + 'static,
    D::Buf: Send,
    F: FreeList + 'static,
{
    type Dev = D;
    type Free = F;
    const POLICY: Policy = Policy::Workqueue;

    fn pool(&self) -> &SendCtxtPool<D, F> {
        &self.shared.pool
    }

    fn get(&self) -> Result<OwnedCtxt<'_, Self>, GetError<<D as ErrorType>::Error>> {
        if let Some(r) = self.shared.pool.get_free() {
            return r.map(|i| OwnedCtxt::new(self, i)).map_err(GetError::Alloc);
        }
        // Pre-seed behaviour: no drain, allocate.
        match self.shared.pool.get_alloc() {
            Err(GetError::AtCap) => {
                Stats::bump(&self.shared.pool.stats().cap_hits);
                Err(GetError::AtCap)
            }
            r => r.map(|i| OwnedCtxt::new(self, i)),
        }
    }

    fn complete(&self, ctxt: ClaimedCtxt) {
        self.shared.in_transit.fetch_add(1, Ordering::Relaxed);
        let target: Arc<dyn Release> = self.shared.clone();
        self.wq.queue_work(Job { target, ctxt });
    }

    fn drain(&self) -> usize {
        0
    }

    fn flush(&self) {
        // `flush_workqueue`: wait for our items to run.
        while self.shared.in_transit.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
    }
}
