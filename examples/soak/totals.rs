//! The soak's run-wide counters and their report.

use crate::plan::{OpKind, OP_KINDS};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::FaultCounts;
use rdmaxprt_core::transport::TeardownReport;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const POLICIES: [Policy; 3] = [Policy::Deferred, Policy::Workqueue, Policy::Inline];

/// Counters shared by every lane.
#[derive(Debug, Default)]
pub struct Totals {
    /// Calls answered byte-exact, per kind (index of [`OP_KINDS`]).
    by_kind: [AtomicU64; OP_KINDS.len()],
    /// Calls answered byte-exact, per policy.
    by_policy: [AtomicU64; 3],
    /// Calls that failed with their connection.
    pub disconnected: AtomicU64,
    /// Dropped calls that timed out at the client.
    pub timeouts: AtomicU64,
    /// Calls the client could not start (injected post failure, credit).
    pub start_errors: AtomicU64,
    /// Connections torn down and checked.
    pub conns: AtomicU64,
    /// ... of which the transport had been closed by a fault.
    pub closed_by_faults: AtomicU64,
    /// ... of which were closed with calls in flight.
    pub abrupt_closes: AtomicU64,
    /// Send contexts teardown reclaimed (== partial posts).
    pub reclaimed: AtomicU64,
    /// Read contexts teardown released.
    pub reads_released: AtomicU64,
    /// Server senders that waited for SQ space (tickets).
    pub sq_waits: AtomicU64,
    faults: Mutex<FaultCounts>,
}

impl Totals {
    /// Calls resolved one way or another (the watchdog's progress mark).
    pub fn resolved(&self) -> u64 {
        self.ok_calls()
            + self.disconnected.load(Ordering::Relaxed)
            + self.timeouts.load(Ordering::Relaxed)
    }

    /// Calls answered byte-exact.
    pub fn ok_calls(&self) -> u64 {
        self.by_kind.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Counts one good reply.
    pub fn ok(&self, kind: OpKind, policy: Policy) {
        let k = OP_KINDS.iter().position(|&o| o == kind).unwrap_or(0);
        self.by_kind[k].fetch_add(1, Ordering::Relaxed);
        let p = POLICIES.iter().position(|&o| o == policy).unwrap_or(0);
        self.by_policy[p].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection's teardown.
    pub fn retired(&self, f: &FaultCounts, td: &TeardownReport, partial: usize, sq_waits: u32) {
        self.conns.fetch_add(1, Ordering::Relaxed);
        self.sq_waits
            .fetch_add(u64::from(sq_waits), Ordering::Relaxed);
        self.reclaimed.fetch_add(partial as u64, Ordering::Relaxed);
        self.reads_released
            .fetch_add(td.reads_released as u64, Ordering::Relaxed);
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).add(f);
    }

    /// The report's lines.
    pub fn report(&self, secs: f64) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let f = *self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let ok = self.ok_calls();
        let kinds: Vec<String> = OP_KINDS
            .iter()
            .zip(&self.by_kind)
            .map(|(k, c)| format!("{k:?} {}", g(c)))
            .collect();
        let policies: Vec<String> = POLICIES
            .iter()
            .zip(&self.by_policy)
            .map(|(p, c)| format!("{p:?} {}", g(c)))
            .collect();
        format!(
            "calls resolved: {} in {secs:.1} s ({:.0} calls/s)\n\
             \x20 answered byte-exact: {ok} ({})\n\
             \x20 by policy: {}\n\
             \x20 failed with their connection: {}; client timeouts (dropped calls): {}; start errors: {}\n\
             connections churned: {} ({} closed by faults, {} closed with calls in flight); server waits for SQ space: {}\n\
             faults injected: {} (post failures {}, partial chains {}, error completions {}, QP errors {}, disconnects {}, delayed completions {})\n\
             teardown: {} send contexts reclaimed (== partial posts, checked per connection), {} Read contexts released, 0 stuck receives, trackers clean",
            self.resolved(),
            self.resolved() as f64 / secs.max(1e-9),
            kinds.join(", "),
            policies.join(", "),
            g(&self.disconnected),
            g(&self.timeouts),
            g(&self.start_errors),
            g(&self.conns),
            g(&self.closed_by_faults),
            g(&self.abrupt_closes),
            g(&self.sq_waits),
            f.total(),
            f.post_failures,
            f.partial_posts,
            f.error_completions,
            f.qp_errors,
            f.disconnects,
            f.delayed_completions,
            g(&self.reclaimed),
            g(&self.reads_released),
        )
    }
}
