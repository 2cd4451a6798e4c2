//! What every benchmark shares: the three lifecycles over the cost-model
//! device, a transport stub for the Deferred backstop, and the
//! get -> map -> post step that puts a context in flight.

use crate::device::CostDevice;
use rdmaxprt_core::backend::{DmaDevice, ErrorKind, ErrorType, PostError};
use rdmaxprt_core::ctxt::CtxtError;
use rdmaxprt_core::lifecycle::{
    Deferred, GetError, Inline, SendCtxtLifecycle, Workqueue, WorkqueuePool,
};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of each context's persistent header buffer in the benches.
pub const HDR_SIZE: usize = 256;
/// Bytes of the one reply page every benchmarked context maps (SGE 1). One
/// page per reply makes "unmap cost" the same as "unmap cost per context".
pub const PAGE_SIZE: usize = 256;

/// A transport stub: the Deferred backstop sets DATA and calls `enqueue`,
/// which only counts (the benches' workers poll instead of being woken).
#[derive(Debug, Default)]
pub struct BenchXprt {
    flags: XprtFlags,
    enqueues: AtomicU64,
}

impl BenchXprt {
    /// Backstop enqueues seen.
    pub fn enqueues(&self) -> u64 {
        self.enqueues.load(Ordering::Relaxed)
    }
}

impl Enqueue for BenchXprt {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::Relaxed);
    }
}

/// The Deferred lifecycle as benchmarked.
pub type DeferredL = Deferred<CostDevice, Arc<BenchXprt>>;
/// The Inline lifecycle as benchmarked.
pub type InlineL = Inline<CostDevice>;
/// The Workqueue lifecycle as benchmarked.
pub type WorkqueueL = Workqueue<CostDevice>;

/// Which lifecycle a benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `Deferred` (the seed).
    Deferred,
    /// `Workqueue` (pre-seed).
    Workqueue,
    /// `Inline`.
    Inline,
}

impl PolicyKind {
    /// All three, in report order.
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::Deferred,
        PolicyKind::Workqueue,
        PolicyKind::Inline,
    ];
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::Deferred => "deferred",
            PolicyKind::Workqueue => "workqueue",
            PolicyKind::Inline => "inline",
        })
    }
}

/// A pool configuration for the benches with the given cap.
pub fn pool_config(cap: u32) -> PoolConfig {
    PoolConfig {
        cap,
        hdr_size: HDR_SIZE,
        max_sges: 4,
        xprt_id: 1,
    }
}

/// A Deferred lifecycle over `dev` with `cap` contexts at most.
pub fn deferred<D: DmaDevice + Clone>(dev: &D, cap: u32) -> Deferred<D, Arc<BenchXprt>> {
    Deferred::new(
        dev.clone(),
        pool_config(cap),
        Arc::new(BenchXprt::default()),
    )
}

/// An Inline lifecycle over `dev` with `cap` contexts at most.
pub fn inline<D: DmaDevice + Clone>(dev: &D, cap: u32) -> Inline<D> {
    Inline::new(dev.clone(), pool_config(cap))
}

/// A Workqueue lifecycle over `dev` with safety cap `cap`, served by a new
/// pool of `threads` release workers (stopped when the lifecycle drops).
pub fn workqueue<D>(dev: &D, cap: u32, threads: usize) -> Workqueue<D>
where
    D: DmaDevice + Clone + Send + Sync + 'static,
    D::Buf: Send,
{
    Workqueue::new(dev.clone(), pool_config(cap), WorkqueuePool::new(threads))
}

/// The error type of a lifecycle's device.
pub type DevError<L> = <<L as SendCtxtLifecycle>::Dev as ErrorType>::Error;

/// Puts one context in flight on any device: `get`, allocate and map one
/// page, set a header, post (the post always succeeds). Returns the `wr_id`
/// its completion must carry, or why `get` failed (`AtCap`; a device error
/// while building comes back as `Alloc`).
pub fn build_and_post<L: SendCtxtLifecycle>(life: &L) -> Result<u64, GetError<DevError<L>>> {
    let mut c = life.get()?;
    let dev = c.device();
    let page = dev.alloc_buf(PAGE_SIZE).map_err(GetError::Alloc)?;
    let p = c.add_page(page);
    match c.map_page(dev, p, 0, PAGE_SIZE) {
        Ok(_) => {}
        Err(CtxtError::Map(e)) => return Err(GetError::Alloc(e)),
        Err(e) => panic!("bench context does not fit its pool config: {e}"),
    }
    if let Err(e) = c.set_header_len(28) {
        panic!("bench header does not fit: {e}");
    }
    let mut id = 0;
    let posted = c.post(|wr_id, _| {
        id = wr_id;
        Ok::<(), PostError<ErrorKind>>(())
    });
    debug_assert!(posted.is_ok());
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_post_put_drain_round_trip_unmaps_the_page_once() {
        let dev = CostDevice::default();
        let life = deferred(&dev, 4);
        let ids: Vec<u64> = (0..4).map(|_| build_and_post(&life).unwrap()).collect();
        assert!(matches!(build_and_post(&life), Err(GetError::AtCap)));
        for id in ids {
            life.put(id).unwrap();
        }
        assert_eq!(life.stats().snapshot().unmaps, 0, "put must not unmap");
        assert_eq!(life.drain(), 4);
        assert_eq!(life.stats().snapshot().unmaps, 4);
        assert_eq!(life.pool().census().free, 4);
    }
}
