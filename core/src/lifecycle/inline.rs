//! Release on the completion path: the baseline that pays unmap (and page
//! release) inside the completion handler.

use super::{ClaimedCtxt, GetError, OwnedCtxt, Policy, SendCtxtLifecycle};
use crate::backend::{DmaDevice, ErrorType};
use crate::llist::{FreeList, LockedFreeList};
use crate::pool::{PoolConfig, SendCtxtPool};
use crate::stats::Stats;

/// Inline release.
#[derive(Debug)]
pub struct Inline<D: DmaDevice, F: FreeList = LockedFreeList> {
    pool: SendCtxtPool<D, F>,
}

impl<D: DmaDevice, F: FreeList + Default> Inline<D, F> {
    /// An inline-release lifecycle over `dev`.
    pub fn new(dev: D, cfg: PoolConfig) -> Self {
        Self {
            pool: SendCtxtPool::new(dev, cfg),
        }
    }
}

impl<D, F> SendCtxtLifecycle for Inline<D, F>
where
    D: DmaDevice + Send + Sync,
    D::Buf: Send,
    F: FreeList,
{
    type Dev = D;
    type Free = F;
    const POLICY: Policy = Policy::Inline;

    fn pool(&self) -> &SendCtxtPool<D, F> {
        &self.pool
    }

    fn get(&self) -> Result<OwnedCtxt<'_, Self>, GetError<<D as ErrorType>::Error>> {
        if let Some(r) = self.pool.get_free() {
            return r.map(|i| OwnedCtxt::new(self, i)).map_err(GetError::Alloc);
        }
        self.pool.get_alloc().map(|i| OwnedCtxt::new(self, i))
    }

    fn complete(&self, ctxt: ClaimedCtxt) {
        // SAFETY: a `ClaimedCtxt` proves the slot was claimed for us.
        unsafe { self.pool.send_ctxt_release(ctxt.index()) };
        let s = self.pool.stats();
        Stats::bump(&s.completions);
        s.record_batch(1);
    }

    fn drain(&self) -> usize {
        0
    }
}
