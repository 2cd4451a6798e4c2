//! [`MockDevice`]: buffer allocation, DMA map/unmap through the tracker with
//! a configurable cost, memory registration for RDMA, and stepping every
//! QP pair created on it.

use crate::buf::{MockBuf, MockMr};
use crate::error::MockError;
use crate::lock::Mutex;
use crate::qp::Pair;
use crate::region::Region;
use crate::tracker::{FxMap, Tracker};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use rdmaxprt_core::backend::{DmaDevice, ErrorType, Sge};

/// Device ids, for lkeys that differ between devices.
static NEXT_DEV: AtomicU32 = AtomicU32::new(1);
/// Remote keys, unique in the process so a key of one device never
/// resolves on another.
static NEXT_RKEY: AtomicU32 = AtomicU32::new(0x100);

/// Cost model of a [`MockDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceConfig {
    /// Busy-wait per `dma_map` (std only; ignored on `alloc`-only builds).
    pub map_cost: Duration,
    /// Busy-wait per `dma_unmap`: 1-2 us stands in for a strict IOMMU's
    /// synchronous IOTLB invalidation (std only).
    pub unmap_cost: Duration,
}

pub(crate) struct MrEntry {
    region: Arc<Region>,
    valid: bool,
}

pub(crate) struct DevShared {
    pub(crate) tracker: Tracker,
    /// By rkey (hash lookup per RDMA Read/Write).
    mrs: Mutex<FxMap<u32, MrEntry>>,
    map_cost_ns: AtomicU64,
    unmap_cost_ns: AtomicU64,
    pairs: Mutex<Vec<Weak<Pair>>>,
}

impl DevShared {
    /// The region behind `rkey` and whether the key is still valid.
    pub(crate) fn mr_lookup(&self, rkey: u32) -> Option<(Arc<Region>, bool)> {
        self.mrs
            .lock()
            .get(&rkey)
            .map(|e| (Arc::clone(&e.region), e.valid))
    }

    /// Send-with-Invalidate: the key stops working until deregistered.
    /// Unknown keys are ignored (crate docs, "Not supported").
    pub(crate) fn invalidate(&self, rkey: u32) {
        if let Some(e) = self.mrs.lock().get_mut(&rkey) {
            e.valid = false;
        }
    }

    pub(crate) fn deregister(&self, rkey: u32) {
        self.mrs.lock().remove(&rkey);
    }
}

/// Busy-waits `ns` nanoseconds: a strict IOMMU burns CPU, it does not sleep.
fn pay(ns: u64) {
    #[cfg(feature = "std")]
    if ns != 0 {
        let start = std::time::Instant::now();
        let d = Duration::from_nanos(ns);
        while start.elapsed() < d {
            core::hint::spin_loop();
        }
    }
    #[cfg(not(feature = "std"))]
    let _ = ns;
}

/// An in-memory RDMA device. Cheap to clone: clones are handles to the same
/// device (tracker, MR table, QP pairs).
#[derive(Clone)]
pub struct MockDevice {
    pub(crate) shared: Arc<DevShared>,
}

impl fmt::Debug for MockDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockDevice")
            .field("tracker", &self.shared.tracker)
            .finish()
    }
}

impl Default for MockDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl MockDevice {
    /// A device with free map/unmap.
    pub fn new() -> Self {
        Self::with_config(DeviceConfig::default())
    }

    /// A device with the given cost model.
    pub fn with_config(cfg: DeviceConfig) -> Self {
        // Relaxed: only uniqueness matters.
        let id = NEXT_DEV.fetch_add(1, Ordering::Relaxed);
        let d = Self {
            shared: Arc::new(DevShared {
                tracker: Tracker::new(0x1000_0000 | id),
                mrs: Mutex::new(FxMap::default()),
                map_cost_ns: AtomicU64::new(0),
                unmap_cost_ns: AtomicU64::new(0),
                pairs: Mutex::new(Vec::new()),
            }),
        };
        d.set_map_cost(cfg.map_cost);
        d.set_unmap_cost(cfg.unmap_cost);
        d
    }

