//! A lane: one driver thread running its share of the connections (client
//! calls and the server's worker passes, connection after connection) and
//! one completion-poller thread running the completion handlers of the
//! lane's live transports concurrently, as the runtime's pollers do.

use crate::conn::{Conn, ConnConfig, Failure, SharedXprt};
use crate::plan::Plan;
use crate::totals::Totals;
use rdmaxprt::lifecycle::{Policy, WorkqueuePool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every lane shares: the plan source, the counters, the stop flag.
pub struct Run {
    /// The run's seed.
    pub seed: u64,
    /// Policies to rotate through.
    pub policies: Vec<Policy>,
    /// Calls per connection, inclusive range.
    pub conn_calls: (u64, u64),
    /// Stop opening connections once this many calls are planned.
    pub target: u64,
    /// Replay just this connection.
    pub only: Option<u64>,
    /// Per-connection knobs.
    pub conn: ConnConfig,
    /// Counters.
    pub totals: Totals,
    /// The shared release workqueue (Workqueue policy).
    pub wq: Arc<WorkqueuePool>,
    /// Set on the first failure: every lane stops.
    pub stop: AtomicBool,
    next_serial: AtomicU64,
    planned: AtomicU64,
}

impl Run {
    /// A run; see the fields.
    pub fn new(
        seed: u64,
        policies: Vec<Policy>,
        conn_calls: (u64, u64),
        target: u64,
        only: Option<u64>,
        conn: ConnConfig,
    ) -> Self {
        Self {
            seed,
            policies,
            conn_calls,
            target,
            only,
            conn,
            totals: Totals::default(),
            wq: WorkqueuePool::new(1),
            stop: AtomicBool::new(false),
            next_serial: AtomicU64::new(0),
            planned: AtomicU64::new(0),
        }
    }

    /// Gives back the calls a connection planned but never started (it
    /// broke early), so the run still makes `target` calls.
    fn unplan(&self, calls: u64) {
        self.planned.fetch_sub(calls, Ordering::Relaxed);
    }

    /// The next connection to open, if the run wants more.
    fn next_plan(&self) -> Option<Plan> {
        if let Some(s) = self.only {
            let first = self.next_serial.fetch_add(1, Ordering::Relaxed) == 0;
            return first.then(|| Plan::new(self.seed, s, &self.policies, self.conn_calls));
        }
        if self.planned.load(Ordering::Relaxed) >= self.target {
            return None;
        }
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let plan = Plan::new(self.seed, serial, &self.policies, self.conn_calls);
        self.planned.fetch_add(plan.calls, Ordering::Relaxed);
        Some(plan)
    }
}

/// One lane's shared state: the transports its poller serves.
#[derive(Default)]
pub struct Lane {
    set: Mutex<Vec<(u64, SharedXprt)>>,
    epoch: AtomicU64,
    /// The serial of the connection the driver is stepping (+1; 0: none).
    current: AtomicU64,
    done: AtomicBool,
    /// The last published state of the lane's connections (for the
    /// watchdog's dump): serial and status line.
    pub status: Mutex<Vec<(u64, String)>>,
}

impl Lane {
    /// The completion poller: every live transport of the lane, round
    /// after round, until the driver is done.
    pub fn poller(&self) {
        while !self.done.load(Ordering::Acquire) {
            let set = lock(&self.set).clone();
            let n: usize = set.iter().map(|(_, x)| x.poll()).sum();
            drop(set);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            if n == 0 {
                std::thread::sleep(Duration::from_micros(30));
            }
        }
    }

    /// Takes `x` away from the poller and waits until no poll round can
    /// still hold it.
    fn forget(&self, x: &SharedXprt) {
        lock(&self.set).retain(|(_, y)| !Arc::ptr_eq(x, y));
        let e0 = self.epoch.load(Ordering::Acquire);
        while self.epoch.load(Ordering::Acquire) < e0 + 2 {
            std::thread::sleep(Duration::from_micros(10));
        }
    }

    /// For the watchdog: the connection the driver is in, with its server
    /// transport's state read now.
    pub fn stuck_in(&self) -> Option<(u64, String)> {
        let serial = self.current.load(Ordering::Relaxed).checked_sub(1)?;
        let set = lock(&self.set);
        let x = &set.iter().find(|(s, _)| *s == serial)?.1;
        let s = x.stats();
        Some((
            serial,
            format!(
                "  driver inside conn {serial}: server flags {:?}, census {:?}, has_wspace {}, {} SQ waits, {} waits at the pool cap, {} cap hits, {} in use",
                x.flags(),
                x.census(),
                x.has_wspace(),
                x.sq_waits(),
                s.waits_at_cap,
                s.cap_hits,
                s.in_use
            ),
        ))
    }

    fn publish(&self, conns: &[Conn]) {
        *lock(&self.status) = conns.iter().map(|c| (c.plan.serial, c.status())).collect();
    }

    /// The driver: keeps `slots` connections open until the run has
    /// planned enough calls, retiring each as it finishes.
    pub fn drive(&self, run: &Run, slots: usize) -> Result<(), Failure> {
        let r = self.drive_inner(run, slots);
        self.done.store(true, Ordering::Release);
        r
    }

    fn drive_inner(&self, run: &Run, slots: usize) -> Result<(), Failure> {
        let mut conns: Vec<Conn> = Vec::with_capacity(slots);
        let (mut round, mut idle) = (0u64, 0u64);
        loop {
            let open = conns.len();
            while conns.len() < slots {
                let Some(plan) = run.next_plan() else { break };
                let c = Conn::open(plan, run.conn, &run.wq)?;
                lock(&self.set).push((c.plan.serial, Arc::clone(&c.x)));
                conns.push(c);
            }
            if conns.len() != open {
                self.publish(&conns);
            }
            if conns.is_empty() || run.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut moved = 0;
            for c in conns.iter_mut() {
                self.current.store(c.plan.serial + 1, Ordering::Relaxed);
                moved += c.step(&run.totals)?;
            }
            self.current.store(0, Ordering::Relaxed);
            let mut i = 0;
            while i < conns.len() {
                if conns[i].finished() {
                    let mut c = conns.swap_remove(i);
                    run.unplan(c.unstarted());
                    c.close_abruptly(&run.totals)?;
                    self.forget(&c.x);
                    c.teardown(&run.totals)?;
                    moved += 1;
                } else {
                    i += 1;
                }
            }
            round += 1;
            idle = if moved == 0 { idle + 1 } else { 0 };
            // Often enough that a stuck lane's last words are recent.
            if round % 512 == 0 || idle == 1000 {
                self.publish(&conns);
            }
            if moved == 0 {
                std::thread::yield_now();
            }
        }
    }
}
