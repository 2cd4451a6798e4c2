//! The DMA-mapping tracker: which byte ranges of which buffers the device
//! may touch right now, and every misuse seen so far.
//!
//! A mapping is recorded per buffer (keyed by the buffer's address window,
//! `addr >> 32`, so a NIC access finds its buffer with one hash probe, no
//! ordered-map walk) as an `(offset, len)` range; mapping the same range twice gives
//! two mappings that need two unmaps, as with a real IOMMU. The tracker
//! holds an `Arc` of each mapped buffer's storage, so a page released while
//! still mapped stays valid memory for the NIC: the violation is recorded,
//! nothing is freed under the device.

use crate::error::MockError;
use crate::lock::Mutex;
use crate::region::{window_of, Region};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicU64, Ordering};
use rdmaxprt_core::backend::Sge;

/// Hash map keyed by small counters (buffer windows, rkeys): FxHash, one
/// multiply per lookup.
pub(crate) type FxMap<K, V> =
    hashbrown::HashMap<K, V, core::hash::BuildHasherDefault<rustc_hash::FxHasher>>;

/// One misuse of DMA mappings the tracker caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// `dma_unmap` of an SGE that is not mapped: never mapped, already
    /// unmapped (a double unmap), or with a different length or lkey.
    BadUnmap {
        /// The SGE passed to `dma_unmap`.
        sge: Sge,
    },
    /// A buffer was dropped (its pages released) while mappings into it
    /// were live.
    ReleasedWhileMapped {
        /// The buffer's device base address.
        addr: u64,
        /// The buffer's length.
        len: usize,
        /// How many mappings into it were live.
        live_mappings: usize,
    },
    /// The NIC executed a WR whose SGE no live mapping covers (unmapped too
    /// early, wrong lkey, or garbage).
    UnmappedAccess {
        /// The SGE the NIC tried to use.
        sge: Sge,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::BadUnmap { sge } => write!(
                f,
                "unmap of unknown or already-unmapped SGE addr={:#x} len={} lkey={:#x}",
                sge.addr, sge.length, sge.lkey
            ),
            Violation::ReleasedWhileMapped {
                addr,
                len,
                live_mappings,
            } => write!(
                f,
                "page released while mapped: buffer {addr:#x} ({len} bytes) had {live_mappings} live mapping(s)"
            ),
            Violation::UnmappedAccess { sge } => write!(
                f,
                "NIC accessed unmapped SGE addr={:#x} len={} lkey={:#x}",
                sge.addr, sge.length, sge.lkey
            ),
        }
    }
}

struct Mapped {
    region: Arc<Region>,
    /// Live `(offset, len)` mappings, duplicates allowed.
    ranges: Vec<(usize, usize)>,
}

#[derive(Default)]
struct State {
    /// By buffer window (`window_of(base)`).
    mapped: FxMap<u64, Mapped>,
    violations: Vec<Violation>,
}

/// Records every `dma_map`/`dma_unmap` of one `MockDevice` and every misuse.
pub struct Tracker {
    lkey: u32,
    state: Mutex<State>,
    maps: AtomicU64,
    unmaps: AtomicU64,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("lkey", &self.lkey)
            .field("maps", &self.maps())
            .field("unmaps", &self.unmaps())
            .field("live_mappings", &self.live_mappings())
            .finish()
    }
}

impl Tracker {
    pub(crate) fn new(lkey: u32) -> Self {
        Self {
            lkey,
            state: Mutex::new(State::default()),
            maps: AtomicU64::new(0),
            unmaps: AtomicU64::new(0),
        }
    }

    /// Records a mapping of `region[offset..offset + len]` (already
    /// bounds-checked by the device) and returns its SGE.
    pub(crate) fn map(&self, region: &Arc<Region>, offset: usize, len: u32) -> Sge {
        let base = region.base();
        let mut st = self.state.lock();
        st.mapped
            .entry(window_of(base))
            .or_insert_with(|| Mapped {
                region: Arc::clone(region),
                ranges: Vec::new(),
            })
            .ranges
            .push((offset, len as usize));
        drop(st);
        // Relaxed: a statistic, read by tests after joining.
        self.maps.fetch_add(1, Ordering::Relaxed);
        Sge {
            addr: base + offset as u64,
            length: len,
            lkey: self.lkey,
        }
    }

