//! Server-wide counters.

use rdmaxprt_core::pool::Census;
use rdmaxprt_core::stats::{StatsSnapshot, BATCH_BUCKETS};
use rdmaxprt_core::transport::{TeardownReport, XprtCountersSnapshot};

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
    a.shrunk += b.shrunk;
}

/// One live transport's counters ([`Server::transports`](super::Server::transports)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportReport {
    /// The transport's id.
    pub id: u64,
    /// Send-context counters.
    pub stats: StatsSnapshot,
    /// Transport counters (calls, error replies, drops, partial posts).
    pub counters: XprtCountersSnapshot,
    /// Where its send contexts are (pending release among them).
    pub census: Census,
}

/// What a server did: send-context counters summed over its transports,
/// and what teardown found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerReport {
    /// Transports live when the report was taken.
    pub live: u64,
    /// Send contexts completed and not yet released, over live transports.
    pub pending_release: u64,
    /// Transport counters summed over live and freed transports.
    pub counters: XprtCountersSnapshot,
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
    /// Transports whose QP drain failed at teardown.
    pub failed_drains: u64,
    /// Buffers leaked (never unmapped nor freed) because a failed drain
    /// left them posted: send contexts, receives and Read contexts.
    pub leaked_after_failed_drain: u64,
    /// Worker passes: transports a worker took off the ready queue and
    /// handled (each follows one wakeup of the transport), counted as a
    /// pass starts. In poll-group mode the groups' passes count here too.
    pub worker_passes: u64,
    /// Calls a poll group handed to the worker threads (calls of blocking
    /// programs; always 0 in thread-pool mode).
    pub handoffs: u64,
    /// Times a worker thread woke from its sleep on the ready queue and
    /// took a job (the wakeups to exit at shutdown are not counted).
    pub worker_wakeups: u64,
    /// Times an idle worker was woken (a notify on the ready queue; the
    /// worker may find its job already taken by one that was awake). At
    /// most one per enqueue, none while a woken worker is still on its way.
    pub worker_notifies: u64,
    /// Of those, the ones made by a worker's own `svc_xprt_received`
    /// (thread pool): only after taking a call of a
    /// [`blocking`](crate::service::Service::blocking) program, which may
    /// hold the worker long; after any other call the worker takes the
    /// transport's next call itself.
    pub received_wakes: u64,
    /// Times the completion pollers and poll groups woke from their sleep
    /// ([`Server::poller_wakeups`](super::Server::poller_wakeups)).
    pub poller_wakeups: u64,
    /// Poll-group mode: pushes on a group's run queue from another thread
    /// (each one woke the group: closes, CM events; a push from the
    /// group's own thread wakes nothing).
    pub remote_pushes: u64,
}

impl ServerReport {
    fn add_stats(&mut self, s: &StatsSnapshot) {
        merge_stats(&mut self.stats, s);
        self.max_pool_size = self.max_pool_size.max(s.pool_size);
    }

    pub(crate) fn add_live(&mut self, t: &TransportReport) {
        self.add_stats(&t.stats);
        self.counters.add(&t.counters);
        self.live += 1;
        self.pending_release += u64::from(t.census.pending_release);
    }

    pub(crate) fn add_freed(&mut self, s: &StatsSnapshot, td: &TeardownReport) {
        self.add_stats(s);
        self.counters.add(&td.counters);
        self.freed += 1;
        self.reclaimed_send += td.reclaimed_send as u64;
        self.stuck_recvs += td.stuck_recvs as u64;
        self.failed_drains += u64::from(td.drain_failed);
        self.leaked_after_failed_drain +=
            (td.leaked_send + td.leaked_recvs as usize + td.leaked_reads) as u64;
    }
}
