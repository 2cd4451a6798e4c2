//! Small statistics helpers for the report: medians over repeated runs,
//! ratios against a floor, and human-readable formatting.

use std::time::Duration;

/// Median of `xs` (mean of the two middle values for an even count);
/// `None` for an empty slice. NaNs sort last.
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `value / floor`, or `None` when the floor is not positive (a ratio to
/// nothing means nothing).
pub fn ratio(value: f64, floor: f64) -> Option<f64> {
    (floor > 0.0 && floor.is_finite() && value.is_finite()).then(|| value / floor)
}

/// Relative change from `from` to `to` (`0.1` = 10 % more); `None` when
/// `from` is not positive.
pub fn rel_change(from: f64, to: f64) -> Option<f64> {
    ratio(to, from).map(|r| r - 1.0)
}

/// Nanoseconds per operation.
pub fn ns_per(total: Duration, ops: u64) -> f64 {
    if ops == 0 {
        return f64::NAN;
    }
    total.as_secs_f64() * 1e9 / ops as f64
}

/// Formats a ratio as `1.23x` (or `n/a`).
pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{r:.2}x"),
        None => "n/a".into(),
    }
}

/// Formats nanoseconds with a precision suited to the magnitude.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "n/a".into()
    } else if ns < 10.0 {
        format!("{ns:.2} ns")
    } else if ns < 1000.0 {
        format!("{ns:.1} ns")
    } else {
        format!("{:.2} us", ns / 1000.0)
    }
}

/// Formats a rate (per second) as `1.23 M/s`, `456.7 K/s` or `12 /s`.
pub fn fmt_rate(per_s: f64) -> String {
    if !per_s.is_finite() {
        "n/a".into()
    } else if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} K/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} /s")
    }
}

/// Whether a target holds, for the report's verdict column.
pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "MET",
        Some(false) => "MISSED",
        None => "n/a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        // An outlier does not move the median.
        assert_eq!(median(&[1.0, 1.0, 1000.0]), Some(1.0));
    }

    #[test]
    fn ratio_and_change_refuse_a_zero_floor() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        let c = rel_change(10.0, 11.0).unwrap();
        assert!((c - 0.1).abs() < 1e-12);
        assert_eq!(rel_change(0.0, 1.0), None);
    }

    #[test]
    fn formatting_picks_units() {
        assert_eq!(fmt_ns(5.0), "5.00 ns");
        assert_eq!(fmt_ns(12.34), "12.3 ns");
        assert_eq!(fmt_ns(2500.0), "2.50 us");
        assert_eq!(fmt_rate(432_000.0), "432.0 K/s");
        assert_eq!(fmt_rate(2_500_000.0), "2.50 M/s");
        assert_eq!(fmt_ratio(None), "n/a");
        assert_eq!(ns_per(Duration::from_micros(1), 100), 10.0);
        assert!(ns_per(Duration::from_micros(1), 0).is_nan());
    }
}
