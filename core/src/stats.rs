//! Counters like the kernel's svcrdma statistics, readable at run time.
//!
//! All updates are `Relaxed` increments: they order nothing and only need to
//! be eventually exact. The completion path touches none of them in the
//! `Deferred` policy; completions are counted as they are drained.

use crate::sync::AtomicU64;
use core::sync::atomic::Ordering;

/// Batch-size histogram buckets: `[1], [2,3], [4,7], ... [512, inf)`.
pub const BATCH_BUCKETS: usize = 10;

/// Live counters of one send-context pool.
#[derive(Debug)]
pub struct Stats {
    pub(crate) completions: AtomicU64,
    pub(crate) drains: AtomicU64,
    pub(crate) drained: AtomicU64,
    pub(crate) batch_min: AtomicU64,
    pub(crate) batch_max: AtomicU64,
    pub(crate) batch_hist: [AtomicU64; BATCH_BUCKETS],
    pub(crate) pool_size: AtomicU64,
    pub(crate) in_use: AtomicU64,
    pub(crate) in_use_hwm: AtomicU64,
    pub(crate) allocations: AtomicU64,
    pub(crate) waits_at_cap: AtomicU64,
    pub(crate) cap_hits: AtomicU64,
    pub(crate) sq_starved: AtomicU64,
    pub(crate) backstop_enqueues: AtomicU64,
    pub(crate) unmaps: AtomicU64,
    pub(crate) bad_completions: AtomicU64,
    pub(crate) shrunk: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Send completions handled (Deferred: counted when drained).
    pub completions: u64,
    /// Drains that released at least one context.
    pub drains: u64,
    /// Contexts released by drains (Inline/Workqueue: by their release path).
    pub drained: u64,
    /// Smallest non-empty drain batch (0 if none yet).
    pub batch_min: u64,
    /// Largest drain batch.
    pub batch_max: u64,
    /// Batch-size histogram, power-of-two buckets (see [`BATCH_BUCKETS`]).
    pub batch_hist: [u64; BATCH_BUCKETS],
    /// Contexts that exist (the pool's size): allocations minus shrinks.
    pub pool_size: u64,
    /// Contexts not on the free list right now.
    pub in_use: u64,
    /// High-water mark of `in_use`.
    pub in_use_hwm: u64,
    /// Context allocations.
    pub allocations: u64,
    /// Times `get` found the pool at its cap and the caller had to wait.
    pub waits_at_cap: u64,
    /// Times the Workqueue policy hit its safety cap (the OOM story).
    pub cap_hits: u64,
    /// Times a post had to wait for Send Queue space.
    pub sq_starved: u64,
    /// Enqueues fired by the empty -> non-empty backstop.
    pub backstop_enqueues: u64,
    /// SGE unmaps performed (header SGE 0 excluded).
    pub unmaps: u64,
    /// Completions rejected: unknown wr_id, stale generation, not posted.
    pub bad_completions: u64,
    /// Contexts freed by idle shrinks (`SendCtxtPool::shrink`); a shrunk
    /// pool that grows again counts its reallocations in `allocations`.
    pub shrunk: u64,
}

impl StatsSnapshot {
    /// Mean contexts per non-empty drain.
    pub fn batch_mean(&self) -> f64 {
        if self.drains == 0 {
            0.0
        } else {
            self.drained as f64 / self.drains as f64
        }
    }
}

fn bucket(n: u64) -> usize {
    let b = (u64::BITS - n.leading_zeros()).saturating_sub(1) as usize;
    b.min(BATCH_BUCKETS - 1)
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// All zero.
    pub fn new() -> Self {
        Self {
            completions: AtomicU64::new(0),
            drains: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            batch_min: AtomicU64::new(u64::MAX),
            batch_max: AtomicU64::new(0),
            batch_hist: core::array::from_fn(|_| AtomicU64::new(0)),
            pool_size: AtomicU64::new(0),
            in_use: AtomicU64::new(0),
            in_use_hwm: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
            waits_at_cap: AtomicU64::new(0),
            cap_hits: AtomicU64::new(0),
            sq_starved: AtomicU64::new(0),
            backstop_enqueues: AtomicU64::new(0),
            unmaps: AtomicU64::new(0),
            bad_completions: AtomicU64::new(0),
            shrunk: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one batch of `n` released contexts.
    pub(crate) fn record_batch(&self, n: u64) {
        if n == 0 {
            return;
        }
        Self::bump(&self.drains);
        self.drained.fetch_add(n, Ordering::Relaxed);
        self.batch_min.fetch_min(n, Ordering::Relaxed);
        self.batch_max.fetch_max(n, Ordering::Relaxed);
        Self::bump(&self.batch_hist[bucket(n)]);
    }

    pub(crate) fn take_in_use(&self) {
        let now = self.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        self.in_use_hwm.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn return_in_use(&self, n: u64) {
        self.in_use.fetch_sub(n, Ordering::Relaxed);
    }

    /// Counts a post that had to wait for Send Queue space.
    pub fn record_sq_starved(&self) {
        Self::bump(&self.sq_starved);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let min = r(&self.batch_min);
        StatsSnapshot {
            completions: r(&self.completions),
            drains: r(&self.drains),
            drained: r(&self.drained),
            batch_min: if min == u64::MAX { 0 } else { min },
            batch_max: r(&self.batch_max),
            batch_hist: core::array::from_fn(|i| r(&self.batch_hist[i])),
            pool_size: r(&self.pool_size),
            in_use: r(&self.in_use),
            in_use_hwm: r(&self.in_use_hwm),
            allocations: r(&self.allocations),
            waits_at_cap: r(&self.waits_at_cap),
            cap_hits: r(&self.cap_hits),
            sq_starved: r(&self.sq_starved),
            backstop_enqueues: r(&self.backstop_enqueues),
            unmaps: r(&self.unmaps),
            bad_completions: r(&self.bad_completions),
            shrunk: r(&self.shrunk),
        }
    }
}

#[cfg(all(test, not(rdmaxprt_loom)))]
mod tests {
    use super::*;

    #[test]
    fn batch_histogram_buckets_by_power_of_two() {
        let s = Stats::new();
        for n in [1, 2, 3, 4, 600] {
            s.record_batch(n);
        }
        s.record_batch(0);
        let snap = s.snapshot();
        assert_eq!(snap.drains, 5);
        assert_eq!(snap.drained, 610);
        assert_eq!((snap.batch_min, snap.batch_max), (1, 600));
        assert_eq!(snap.batch_hist[0], 1);
        assert_eq!(snap.batch_hist[1], 2);
        assert_eq!(snap.batch_hist[2], 1);
        assert_eq!(snap.batch_hist[BATCH_BUCKETS - 1], 1);
        assert!((snap.batch_mean() - 122.0).abs() < 1e-9);
    }
}
