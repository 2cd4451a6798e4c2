//! B3, keep-up (the OOM story): does release keep up with completion?
//!
//! A producer thread runs at full rate: `get` -> map a page -> post -> hand
//! the `wr_id` to the "NIC", a FIFO of `sq_depth` in-flight contexts; when
//! the FIFO is full the oldest completes (`put`). When `get` says `AtCap`
//! the producer counts a wait, lets the NIC complete its oldest context
//! (a real server would sleep until a Send completion) and retries.
//!
//! The release side is the policy's: for Deferred a worker thread drains
//! between "requests" (and `get` drains when the free list is empty); for
//! Workqueue the shared pool's release thread(s); for Inline the `put`
//! itself. The calling thread samples the pool size and the completion and
//! release counts every `sample_every`.
//!
//! With a nonzero unmap cost and one workqueue thread, Workqueue completes
//! faster than it releases and its `get` (which never drains) allocates
//! until the safety cap; Deferred stays at or under `sq_depth + credits`.

use crate::device::CostDevice;
use crate::setup::{self, build_and_post, PolicyKind};
use rdmaxprt_core::backend::DmaDevice;
use rdmaxprt_core::lifecycle::{GetError, SendCtxtLifecycle};
use rdmaxprt_mock::{DeviceConfig, MockDevice};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The DMA device a B3 run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// The cost-model device of this crate (unmap = busy wait, nothing
    /// else).
    Cost,
    /// `rdmaxprt_mock::MockDevice`: the same busy wait plus its mapping
    /// tracker (a lock and a map per map/unmap), as a cross-check that the
    /// result is not an artifact of the cost model.
    Mock,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Cost => "cost-model",
            DeviceKind::Mock => "rdmaxprt-mock",
        })
    }
}

/// One B3 configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepupSpec {
    /// Policy under test.
    pub policy: PolicyKind,
    /// Device the contexts are mapped on.
    pub device: DeviceKind,
    /// Unmap cost per context.
    pub unmap: Duration,
    /// How long the producer runs.
    pub run_for: Duration,
    /// Sampling period.
    pub sample_every: Duration,
    /// Contexts the NIC holds in flight.
    pub sq_depth: u32,
    /// Credits: replies being built at once (Deferred/Inline cap is
    /// `sq_depth + credits`).
    pub credits: u32,
    /// Release threads of the Workqueue pool.
    pub wq_threads: usize,
    /// The Workqueue safety cap (generous, so the growth shows).
    pub wq_cap: u32,
}

impl KeepupSpec {
    /// The defaults of the report: 1 us unmap, SQ 128 + 64 credits, the
    /// default workqueue (one worker per CPU) with a cap of 65536.
    pub fn new(policy: PolicyKind, run_for: Duration) -> Self {
        Self {
            policy,
            device: DeviceKind::Cost,
            unmap: Duration::from_micros(1),
            run_for,
            sample_every: Duration::from_millis(10),
            sq_depth: 128,
            credits: 64,
            wq_threads: rdmaxprt_core::lifecycle::WorkqueuePool::default_threads(),
            wq_cap: 1 << 16,
        }
    }

    /// The pool cap this configuration runs with.
    pub fn cap(&self) -> u32 {
        match self.policy {
            PolicyKind::Workqueue => self.wq_cap,
            _ => self.sq_depth + self.credits,
        }
    }
}

/// One sample of a B3 run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the producer started.
    pub t: f64,
    /// Contexts allocated.
    pub pool_size: u64,
    /// Completions (`put`s) so far.
    pub completed: u64,
    /// Contexts released so far.
    pub released: u64,
}

/// Rates over part of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Length in seconds.
    pub secs: f64,
    /// Completions per second.
    pub completion_rate: f64,
    /// Releases per second.
    pub release_rate: f64,
}

/// What a B3 run measured (counts are at the end of the window).
#[derive(Debug, Clone, PartialEq)]
pub struct KeepupResult {
    /// The configuration.
    pub spec: KeepupSpec,
    /// Samples, the first at t = 0 and the last at the end of the window.
    pub samples: Vec<Sample>,
    /// Times `get` returned `AtCap`.
    pub waits_at_cap: u64,
    /// High-water mark of contexts in use (not on the free list).
    pub in_use_hwm: u64,
    /// Largest batch one drain released (Deferred; 1 for the others).
    pub batch_max: u64,
}

impl KeepupResult {
    fn last(&self) -> Sample {
        self.samples.last().copied().unwrap_or(Sample {
            t: 0.0,
            pool_size: 0,
            completed: 0,
            released: 0,
        })
    }

