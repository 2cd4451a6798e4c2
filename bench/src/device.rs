//! A cost-model DMA device for the lifecycle microbenchmarks.
//!
//! Buffers are plain `Vec<u8>`; `dma_map` hands out a made-up address and
//! tracks nothing; `dma_unmap` busy-waits a configurable time (a strict-IOMMU
//! IOTLB invalidation or an MR deregistration costs 0.5-2 us and keeps the
//! CPU busy, so a busy wait models it better than a sleep). Nothing else
//! costs anything, so what is measured is the lifecycle itself, not a fake
//! NIC's bookkeeping (`rdmaxprt-mock` tracks every mapping under a lock,
//! which would dominate a ~10 ns completion path).
//!
//! The unmap cost lives in a shared atomic so a harness can switch it off
//! for untimed cleanup (e.g. the Deferred drain after a timed batch of
//! `put`s, which never unmaps) and keep benchmarks short.

use rdmaxprt_core::backend::{DmaBuf, DmaDevice, ErrorKind, ErrorType, Sge};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A buffer of [`CostDevice`]: just bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostBuf(Vec<u8>);

impl DmaBuf for CostBuf {
    fn as_slice(&self) -> &[u8] {
        &self.0
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A DMA device whose only cost is a busy wait in `dma_unmap`. Clones share
/// the cost setting. It counts nothing (the pool's `Stats` count unmaps), so
/// it adds no shared atomic write to the paths it is used on.
#[derive(Debug, Clone, Default)]
pub struct CostDevice {
    unmap_ns: Arc<AtomicU64>,
}

impl CostDevice {
    /// A device whose every unmap busy-waits `unmap`.
    pub fn new(unmap: Duration) -> Self {
        let d = Self::default();
        d.set_unmap_cost(unmap);
        d
    }

    /// Changes the unmap cost (takes effect for the next unmap).
    pub fn set_unmap_cost(&self, unmap: Duration) {
        let ns = u64::try_from(unmap.as_nanos()).unwrap_or(u64::MAX);
        self.unmap_ns.store(ns, Ordering::Relaxed);
    }

    /// The current unmap cost.
    pub fn unmap_cost(&self) -> Duration {
        Duration::from_nanos(self.unmap_ns.load(Ordering::Relaxed))
    }
}

/// Spins until `d` has passed (returns at once for zero).
#[inline]
pub fn busy_wait(d: Duration) {
    if d.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

impl ErrorType for CostDevice {
    type Error = ErrorKind;
}

impl DmaDevice for CostDevice {
    type Buf = CostBuf;

    fn alloc_buf(&self, len: usize) -> Result<CostBuf, ErrorKind> {
        Ok(CostBuf(vec![0; len]))
    }

    fn dma_map(&self, buf: &CostBuf, offset: usize, len: usize) -> Result<Sge, ErrorKind> {
        match offset.checked_add(len) {
            Some(end) if end <= buf.0.len() => {}
            _ => return Err(ErrorKind::InvalidArgument),
        }
        Ok(Sge {
            addr: buf.0.as_ptr() as u64 + offset as u64,
            length: u32::try_from(len).map_err(|_| ErrorKind::InvalidArgument)?,
            lkey: 1,
        })
    }

    fn dma_unmap(&self, _sge: Sge) -> Result<(), ErrorKind> {
        busy_wait(Duration::from_nanos(self.unmap_ns.load(Ordering::Relaxed)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmap_busy_waits_at_least_the_cost() {
        let d = CostDevice::new(Duration::from_micros(200));
        let b = d.alloc_buf(64).unwrap();
        let sge = d.dma_map(&b, 0, 64).unwrap();
        let t = Instant::now();
        d.dma_unmap(sge).unwrap();
        assert!(t.elapsed() >= Duration::from_micros(200));
        d.clone().set_unmap_cost(Duration::ZERO);
        assert_eq!(d.unmap_cost(), Duration::ZERO);
        assert!(d.dma_map(&b, 60, 8).is_err());
    }
}
