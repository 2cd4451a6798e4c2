//! The seed's policy: defer release to the worker, with a self-enqueue
//! backstop on the release list's empty -> non-empty edge.

use super::{ClaimedCtxt, GetError, OwnedCtxt, Policy, SendCtxtLifecycle};
use crate::backend::{DmaDevice, ErrorType};
use crate::llist::{FreeList, LockedFreeList};
use crate::pool::{PoolConfig, SendCtxtPool};
use crate::stats::Stats;
use crate::xprt::{Enqueue, XprtFlags};
use core::sync::atomic::Ordering;

/// Deferred release (`svc_rdma_send_ctxt_put` after the seed).
#[derive(Debug)]
pub struct Deferred<D: DmaDevice, E: Enqueue, F: FreeList = LockedFreeList> {
    pool: SendCtxtPool<D, F>,
    xprt: E,
}

impl<D: DmaDevice, E: Enqueue, F: FreeList + Default> Deferred<D, E, F> {
    /// A deferred-release lifecycle over `dev`, enqueuing through `xprt`.
    pub fn new(dev: D, cfg: PoolConfig, xprt: E) -> Self {
        Self {
            pool: SendCtxtPool::new(dev, cfg),
            xprt,
        }
    }
}

impl<D: DmaDevice, E: Enqueue, F: FreeList> Deferred<D, E, F> {
    /// The transport hook this lifecycle enqueues through.
    pub fn xprt(&self) -> &E {
        &self.xprt
    }
}

impl<D, E, F> SendCtxtLifecycle for Deferred<D, E, F>
where
    D: DmaDevice + Send + Sync,
    D::Buf: Send,
    E: Enqueue,
    F: FreeList,
{
    type Dev = D;
    type Free = F;
    const POLICY: Policy = Policy::Deferred;

    fn pool(&self) -> &SendCtxtPool<D, F> {
        &self.pool
    }

    fn get(&self) -> Result<OwnedCtxt<'_, Self>, GetError<<D as ErrorType>::Error>> {
        if let Some(r) = self.pool.get_free() {
            return r.map(|i| OwnedCtxt::new(self, i)).map_err(GetError::Alloc);
        }
        // Free list empty: recycle completed contexts before growing.
        self.drain();
        if let Some(r) = self.pool.get_free() {
            return r.map(|i| OwnedCtxt::new(self, i)).map_err(GetError::Alloc);
        }
        self.pool.get_alloc().map(|i| OwnedCtxt::new(self, i))
    }

    #[inline]
    fn complete(&self, ctxt: ClaimedCtxt) {
        // The whole completion path: one push; on the empty -> non-empty
        // edge, DATA + enqueue so an idle transport still gets drained.
        if self.pool.release.push(self.pool.links(), ctxt.index()) {
            self.xprt.flags().set(XprtFlags::DATA);
            Stats::bump(&self.pool.stats().backstop_enqueues);
            self.xprt.enqueue();
        }
    }

    fn drain(&self) -> usize {
        let mut n = 0u64;
        for idx in self.pool.release.take_all(self.pool.links()) {
            // SAFETY: only claimed slots are pushed on the release list
            // (`complete` takes a `ClaimedCtxt`), and `take_all` hands each
            // to exactly one drainer.
            unsafe { self.pool.send_ctxt_release(idx) };
            n += 1;
        }
        if n != 0 {
            let s = self.pool.stats();
            s.completions.fetch_add(n, Ordering::Relaxed);
            s.record_batch(n);
        }
        n as usize
    }
}