    /// Window length in seconds.
    pub fn secs(&self) -> f64 {
        self.last().t
    }

    /// Completions per second over the window.
    pub fn completion_rate(&self) -> f64 {
        self.last().completed as f64 / self.secs()
    }

    /// Releases per second over the window.
    pub fn release_rate(&self) -> f64 {
        self.last().released as f64 / self.secs()
    }

    /// Largest pool size sampled.
    pub fn pool_hwm(&self) -> u64 {
        self.samples.iter().map(|s| s.pool_size).max().unwrap_or(0)
    }

    /// Pool size at the end of warm-up (the first sample at or after
    /// `fraction` of the window).
    pub fn pool_after_warmup(&self, fraction: f64) -> u64 {
        let t0 = self.secs() * fraction;
        self.samples
            .iter()
            .find(|s| s.t >= t0)
            .map_or(0, |s| s.pool_size)
    }

    /// Largest pool size sampled after warm-up minus the size at the end of
    /// warm-up: 0 means flat.
    pub fn growth_after_warmup(&self, fraction: f64) -> u64 {
        let t0 = self.secs() * fraction;
        let max_after = self
            .samples
            .iter()
            .filter(|s| s.t >= t0)
            .map(|s| s.pool_size)
            .max()
            .unwrap_or(0);
        max_after.saturating_sub(self.pool_after_warmup(fraction))
    }

    /// Rates from the start to the first sample at the cap (the whole
    /// window if the pool never reaches it): the phase in which release
    /// lags and the pool grows, before `get` starts waiting at the cap.
    pub fn until_cap(&self) -> Window {
        let cap = u64::from(self.spec.cap());
        let end = self
            .samples
            .iter()
            .skip(1)
            .find(|s| s.pool_size >= cap)
            .copied()
            .unwrap_or_else(|| self.last());
        Window {
            secs: end.t,
            completion_rate: end.completed as f64 / end.t,
            release_rate: end.released as f64 / end.t,
        }
    }

    /// Contexts completed and not yet released at each sample.
    pub fn lags(&self) -> Vec<(f64, u64)> {
        self.samples
            .iter()
            .map(|s| (s.t, s.completed.saturating_sub(s.released)))
            .collect()
    }

    /// Largest lag over the samples with `from <= t < to` (seconds).
    pub fn max_lag_between(&self, from: f64, to: f64) -> u64 {
        self.lags()
            .into_iter()
            .filter(|&(t, _)| t >= from && t < to)
            .map(|(_, l)| l)
            .max()
            .unwrap_or(0)
    }

    /// The in-flight bound of the producer: the NIC's FIFO plus the one
    /// context being built. A policy that releases as fast as it completes
    /// needs about this many contexts, plus what one drain holds.
    pub fn in_flight_bound(&self) -> u64 {
        u64::from(self.spec.sq_depth) + 1
    }

    /// `(t, pool_size)` points for the plot.
    pub fn pool_series(&self) -> Vec<(f64, f64)> {
        self.samples
            .iter()
            .map(|s| (s.t, s.pool_size as f64))
            .collect()
    }
}

fn producer<L: SendCtxtLifecycle>(
    life: &L,
    stop: &AtomicBool,
    completed: &AtomicU64,
    waits: &AtomicU64,
    sq_depth: usize,
) {
    let mut nic: VecDeque<u64> = VecDeque::with_capacity(sq_depth + 1);
    let complete = |id: u64| {
        life.put(id).expect("valid wr_id");
        completed.fetch_add(1, Ordering::Relaxed);
    };
    while !stop.load(Ordering::Relaxed) {
        match build_and_post(life) {
            Ok(id) => {
                nic.push_back(id);
                if nic.len() >= sq_depth {
                    complete(nic.pop_front().expect("non-empty"));
                }
            }
            Err(GetError::AtCap) => {
                waits.fetch_add(1, Ordering::Relaxed);
                match nic.pop_front() {
                    Some(id) => complete(id),
                    None => std::thread::yield_now(),
                }
            }
            Err(e) => panic!("get failed: {e:?}"),
        }
    }
    // After the window: the NIC completes what it holds (not sampled).
    for id in nic {
        life.put(id).expect("valid wr_id");
    }
}

