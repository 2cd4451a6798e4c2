//! A [`ScaleResult`] as one `key=value` line, so that a child process can
//! measure one connection count in a fresh address space.

use super::ScaleResult;
use rdmaxprt::runtime::SweepReport;
use std::time::Duration;

/// The fields a report needs, as one line (a child process prints it, the
/// parent parses it back).
impl ScaleResult {
    /// Serializes as `SCALE key=value ...`.
    pub fn to_line(&self) -> String {
        format!(
            "SCALE conns={} active={} setup_ns={} rss_before={} rss_idle={} server_mapped={} \
             server_mappings={} client_mapped={} send_ctxts={} threads0={} threads={} fds0={} \
             fds={} calls={} errors={} elapsed_ns={} poller_wakeups={} rate_min={} \
             rate_max={} sweeps={} freed={} sweep_ns={} parks={} idle_sweep_ns={} teardown_ns={}",
            self.conns,
            self.active,
            self.setup.as_nanos(),
            self.rss_before_kib,
            self.rss_idle_kib,
            self.server_mapped,
            self.server_mappings,
            self.client_mapped,
            self.send_ctxts,
            self.threads.0,
            self.threads.1,
            self.fds.0,
            self.fds.1,
            self.calls,
            self.errors,
            self.elapsed.as_nanos(),
            self.poller_wakeups,
            self.rate_min,
            self.rate_max,
            self.sweep.sweeps,
            self.sweep.freed,
            self.sweep.sweep_ns,
            self.sweep.parks,
            self.idle_sweep.as_nanos(),
            self.teardown.as_nanos(),
        )
    }

    /// Parses [`to_line`](Self::to_line)'s output; `None` if a field is
    /// missing or not a number.
    pub fn from_line(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("SCALE ")?;
        let kv: std::collections::HashMap<&str, u64> = rest
            .split_whitespace()
            .map(|f| {
                let (k, v) = f.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect::<Option<_>>()?;
        let g = |k: &str| kv.get(k).copied();
        let us = |k: &str| g(k).and_then(|v| usize::try_from(v).ok());
        Some(Self {
            conns: us("conns")?,
            active: us("active")?,
            setup: Duration::from_nanos(g("setup_ns")?),
            rss_before_kib: g("rss_before")?,
            rss_idle_kib: g("rss_idle")?,
            server_mapped: g("server_mapped")?,
            server_mappings: us("server_mappings")?,
            client_mapped: g("client_mapped")?,
            send_ctxts: g("send_ctxts")?,
            threads: (us("threads0")?, us("threads")?),
            fds: (us("fds0")?, us("fds")?),
            calls: g("calls")?,
            errors: g("errors")?,
            elapsed: Duration::from_nanos(g("elapsed_ns")?),
            poller_wakeups: g("poller_wakeups")?,
            rate_min: g("rate_min")?,
            rate_max: g("rate_max")?,
            sweep: SweepReport {
                sweeps: g("sweeps")?,
                freed: g("freed")?,
                sweep_ns: g("sweep_ns")?,
                parks: g("parks")?,
            },
            idle_sweep: Duration::from_nanos(g("idle_sweep_ns")?),
            teardown: Duration::from_nanos(g("teardown_ns")?),
        })
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn a_result_survives_its_line() {
        let r = ScaleResult {
            conns: 10_000,
            active: 100,
            setup: Duration::from_millis(1234),
            rss_before_kib: 5,
            rss_idle_kib: 6,
            server_mapped: 7,
            server_mappings: 8,
            client_mapped: 9,
            send_ctxts: 10,
            threads: (1, 6),
            fds: (3, 4),
            calls: 11,
            errors: 1,
            elapsed: Duration::from_nanos(12),
            poller_wakeups: 13,
            rate_min: 20,
            rate_max: 21,
            sweep: SweepReport {
                sweeps: 14,
                freed: 15,
                sweep_ns: 16,
                parks: 17,
            },
            idle_sweep: Duration::from_nanos(19),
            teardown: Duration::from_nanos(18),
        };
        assert_eq!(ScaleResult::from_line(&r.to_line()), Some(r));
        assert_eq!(ScaleResult::from_line("SCALE conns=1"), None);
        assert_eq!(ScaleResult::from_line("nonsense"), None);
    }
}