    /// Changes the busy-wait per `dma_map` (takes effect on the next call).
    pub fn set_map_cost(&self, cost: Duration) {
        let ns = u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX);
        self.shared.map_cost_ns.store(ns, Ordering::Relaxed);
    }

    /// Changes the busy-wait per `dma_unmap` (takes effect on the next call).
    pub fn set_unmap_cost(&self, cost: Duration) {
        let ns = u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX);
        self.shared.unmap_cost_ns.store(ns, Ordering::Relaxed);
    }

    /// The DMA-mapping tracker: violations, live mappings, counters.
    pub fn tracker(&self) -> &Tracker {
        &self.shared.tracker
    }

    /// The lkey in every SGE this device maps.
    pub fn lkey(&self) -> u32 {
        self.shared.tracker.lkey()
    }

    /// Panics, listing them, if the tracker saw any violation or any
    /// mapping is still live (a leak). For tests, at teardown.
    pub fn assert_clean(&self) {
        if let Err(report) = self.shared.tracker.check() {
            panic!("{report}");
        }
    }

    /// Registers `buf` for remote RDMA Write/Read by the peer of a QP on
    /// this device; the returned [`MockMr`] carries the rkey and address.
    pub fn register(&self, buf: MockBuf) -> Result<MockMr, MockError> {
        if !Arc::ptr_eq(&buf.dev, &self.shared) {
            return Err(MockError::ForeignBuffer);
        }
        // Relaxed: only uniqueness matters.
        let rkey = NEXT_RKEY.fetch_add(1, Ordering::Relaxed);
        self.shared.mrs.lock().insert(
            rkey,
            MrEntry {
                region: Arc::clone(&buf.region),
                valid: true,
            },
        );
        Ok(MockMr {
            buf: Some(buf),
            rkey,
        })
    }

    pub(crate) fn add_pair(&self, pair: &Arc<Pair>) {
        let mut pairs = self.shared.pairs.lock();
        pairs.retain(|p| p.strong_count() != 0);
        pairs.push(Arc::downgrade(pair));
    }

    /// Runs every pending WR of every live QP pair on this device until
    /// nothing more can progress; returns how many WRs were processed.
    /// The deterministic driver for [`Delivery::Stepped`](crate::Delivery).
    pub fn step_all(&self) -> usize {
        let pairs: Vec<Arc<Pair>> = self
            .shared
            .pairs
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        pairs.iter().map(|p| p.run_until_quiet()).sum()
    }
}

impl ErrorType for MockDevice {
    type Error = MockError;
}

impl DmaDevice for MockDevice {
    type Buf = MockBuf;

    fn alloc_buf(&self, len: usize) -> Result<MockBuf, MockError> {
        if len > u32::MAX as usize {
            return Err(MockError::OutOfRange {
                offset: 0,
                len,
                buf_len: u32::MAX as usize,
            });
        }
        Ok(MockBuf::new(Arc::clone(&self.shared), len))
    }

    fn dma_map(&self, buf: &MockBuf, offset: usize, len: usize) -> Result<Sge, MockError> {
        if !Arc::ptr_eq(&buf.dev, &self.shared) {
            return Err(MockError::ForeignBuffer);
        }
        let in_range = offset.checked_add(len).is_some_and(|e| e <= buf.len());
        let len32 = u32::try_from(len).ok().filter(|_| in_range);
        let Some(len32) = len32 else {
            return Err(MockError::OutOfRange {
                offset,
                len,
                buf_len: buf.len(),
            });
        };
        pay(self.shared.map_cost_ns.load(Ordering::Relaxed));
        Ok(self.shared.tracker.map(&buf.region, offset, len32))
    }

    fn dma_unmap(&self, sge: Sge) -> Result<(), MockError> {
        pay(self.shared.unmap_cost_ns.load(Ordering::Relaxed));
        self.shared.tracker.unmap(sge)
    }
}
