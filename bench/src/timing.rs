//! What a timed run returns, and how much its threads really overlapped.

use std::time::{Duration, Instant};

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    /// Sum over threads of the timed region.
    pub total: Duration,
    /// Operations timed (over all threads).
    pub ops: u64,
    /// With several threads: the fraction of a thread's timed time during
    /// which all of them were timing at once (see [`overlap`]). `None` for
    /// one thread.
    pub overlap: Option<f64>,
}

impl Timed {
    /// A single-threaded measurement.
    pub fn single(total: Duration, ops: u64) -> Self {
        Self {
            total,
            ops,
            overlap: None,
        }
    }

    /// Mean nanoseconds per operation.
    pub fn ns_per_op(&self) -> f64 {
        crate::summary::ns_per(self.total, self.ops)
    }

    /// `total` rescaled to `iters` operations (for criterion's
    /// `iter_custom`, which asks for a duration of exactly `iters`).
    pub fn scaled_to(&self, iters: u64) -> Duration {
        if self.ops == 0 {
            return Duration::ZERO;
        }
        self.total.mul_f64(iters as f64 / self.ops as f64)
    }
}

/// How much the threads' timed regions overlapped: `rounds[r][t]` is thread
/// `t`'s `(start, end)` in round `r`. Per round, the time all threads were
/// inside their timed region at once, summed, over the summed mean region
/// length. 1.0 = they ran side by side (so contention was measured); near
/// 0 = one ran after the other (e.g. the other core was busy with another
/// process), so a "two-thread" figure is really a one-thread figure.
/// `None` with fewer than two threads or nothing timed.
pub fn overlap(rounds: &[Vec<(Instant, Instant)>]) -> Option<f64> {
    let (mut common, mut mean) = (Duration::ZERO, Duration::ZERO);
    for r in rounds {
        if r.len() < 2 {
            return None;
        }
        let start = r.iter().map(|i| i.0).max()?;
        let end = r.iter().map(|i| i.1).min()?;
        common += end.saturating_duration_since(start);
        let sum: Duration = r.iter().map(|i| i.1.saturating_duration_since(i.0)).sum();
        mean += sum / r.len() as u32;
    }
    (!mean.is_zero()).then(|| common.as_secs_f64() / mean.as_secs_f64())
}

/// Repeated runs of one configuration, filtered for real contention.
#[derive(Debug, Clone, PartialEq)]
pub struct Runs {
    /// The runs the figures come from: those that qualified, or every run
    /// if none did (then `qualified` is false).
    pub kept: Vec<Timed>,
    /// Runs made.
    pub tried: usize,
    /// Whether `kept` are qualifying runs.
    pub qualified: bool,
}

/// Runs `f` until `want` runs qualify or `max_tries` runs were made. A
/// single-threaded run always qualifies; a multi-threaded one needs its
/// threads to have overlapped at least `min_overlap`, so that a
/// "two-thread" figure is not secretly a one-thread one (a busy machine
/// often leaves only one core).
pub fn collect_runs(
    want: usize,
    max_tries: usize,
    min_overlap: f64,
    mut f: impl FnMut() -> Timed,
) -> Runs {
    let want = want.max(1);
    let (mut good, mut all) = (Vec::new(), Vec::new());
    while good.len() < want && all.len() < max_tries.max(want) {
        let t = f();
        if t.overlap.map_or(true, |o| o >= min_overlap) {
            good.push(t);
        }
        all.push(t);
    }
    let tried = all.len();
    if good.is_empty() {
        Runs {
            kept: all,
            tried,
            qualified: false,
        }
    } else {
        Runs {
            kept: good,
            tried,
            qualified: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_of_side_by_side_staggered_and_serial_threads() {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        // Side by side.
        assert_eq!(
            overlap(&[vec![(at(0), at(10)), (at(0), at(10))]]),
            Some(1.0)
        );
        // Half staggered: common 5 of mean 10.
        assert_eq!(
            overlap(&[vec![(at(0), at(10)), (at(5), at(15))]]),
            Some(0.5)
        );
        // One after the other.
        assert_eq!(
            overlap(&[vec![(at(0), at(10)), (at(10), at(20))]]),
            Some(0.0)
        );
        // Summed over rounds: (10 + 0) / (10 + 10).
        let rounds = [
            vec![(at(0), at(10)), (at(0), at(10))],
            vec![(at(20), at(30)), (at(30), at(40))],
        ];
        assert_eq!(overlap(&rounds), Some(0.5));
        assert_eq!(overlap(&[vec![(at(0), at(10))]]), None);
        assert_eq!(overlap(&[]), None);
    }

    #[test]
    fn collect_runs_keeps_only_overlapped_multi_thread_runs() {
        let run = |o: Option<f64>| Timed {
            total: Duration::from_micros(1),
            ops: 1,
            overlap: o,
        };
        // Single-threaded: every run counts, no extra tries.
        let r = collect_runs(3, 9, 0.5, || run(None));
        assert_eq!((r.kept.len(), r.tried, r.qualified), (3, 3, true));
        // Alternating overlap: tries until 3 good ones.
        let mut i = 0;
        let r = collect_runs(3, 9, 0.5, || {
            i += 1;
            run(Some(if i % 2 == 0 { 0.9 } else { 0.1 }))
        });
        assert_eq!((r.kept.len(), r.tried, r.qualified), (3, 6, true));
        assert!(r.kept.iter().all(|t| t.overlap == Some(0.9)));
        // Never overlapping: gives up after max_tries and keeps all.
        let r = collect_runs(3, 5, 0.5, || run(Some(0.0)));
        assert_eq!((r.kept.len(), r.tried, r.qualified), (5, 5, false));
    }

    #[test]
    fn scaling_and_per_op() {
        let t = Timed::single(Duration::from_micros(1), 100);
        assert_eq!(t.ns_per_op(), 10.0);
        assert_eq!(t.scaled_to(50), Duration::from_nanos(500));
        assert_eq!(
            Timed::single(Duration::ZERO, 0).scaled_to(5),
            Duration::ZERO
        );
    }
}
