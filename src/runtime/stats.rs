//! Server-wide counters.

use rdmaxprt_core::stats::{StatsSnapshot, BATCH_BUCKETS};
use rdmaxprt_core::transport::TeardownReport;

/// Adds `b` into `a` (sums; min/max combined; high-water marks maxed).
pub fn merge_stats(a: &mut StatsSnapshot, b: &StatsSnapshot) {
    a.completions += b.completions;
    a.drains += b.drains;
    a.drained += b.drained;
    a.batch_min = match (a.batch_min, b.batch_min) {
        (0, m) | (m, 0) => m,
        (x, y) => x.min(y),
    };
    a.batch_max = a.batch_max.max(b.batch_max);
    for i in 0..BATCH_BUCKETS {
        a.batch_hist[i] += b.batch_hist[i];
    }
    a.pool_size += b.pool_size;
    a.in_use += b.in_use;
    a.in_use_hwm = a.in_use_hwm.max(b.in_use_hwm);
    a.allocations += b.allocations;
    a.waits_at_cap += b.waits_at_cap;
    a.cap_hits += b.cap_hits;
    a.sq_starved += b.sq_starved;
    a.backstop_enqueues += b.backstop_enqueues;
    a.unmaps += b.unmaps;
    a.bad_completions += b.bad_completions;
}

/// What a server did: send-context counters summed over its transports,
/// and what teardown found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerReport {
    /// Summed send-context counters (pool_size: sum over transports).
    pub stats: StatsSnapshot,
    /// Largest pool any single transport reached.
    pub max_pool_size: u64,
    /// Transports freed.
    pub freed: u64,
    /// Send contexts teardown had to reclaim (backend lost completions).
    pub reclaimed_send: u64,
    /// Receives still posted after a QP drain.
    pub stuck_recvs: u64,
    /// Worker passes: transports a worker took off the ready queue and
    /// handled (each follows one wakeup of the transport), counted as a
    /// pass starts.
    pub worker_passes: u64,
}

impl ServerReport {
    pub(crate) fn add_live(&mut self, s: &StatsSnapshot) {
        merge_stats(&mut self.stats, s);
        self.max_pool_size = self.max_pool_size.max(s.pool_size);
    }

    pub(crate) fn add_freed(&mut self, s: &StatsSnapshot, td: &TeardownReport) {
        self.add_live(s);
        self.freed += 1;
        self.reclaimed_send += td.reclaimed_send as u64;
        self.stuck_recvs += td.stuck_recvs as u64;
    }
}
