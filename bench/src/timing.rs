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