/// Runs `spec` on `life`; `free_unmaps` switches the device's unmap cost
/// off for the untimed cleanup.
fn run_on<L: SendCtxtLifecycle>(
    life: &L,
    free_unmaps: impl FnOnce(),
    spec: &KeepupSpec,
    worker_drains: bool,
) -> KeepupResult {
    let stop = AtomicBool::new(false);
    let completed = AtomicU64::new(0);
    let waits = AtomicU64::new(0);
    let mut samples = Vec::new();
    std::thread::scope(|s| {
        let (stop, completed, waits) = (&stop, &completed, &waits);
        let sq = spec.sq_depth.max(1) as usize;
        let start = Instant::now();
        s.spawn(move || producer(life, stop, completed, waits, sq));
        if worker_drains {
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if life.drain() == 0 {
                        std::thread::yield_now();
                    }
                }
            });
        }
        let sample = |t: f64| {
            // Completions first: a release is always preceded by its
            // completion, so the lag read this way is never overstated.
            let completed = completed.load(Ordering::Relaxed);
            let st = life.stats().snapshot();
            Sample {
                t,
                pool_size: st.pool_size,
                completed,
                released: st.completions,
            }
        };
        samples.push(sample(0.0));
        loop {
            std::thread::sleep(spec.sample_every);
            let t = start.elapsed();
            samples.push(sample(t.as_secs_f64()));
            if t >= spec.run_for {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    // Untimed cleanup: release everything quickly.
    free_unmaps();
    life.flush();
    life.drain();
    let st = life.stats().snapshot();
    KeepupResult {
        spec: *spec,
        samples,
        waits_at_cap: waits.load(Ordering::Relaxed),
        in_use_hwm: st.in_use_hwm,
        batch_max: st.batch_max,
    }
}

/// Runs one B3 configuration.
pub fn run(spec: &KeepupSpec) -> KeepupResult {
    match spec.device {
        DeviceKind::Cost => {
            let dev = CostDevice::new(spec.unmap);
            run_policy(&dev, || dev.set_unmap_cost(Duration::ZERO), spec)
        }
        DeviceKind::Mock => {
            let dev = MockDevice::with_config(DeviceConfig {
                unmap_cost: spec.unmap,
                ..DeviceConfig::default()
            });
            run_policy(&dev, || dev.set_unmap_cost(Duration::ZERO), spec)
        }
    }
}

fn run_policy<D>(dev: &D, free_unmaps: impl FnOnce(), spec: &KeepupSpec) -> KeepupResult
where
    D: DmaDevice + Clone + Send + Sync + 'static,
    D::Buf: Send,
{
    let cap = spec.cap();
    match spec.policy {
        PolicyKind::Deferred => run_on(&setup::deferred(dev, cap), free_unmaps, spec, true),
        PolicyKind::Inline => run_on(&setup::inline(dev, cap), free_unmaps, spec, false),
        PolicyKind::Workqueue => run_on(
            &setup::workqueue(dev, cap, spec.wq_threads),
            free_unmaps,
            spec,
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, pool_size: u64) -> Sample {
        Sample {
            t,
            pool_size,
            completed: (t * 1000.0) as u64,
            released: (t * 500.0) as u64,
        }
    }

    #[test]
    fn warmup_growth_and_rates_from_samples() {
        let r = KeepupResult {
            spec: KeepupSpec::new(PolicyKind::Workqueue, Duration::from_secs(1)),
            samples: vec![
                sample(0.0, 0),
                sample(0.25, 100),
                sample(0.5, 150),
                sample(1.0, 400),
            ],
            waits_at_cap: 0,
            in_use_hwm: 0,
            batch_max: 0,
        };
        assert_eq!(r.pool_after_warmup(0.2), 100);
        assert_eq!(r.growth_after_warmup(0.2), 300);
        assert_eq!(r.pool_hwm(), 400);
        assert!((r.completion_rate() - 1000.0).abs() < 1e-9);
        assert!((r.release_rate() - 500.0).abs() < 1e-9);
        assert_eq!(r.pool_series().len(), 4);
        // Never reaches the Workqueue cap: the whole window.
        assert_eq!(r.until_cap().secs, 1.0);
        let mut small = r.clone();
        small.spec.wq_cap = 150;
        let u = small.until_cap();
        assert_eq!(u.secs, 0.5);
        assert!((u.completion_rate - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn deferred_stays_under_its_cap_on_both_devices() {
        for device in [DeviceKind::Cost, DeviceKind::Mock] {
            let mut spec = KeepupSpec::new(PolicyKind::Deferred, Duration::from_millis(30));
            spec.unmap = Duration::ZERO;
            spec.device = device;
            let r = run(&spec);
            assert!(r.pool_hwm() <= u64::from(spec.cap()), "{device}");
            assert!(r.samples.len() >= 2);
        }
    }
}
