//! The design the seed replaced: every Send completion queues the context's
//! own work item on a shared workqueue (`svcrdma_wq`) whose worker threads
//! release it. Kept so benchmarks can show its lock cost and its lag.
//!
//! Built the way the pre-change kernel ran it, so the comparison measures
//! the design and not a weaker copy of it:
//! - the work item (`sc_work`) is embedded one per context slot, built when
//!   the lifecycle is; `queue_work` links it into the worklist under the
//!   pool lock: no allocation and no reference count per completion;
//! - a worker is woken only when none is awake and no wakeup is already on
//!   its way (the kernel's `need_more_worker` / `wake_up_worker`); a worker
//!   that takes an item and sees more wakes one more idle worker, so up to
//!   N workers run when work piles up;
//! - N workers like an unbound workqueue; [`WorkqueuePool::default_threads`]
//!   is one per CPU.
//!
//! Faithful to the pre-change kernel, `get` never drains: contexts in
//! transit on the queue are invisible to it, so it allocates whenever the
//! free list is empty. That is the unbounded growth that took servers to
//! OOM; here it stops at the pool's (generous) safety cap, counted in
//! `cap_hits` and logged once per transport. At the cap, `get` waits for
//! contexts in transit (the worker's release wakes it) and reports
//! [`GetError::AtCap`] only when none is in transit.

extern crate std;

use super::{ClaimedCtxt, GetError, OwnedCtxt, Policy, SendCtxtLifecycle};
use crate::backend::{DmaDevice, ErrorType};
use crate::llist::{FreeList, LockedFreeList};
use crate::pool::{PoolConfig, SendCtxtPool};
use crate::stats::Stats;
use crate::wait::{CondvarWait, WaitQueue};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A work item (`struct work_struct`): one per context slot, linked into
/// the pool's worklist while queued.
struct Work {
    /// Next item on the worklist. Only read or written with the worklist
    /// lock held.
    next: UnsafeCell<*const Work>,
    /// What the worker runs (`work_struct.func`): releases `idx` of the
    /// lifecycle `owner` points to.
    func: unsafe fn(&Work),
    /// The `Shared` this item belongs to (type-erased).
    owner: *const (),
    /// The context slot this item releases.
    idx: u32,
}

// SAFETY: `next` is only accessed with the worklist mutex held; `func`,
// `owner` and `idx` never change after construction. `owner` points to a
// `Shared` whose device and contexts may be used from any thread (the
// bounds on `Workqueue::new`), and which outlives every queued item
// (`Workqueue`'s drop flushes first).
unsafe impl Sync for Work {}
// SAFETY: as above.
unsafe impl Send for Work {}

/// The worklist (`worker_pool`): an intrusive FIFO of queued items and the
/// worker accounting `queue_work` decides its wakeup on.
struct WorkList {
    head: *const Work,
    tail: *const Work,
    /// Workers parked on the condvar.
    idle: usize,
    /// Workers started.
    threads: usize,
    /// A parked worker was notified and has not run yet: do not notify
    /// again (the kernel's `wake_up_process` of an already-woken task).
    wake_pending: bool,
    shutdown: bool,
}

// SAFETY: the raw pointers name `Work` items (which are `Sync`); the list is
// only touched with its mutex held.
unsafe impl Send for WorkList {}

impl WorkList {
    fn push(&mut self, w: &Work) {
        // SAFETY: we hold the worklist lock (we have `&mut self` through its
        // guard); `w` is not on the list (a context is queued once per
        // completion, and its slot is RELEASING until the item runs).
        unsafe { *w.next.get() = ptr::null() };
        if self.tail.is_null() {
            self.head = w;
        } else {
            // SAFETY: `tail` is a queued item, alive until it runs; lock held.
            unsafe { *(*self.tail).next.get() = w };
        }
        self.tail = w;
    }

    fn pop(&mut self) -> Option<*const Work> {
        if self.head.is_null() {
            return None;
        }
        let w = self.head;
        // SAFETY: `head` is a queued item, alive until it runs; lock held.
        self.head = unsafe { *(*w).next.get() };
        if self.head.is_null() {
            self.tail = ptr::null();
        }
        Some(w)
    }

    fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// The kernel's `need_more_worker` for an item just queued: nobody is
    /// awake to see it and no wakeup is on its way, but a worker is parked.
    /// Marks the wakeup as pending when it says yes.
    fn take_wakeup(&mut self) -> bool {
        let none_awake = self.idle == self.threads && !self.wake_pending;
        let wake = none_awake && self.idle > 0;
        self.wake_pending |= wake;
        wake
    }
}