    /// Removes the mapping `sge` names exactly (as `map` returned it).
    pub(crate) fn unmap(&self, sge: Sge) -> Result<(), MockError> {
        let mut st = self.state.lock();
        let window = window_of(sge.addr);
        let found = sge.lkey == self.lkey
            && match st.mapped.get_mut(&window) {
                Some(m) => {
                    // The window's first byte is the buffer's first byte.
                    let off = (sge.addr - m.region.base()) as usize;
                    let hit = m
                        .ranges
                        .iter()
                        .position(|&r| r == (off, sge.length as usize));
                    if let Some(i) = hit {
                        m.ranges.swap_remove(i);
                        if m.ranges.is_empty() {
                            st.mapped.remove(&window);
                        }
                    }
                    hit.is_some()
                }
                None => false,
            };
        if !found {
            st.violations.push(Violation::BadUnmap { sge });
            return Err(MockError::BadMapping(sge));
        }
        drop(st);
        self.unmaps.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A buffer's last host handle is going away: complain if it is mapped.
    pub(crate) fn buf_released(&self, region: &Region) {
        let mut st = self.state.lock();
        let live = st
            .mapped
            .get(&window_of(region.base()))
            .map_or(0, |m| m.ranges.len());
        if live != 0 {
            st.violations.push(Violation::ReleasedWhileMapped {
                addr: region.base(),
                len: region.len(),
                live_mappings: live,
            });
        }
    }

    /// The NIC resolves `sge` to its storage and offset, if a live mapping
    /// covers all of it; otherwise records [`Violation::UnmappedAccess`].
    pub(crate) fn resolve(&self, sge: Sge) -> Option<(Arc<Region>, usize)> {
        let mut st = self.state.lock();
        let hit = if sge.lkey == self.lkey {
            st.mapped.get(&window_of(sge.addr)).and_then(|m| {
                let off = (sge.addr - m.region.base()) as usize;
                let end = off.checked_add(sge.length as usize)?;
                m.ranges
                    .iter()
                    .any(|&(o, l)| off >= o && end <= o + l)
                    .then(|| (Arc::clone(&m.region), off))
            })
        } else {
            None
        };
        if hit.is_none() {
            st.violations.push(Violation::UnmappedAccess { sge });
        }
        hit
    }

    /// The lkey every SGE of this device carries.
    pub fn lkey(&self) -> u32 {
        self.lkey
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.state.lock().violations.clone()
    }

    /// Returns and forgets the recorded violations (for tests that provoke
    /// some on purpose and then check the rest of the run is clean).
    pub fn take_violations(&self) -> Vec<Violation> {
        core::mem::take(&mut self.state.lock().violations)
    }

    /// Mappings currently live.
    pub fn live_mappings(&self) -> usize {
        self.state
            .lock()
            .mapped
            .values()
            .map(|m| m.ranges.len())
            .sum()
    }

    /// The live mappings as SGEs (at check time, these are the leaks), by
    /// address.
    pub fn leaks(&self) -> Vec<Sge> {
        let st = self.state.lock();
        let mut leaks: Vec<Sge> = st
            .mapped
            .values()
            .flat_map(|m| {
                let base = m.region.base();
                m.ranges.iter().map(move |&(o, l)| Sge {
                    addr: base + o as u64,
                    length: l as u32,
                    lkey: self.lkey,
                })
            })
            .collect();
        leaks.sort_unstable_by_key(|s| (s.addr, s.length));
        leaks
    }

    /// Successful `dma_map` calls so far.
    pub fn maps(&self) -> u64 {
        self.maps.load(Ordering::Relaxed)
    }

    /// Successful `dma_unmap` calls so far.
    pub fn unmaps(&self) -> u64 {
        self.unmaps.load(Ordering::Relaxed)
    }

    /// `Ok` if there is no violation and no live mapping; otherwise a
    /// human-readable list of both.
    pub fn check(&self) -> Result<(), String> {
        let violations = self.violations();
        let leaks = self.leaks();
        if violations.is_empty() && leaks.is_empty() {
            return Ok(());
        }
        let mut s = String::new();
        // Writing to a `String` cannot fail.
        let _ = writeln!(
            s,
            "DMA tracker (lkey {:#x}): {} violation(s), {} leaked mapping(s)",
            self.lkey,
            violations.len(),
            leaks.len()
        );
        for v in &violations {
            let _ = writeln!(s, "  violation: {v}");
        }
        for l in &leaks {
            let _ = writeln!(s, "  leaked mapping: addr={:#x} len={}", l.addr, l.length);
        }
        Err(s)
    }
}
