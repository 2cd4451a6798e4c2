//! The seeded fault injector (after smoltcp's `FaultInjector`): its own
//! xorshift RNG so it works without std, and the same seed plus the same
//! sequence of calls gives the same faults.
//!
//! Each QP end has its own injector (seeded from the config's seed and the
//! end's index), consulted at three points:
//! - **post**: fail the whole chain (`consumed == 0`) or part of it
//!   (`consumed == k`, `0 < k < chain.len()`);
//! - **execution** of each SQ WR: move this QP to error first (the WR and
//!   everything behind it flush; the peer's later Sends/RDMA to it fail with
//!   `RetryExceeded`), lose the connection (both ends to error), or complete
//!   the WR with an error status (both ends to error, as a broken RC
//!   connection does);
//! - **completion**: hold a completion back for a few polls of its CQ. Later
//!   completions of the same CQ wait behind it (RC completes in order), so
//!   this reorders delivery *across* QPs and CQs only.

use rdmaxprt_core::backend::WcStatus;

/// What to inject and how often (each rate is a probability in `0.0..=1.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Seed of the RNG; the same seed replays the same faults.
    pub seed: u64,
    /// Per post: fail the whole chain, nothing consumed.
    pub post_fail_rate: f64,
    /// Per post of two or more WRs: fail part-way (some WRs consumed).
    pub partial_chain_fail_rate: f64,
    /// Per executed WR: complete it with an error status; both ends go to
    /// error.
    pub error_completion_rate: f64,
    /// Per executed WR: this QP goes to error before the WR runs, so it and
    /// every outstanding WR flush.
    pub qp_error_rate: f64,
    /// Per executed WR: the connection is lost, both ends flush.
    pub disconnect_rate: f64,
    /// Hold some completions back (see [`DelayConfig`]).
    pub delay: Option<DelayConfig>,
}

impl FaultConfig {
    /// No faults at all, with `seed` (set the rates you want on top).
    pub fn none(seed: u64) -> Self {
        Self {
            seed,
            post_fail_rate: 0.0,
            partial_chain_fail_rate: 0.0,
            error_completion_rate: 0.0,
            qp_error_rate: 0.0,
            disconnect_rate: 0.0,
            delay: None,
        }
    }
}

/// Delayed delivery of completions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayConfig {
    /// Probability that a completion is held back.
    pub rate: f64,
    /// A held completion becomes visible after `1..=max_polls` polls of its
    /// CQ.
    pub max_polls: u32,
}

/// How many faults of each kind one QP end's injector has injected (read
/// with [`MockQp::fault_counts`](crate::MockQp::fault_counts)), so a soak
/// can say what it exercised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Posts failed whole (nothing consumed).
    pub post_failures: u64,
    /// Posts failed part-way (some WRs consumed).
    pub partial_posts: u64,
    /// WRs completed with an error status.
    pub error_completions: u64,
    /// QPs moved to error before a WR.
    pub qp_errors: u64,
    /// Connections lost before a WR.
    pub disconnects: u64,
    /// Completions held back for a few polls.
    pub delayed_completions: u64,
}

impl FaultCounts {
    /// Adds `other`'s counts into `self`.
    pub fn add(&mut self, other: &FaultCounts) {
        self.post_failures += other.post_failures;
        self.partial_posts += other.partial_posts;
        self.error_completions += other.error_completions;
        self.qp_errors += other.qp_errors;
        self.disconnects += other.disconnects;
        self.delayed_completions += other.delayed_completions;
    }

    /// All faults injected, of every kind.
    pub fn total(&self) -> u64 {
        self.post_failures
            + self.partial_posts
            + self.error_completions
            + self.qp_errors
            + self.disconnects
            + self.delayed_completions
    }
}

/// xorshift64*: tiny, no_std, good enough to pick faults.
#[derive(Debug, Clone)]
struct XorShift64(u64);

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // A zero state would stay zero forever; splitmix the seed instead.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What execution-time faults chose for one WR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecFault {
    /// Run normally.
    None,
    /// This QP to error before the WR.
    QpError,
    /// Both ends to error before the WR.
    Disconnect,
    /// Complete the WR with this error status, both ends to error.
    ErrorCompletion(WcStatus),
}

/// One QP end's injector.
#[derive(Debug, Clone)]
pub(crate) struct FaultInjector {
    cfg: FaultConfig,
    rng: XorShift64,
    counts: FaultCounts,
}

impl FaultInjector {
    pub(crate) fn new(cfg: FaultConfig, end: usize) -> Self {
        let salt = (end as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        Self {
            cfg,
            rng: XorShift64::new(cfg.seed ^ salt),
            counts: FaultCounts::default(),
        }
    }

    /// What this injector has injected so far.
    pub(crate) fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// `true` with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits as a fraction in [0, 1).
        let x = (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next() % n.max(1)
    }

    /// How many WRs of a `len`-WR chain to accept before failing the post,
    /// or `None` to accept it all.
    pub(crate) fn on_post(&mut self, len: usize) -> Option<usize> {
        if self.chance(self.cfg.post_fail_rate) {
            self.counts.post_failures += 1;
            return Some(0);
        }
        if len >= 2 && self.chance(self.cfg.partial_chain_fail_rate) {
            self.counts.partial_posts += 1;
            return Some(1 + self.below(len as u64 - 1) as usize);
        }
        None
    }

    /// The fault, if any, for the WR about to execute.
    pub(crate) fn on_exec(&mut self) -> ExecFault {
        if self.chance(self.cfg.qp_error_rate) {
            self.counts.qp_errors += 1;
            ExecFault::QpError
        } else if self.chance(self.cfg.disconnect_rate) {
            self.counts.disconnects += 1;
            ExecFault::Disconnect
        } else if self.chance(self.cfg.error_completion_rate) {
            self.counts.error_completions += 1;
            const STATUSES: [WcStatus; 3] = [
                WcStatus::RemoteOp,
                WcStatus::RetryExceeded,
                WcStatus::RemoteAccess,
            ];
            ExecFault::ErrorCompletion(STATUSES[self.below(3) as usize])
        } else {
            ExecFault::None
        }
    }

    /// How many polls to hold a new completion back for (0 = none).
    pub(crate) fn on_complete(&mut self) -> u32 {
        let delay = self.cfg.delay;
        match delay {
            Some(d) if d.max_polls > 0 && self.chance(d.rate) => {
                self.counts.delayed_completions += 1;
                1 + self.below(u64::from(d.max_polls)) as u32
            }
            _ => 0,
        }
    }
}