struct Queue {
    list: Mutex<WorkList>,
    ready: Condvar,
    /// Condvar notifications sent (each is a futex wake), for reports.
    wakeups: AtomicU64,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, WorkList> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        self.ready.notify_one();
    }
}

/// A shared pool of release worker threads (one per process, like the
/// kernel's unbound `svcrdma_wq`). Dropping the last handle stops the
/// workers after they finish every queued item.
pub struct WorkqueuePool {
    queue: Arc<Queue>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl core::fmt::Debug for WorkqueuePool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkqueuePool")
            .field("wakeups", &self.wakeups())
            .finish_non_exhaustive()
    }
}

impl WorkqueuePool {
    /// Workers a server of this machine's size would run: one per CPU (an
    /// unbound workqueue's pool runs about that many at once). 2 on a
    /// 2-core server.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Starts `threads` release workers (at least one).
    pub fn new(threads: usize) -> Arc<Self> {
        let threads = threads.max(1);
        let queue = Arc::new(Queue {
            list: Mutex::new(WorkList {
                head: ptr::null(),
                tail: ptr::null(),
                idle: 0,
                threads,
                wake_pending: false,
                shutdown: false,
            }),
            ready: Condvar::new(),
            wakeups: AtomicU64::new(0),
        });
        let workers = (0..threads)
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

    /// Worker wakeups (condvar notifications) sent so far: at most one per
    /// queued item, none while a worker is awake.
    pub fn wakeups(&self) -> u64 {
        self.queue.wakeups.load(Ordering::Relaxed)
    }

    /// `queue_work`: links `w` into the worklist and wakes a worker only if
    /// none is awake.
    fn queue_work(&self, w: &Work) {
        let mut list = self.queue.lock();
        list.push(w);
        let wake = list.take_wakeup();
        drop(list);
        if wake {
            self.queue.notify();
        }
    }
}

fn worker(q: &Queue) {
    let mut list = q.lock();
    loop {
        if let Some(w) = list.pop() {
            // More work and a parked worker with no wakeup on its way: wake
            // it (the kernel wakes the next idle worker the same way).
            let more = !list.is_empty() && list.idle > 0 && !list.wake_pending;
            list.wake_pending |= more;
            drop(list);
            if more {
                q.notify();
            }
            // SAFETY: `w` was queued by `Workqueue::complete`; its owner
            // stays alive until the item has run (`Workqueue`'s drop waits
            // for `unfinished` to reach zero, which `func` decrements last).
            unsafe { ((*w).func)(&*w) };
            list = q.lock();
            continue;
        }
        if list.shutdown {
            return;
        }
        list.idle += 1;
        list = q.ready.wait(list).unwrap_or_else(|p| p.into_inner());
        list.idle -= 1;
        list.wake_pending = false;
    }
}

impl Drop for WorkqueuePool {
    fn drop(&mut self) {
        // Set under the lock so a worker between its empty check and its
        // wait cannot miss the wakeup.
        self.queue.lock().shutdown = true;
        self.queue.ready.notify_all();
        let workers = core::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}

struct Shared<D: DmaDevice, F: FreeList> {
    pool: SendCtxtPool<D, F>,
    /// One embedded work item per slot.
    works: Vec<Work>,
    /// Contexts queued and not yet back on the free list: what a `get` at
    /// the cap may wait for.
    in_transit: AtomicU64,
    /// Items queued whose `func` has not returned (`flush` and drop wait
    /// for zero); decremented as the very last touch of `Shared`.
    unfinished: AtomicU64,
    /// `get` callers waiting at the cap for contexts in transit.
    freed: CondvarWait,
    /// The safety cap was reported.
    cap_reported: AtomicBool,
}

impl<D: DmaDevice, F: FreeList> Shared<D, F> {
    /// The work function the pre-change kernel queued per completion
    /// (`svc_rdma_send_ctxt_put_async`: `svc_rdma_send_ctxt_release` run
    /// from the workqueue).
    ///
    /// # Safety
    /// `w.owner` must point to a live `Shared<D, F>` and `w.idx` name a
    /// slot the completion path claimed (RELEASING) and queued.
    unsafe fn send_ctxt_put_async(w: &Work) {
        // SAFETY: the caller's contract.
        let this = unsafe { &*(w.owner as *const Self) };
        // SAFETY: the item was queued for a claimed slot (`complete` took
        // its `ClaimedCtxt`), and only this run releases it.
        unsafe { this.pool.send_ctxt_release(w.idx) };
        let s = this.pool.stats();
        Stats::bump(&s.completions);
        s.record_batch(1);
        // Back on the free list: a `get` waiting at the cap may proceed.
        this.in_transit.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if this.freed.has_waiters() {
            this.freed.wake_all();
        }
        // Release: `flush` (Acquire) sees everything above done. After this
        // the lifecycle may be gone: touch nothing.
        this.unfinished.fetch_sub(1, Ordering::Release);
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
            .field("in_transit", &self.in_transit())
            .finish_non_exhaustive()
    }
}

impl<D, F> Workqueue<D, F>
where
    D: DmaDevice + Send + Sync,
    D::Buf: Send,
    F: FreeList + Default,
{
    /// A workqueue-release lifecycle over `dev` on the shared `wq`.
    /// `cfg.cap` is the safety cap: give it room to show the growth (one
    /// work item per slot is built up front).
    pub fn new(dev: D, cfg: PoolConfig, wq: Arc<WorkqueuePool>) -> Self {
        let shared = Arc::new_cyclic(|me: &alloc::sync::Weak<Shared<D, F>>| {
            let pool = SendCtxtPool::new(dev, cfg);
            let owner = me.as_ptr() as *const ();
            let works = (0..pool.config().cap)
                .map(|idx| Work {
                    next: UnsafeCell::new(ptr::null()),
                    func: Shared::<D, F>::send_ctxt_put_async,
                    owner,
                    idx,
                })
                .collect();
            Shared {
                pool,
                works,
                in_transit: AtomicU64::new(0),
                unfinished: AtomicU64::new(0),
                freed: CondvarWait::new(),
                cap_reported: AtomicBool::new(false),
            }
        });
        Self { shared, wq }
    }
}

impl<D: DmaDevice, F: FreeList> Workqueue<D, F> {
    /// Contexts queued (or being released) and not yet back on the free
    /// list.
    pub fn in_transit(&self) -> u64 {
        self.shared.in_transit.load(Ordering::Acquire)
    }

