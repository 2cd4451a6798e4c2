//! The idle sweeper: one thread per server that gives the send contexts of
//! idle transports back (the idle shrink, beyond the kernel; see
//! [`IdleShrink`](rdmaxprt_core::transport::IdleShrink)).
//!
//! Nothing is added to the completion path or to a transport's own threads:
//! the pollers and workers of idle transports stay asleep, and no transport
//! has a timer. The sweeper wakes once per `after` period, reads each
//! transport's activity counter (the replies counter `sendto` bumps
//! anyway), and shrinks the ones whose counter has not moved since its
//! previous look (no reply for at least one full period, so a transport
//! shrinks after one to two periods of silence).
//!
//! Once no transport holds more contexts than its floor, the sweeper parks
//! without a timer. A worker pass that may have grown a pool pokes it (one
//! relaxed load per pass while it runs; a lock and a notify only while it
//! is parked). Pool growth ends with a full fence
//! (`SendCtxtPool`'s allocation path), and parking is "store parked, full
//! fence, look at every pool once more", so a growth and a park never miss
//! each other.
//!
//! Cost: one thread per server, started parked; while some transport is
//! above its floor (or right after a poke), one wakeup per period doing
//! O(transports) atomic loads (the scale benchmark, B7, prints the time a
//! sweep of 10,000 transports takes); parked, none.

use super::{lock, Entry, Shared};
use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    poked: bool,
    exit: bool,
}

/// The sweeper's handle in the server's shared state.
#[derive(Debug, Default)]
pub(crate) struct Sweeper {
    state: Mutex<State>,
    cv: Condvar,
    parked: AtomicBool,
    /// Sweeps run.
    pub(crate) sweeps: AtomicU64,
    /// Contexts freed by all sweeps.
    pub(crate) freed: AtomicU64,
    /// Nanoseconds spent sweeping (all sweeps).
    pub(crate) sweep_ns: AtomicU64,
    /// Times it parked without a timer.
    pub(crate) parks: AtomicU64,
}

/// What the idle sweeper did ([`Server::idle_sweeps`](super::Server::idle_sweeps)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Sweeps run (each looks at every live transport once).
    pub sweeps: u64,
    /// Send contexts the sweeps gave back.
    pub freed: u64,
    /// Total time spent sweeping, in nanoseconds.
    pub sweep_ns: u64,
    /// Times the sweeper parked (no timer) because every transport was at
    /// or below its floor.
    pub parks: u64,
}

impl Sweeper {
    /// After a worker pass (which may have grown a pool): wakes a parked
    /// sweeper. One relaxed load when it is not parked.
    #[inline]
    pub(crate) fn poke(&self) {
        if self.parked.load(Ordering::Relaxed) {
            self.parked.store(false, Ordering::Relaxed);
            lock(&self.state).poked = true;
            self.cv.notify_one();
        }
    }

    /// Makes [`run`](Self::run) return.
    pub(crate) fn stop(&self) {
        lock(&self.state).exit = true;
        self.cv.notify_one();
    }

    pub(crate) fn report(&self) -> SweepReport {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SweepReport {
            sweeps: l(&self.sweeps),
            freed: l(&self.freed),
            sweep_ns: l(&self.sweep_ns),
            parks: l(&self.parks),
        }
    }

    /// The sweeper thread's body.
    pub(crate) fn run(&self, shared: &Shared, period: Duration) {
        // Each live transport's activity counter at the previous sweep.
        let mut last: HashMap<u64, u64> = HashMap::new();
        // A new server has no pool to shrink: start parked, so a server
        // that never serves a call never runs a timer.
        if self.park(shared) {
            return;
        }
        loop {
            {
                let g = lock(&self.state);
                let (g, _) = self
                    .cv
                    .wait_timeout_while(g, period, |s| !s.exit)
                    .unwrap_or_else(|p| p.into_inner());
                if g.exit {
                    return;
                }
            }
            let entries = live(shared);
            let start = Instant::now();
            let mut seen = HashMap::with_capacity(entries.len());
            let mut above = false;
            for e in &entries {
                let x = e.xprt();
                let a = x.activity();
                if last.get(&e.id) == Some(&a) {
                    let n = x.shrink_idle();
                    self.freed.fetch_add(n as u64, Ordering::Relaxed);
                }
                seen.insert(e.id, a);
                above |= x.above_idle_floor();
            }
            last = seen;
            self.sweeps.fetch_add(1, Ordering::Relaxed);
            self.sweep_ns
                .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if !above && self.park(shared) {
                return;
            }
        }
    }

    /// Parks until poked (no timer) unless a pool grew meanwhile. Returns
    /// whether the server is exiting.
    fn park(&self, shared: &Shared) -> bool {
        lock(&self.state).poked = false;
        self.parked.store(true, Ordering::SeqCst);
        // Pairs with the fence after a pool's growth: either the grower
        // sees `parked` (and pokes) or we see its pool above the floor.
        fence(Ordering::SeqCst);
        if live(shared).iter().any(|e| e.xprt().above_idle_floor()) {
            self.parked.store(false, Ordering::Relaxed);
            return false;
        }
        self.parks.fetch_add(1, Ordering::Relaxed);
        let g = lock(&self.state);
        let g = self
            .cv
            .wait_while(g, |s| !s.poked && !s.exit)
            .unwrap_or_else(|p| p.into_inner());
        g.exit
    }
}

fn live(shared: &Shared) -> Vec<Arc<Entry>> {
    lock(&shared.registry).live().cloned().collect()
}