    /// The shared workqueue this lifecycle queues on.
    pub fn workqueue(&self) -> &Arc<WorkqueuePool> {
        &self.wq
    }

    fn report_cap(&self) {
        Stats::bump(&self.shared.pool.stats().cap_hits);
        if !self.shared.cap_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cap = self.shared.pool.config().cap,
                in_transit = self.in_transit(),
                "workqueue send ctxt pool reached its safety cap: releases lag completions"
            );
        }
    }

    /// `flush_workqueue` for our items: returns once every queued item ran.
    fn wait_unfinished(&self) {
        while self.shared.unfinished.load(Ordering::Acquire) != 0 {
            std::thread::yield_now();
        }
    }
}

impl<D: DmaDevice, F: FreeList> Drop for Workqueue<D, F> {
    fn drop(&mut self) {
        // Queued items point into `shared`: it must outlive them.
        self.wait_unfinished();
    }
}

impl<D, F> SendCtxtLifecycle for Workqueue<D, F>
where
    D: DmaDevice + Send + Sync,
    D::Buf: Send,
    F: FreeList,
{
    type Dev = D;
    type Free = F;
    const POLICY: Policy = Policy::Workqueue;

    fn pool(&self) -> &SendCtxtPool<D, F> {
        &self.shared.pool
    }

    fn get(&self) -> Result<OwnedCtxt<'_, Self>, GetError<<D as ErrorType>::Error>> {
        let pool = &self.shared.pool;
        loop {
            if let Some(r) = pool.get_free() {
                return r.map(|i| OwnedCtxt::new(self, i)).map_err(GetError::Alloc);
            }
            // Pre-change behaviour: no drain, allocate.
            match pool.get_alloc() {
                Err(GetError::AtCap) => {}
                r => return r.map(|i| OwnedCtxt::new(self, i)),
            }
            self.report_cap();
            if self.in_transit() == 0 {
                return Err(GetError::AtCap);
            }
            // Contexts in transit come back without another completion:
            // wait for the worker's release to wake us.
            let s = &self.shared;
            s.freed.wait_until(&|| {
                pool.has_free() || pool.has_hollow() || s.in_transit.load(Ordering::SeqCst) == 0
            });
        }
    }

    fn complete(&self, ctxt: ClaimedCtxt) {
        let s = &self.shared;
        s.unfinished.fetch_add(1, Ordering::Relaxed);
        s.in_transit.fetch_add(1, Ordering::SeqCst);
        // The claim passes to the slot's work item, which releases it.
        self.wq.queue_work(&s.works[ctxt.index() as usize]);
    }

    fn drain(&self) -> usize {
        0
    }

    fn may_progress(&self) -> bool {
        let p = self.pool();
        p.has_free() || p.has_hollow() || self.in_transit() != 0
    }

    fn flush(&self) {
        self.wait_unfinished();
    }
}
