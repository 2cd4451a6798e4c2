//! B7 (scale): idle transports at 1, 1,000 and 10,000 mock connections,
//! calls/s with 1% of them active, and the idle send-context shrink over
//! time. Each connection count runs in a child process of its own
//! (`--scale-child`), so every RSS figure starts from a fresh heap.

use super::*;
use rdmaxprt::runtime::ServerMode;
use rdmaxprt::transport::IdleShrink;
use rdmaxprt_bench::scale::{self, ScaleResult, ScaleSpec, Timeline, TimelineSpec};

/// Connection counts of the idle-transport table.
const SCALE_CONNS: [usize; 3] = [1, 1_000, 10_000];
/// Contexts an idle transport keeps.
const FLOOR: u32 = 4;

fn spec(quick: bool, conns: usize, active: usize, mode: ServerMode) -> ScaleSpec {
    ScaleSpec {
        conns,
        active,
        window: Duration::from_millis(if quick { 200 } else { 1000 }),
        windows: if quick { 3 } else { 5 },
        client_credits: 4,
        idle_shrink: Some(IdleShrink {
            after: Duration::from_millis(500),
            floor: FLOOR,
        }),
        idle_sweep: conns >= 1_000,
        mode,
    }
}

fn mode_name(mode: ServerMode) -> &'static str {
    if mode == ServerMode::PollGroup {
        "poll-group"
    } else {
        "thread-pool"
    }
}

/// `--scale-child CONNS:ACTIVE[:MODE] [--quick]` (MODE `thread-pool`, the
/// default, or `poll-group`): one run, one `SCALE` line.
pub(super) fn scale_child(arg: &str, quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    let mut it = arg.split(':');
    let (Some(c), Some(a)) = (it.next(), it.next()) else {
        return Err("--scale-child needs CONNS:ACTIVE[:MODE]".into());
    };
    let mode = match it.next() {
        None | Some("thread-pool") => ServerMode::ThreadPool,
        Some("poll-group") => ServerMode::PollGroup,
        Some(m) => return Err(format!("unknown mode {m} (thread-pool or poll-group)").into()),
    };
    let r = scale::run(&spec(quick, c.parse()?, a.parse()?, mode))?;
    println!("{}", r.to_line());
    Ok(())
}

fn in_child(
    quick: bool,
    conns: usize,
    active: usize,
    mode: ServerMode,
) -> Result<ScaleResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    let arg = format!("{conns}:{active}:{}", mode_name(mode));
    cmd.arg("--scale-child").arg(&arg);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(ScaleResult::from_line)
        .ok_or_else(|| {
            format!(
                "scale child {arg} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

fn kib(bytes: f64) -> String {
    format!("{:.1}", bytes / 1024.0)
}

/// The B7 tables and the shrink plot's lines.
pub(super) fn b7(mode: &Mode) -> (Vec<Table>, Vec<Series>) {
    let mut idle = Table::new(
        "B7 idle transports on the mock NIC (threaded runtime, one process)",
        &[
            "connections",
            "setup (s)",
            "RSS growth (MiB)",
            "RSS per connection, both ends (KiB)",
            "server registered per transport (KiB)",
            "server mappings per transport",
            "send contexts per transport",
            "client registered per connection (KiB)",
            "threads before -> running",
            "fds before -> running",
            "teardown (s)",
        ],
    );
    let mut rate = Table::new(
        "B7 calls/s with 1% of the connections active",
        &[
            "mode",
            "connections",
            "active",
            "calls/s (median window)",
            "min..max",
            "the active ones alone: calls/s",
            "ratio",
            "poller wakeups per call",
            "sweeps (mean time each)",
            "one sweep, nothing else running",
            "errors",
        ],
    );
    // Thread pool at every count; poll groups at 10,000 only and not in
    // --quick (two more 10,000-connection setups would take the section
    // past the CI's ~30 s on a loaded host); the idle-transport columns
    // are the thread pool's.
    let poll_group = (!mode.quick).then_some((ServerMode::PollGroup, 10_000));
    let runs = SCALE_CONNS
        .iter()
        .map(|&c| (ServerMode::ThreadPool, c))
        .chain(poll_group);
    for (smode, conns) in runs {
        let active = (conns / 100).max(1);
        let run = in_child(mode.quick, conns, active, smode);
        // The same active connections with no idle ones beside them.
        let alone = if active == conns {
            run.clone()
        } else {
            in_child(mode.quick, active, active, smode)
        };
        let r = match &run {
            Ok(r) => r,
            Err(e) => {
                rate.row(vec![
                    mode_name(smode).into(),
                    conns.to_string(),
                    format!("failed: {e}"),
                ]);
                continue;
            }
        };
        let n = r.conns.max(1) as f64;
        if smode == ServerMode::ThreadPool {
            idle.row(vec![
                r.conns.to_string(),
                format!("{:.2}", r.setup.as_secs_f64()),
                format!(
                    "{:.1}",
                    r.rss_idle_kib.saturating_sub(r.rss_before_kib) as f64 / 1024.0
                ),
                format!("{:.1}", r.rss_per_conn_kib()),
                kib(r.server_mapped as f64 / n),
                format!("{:.1}", r.server_mappings as f64 / n),
                format!("{:.1}", r.send_ctxts as f64 / n),
                kib(r.client_mapped as f64 / n),
                format!("{} -> {}", r.threads.0, r.threads.1),
                format!("{} -> {}", r.fds.0, r.fds.1),
                format!("{:.2}", r.teardown.as_secs_f64()),
            ]);
        }
        let alone_rate = alone.as_ref().map_or(f64::NAN, ScaleResult::rate);
        rate.row(vec![
            mode_name(smode).into(),
            r.conns.to_string(),
            r.active.to_string(),
            fmt_rate(r.rate()),
            format!(
                "{}..{}",
                fmt_rate(r.rate_min as f64),
                fmt_rate(r.rate_max as f64)
            ),
            fmt_rate(alone_rate),
            fmt_ratio(ratio(r.rate(), alone_rate)),
            format!("{:.2}", r.poller_wakeups as f64 / r.calls.max(1) as f64),
            match r.sweep_mean() {
                Some(d) => format!("{} ({:.2} ms)", r.sweep.sweeps, d.as_secs_f64() * 1e3),
                None => "0".into(),
            },
            if r.idle_sweep.is_zero() {
                "-".into()
            } else {
                format!("{:.2} ms", r.idle_sweep.as_secs_f64() * 1e3)
            },
            r.errors.to_string(),
        ]);
    }
    idle.note = format!(
        "Each row is a child process (`--scale-child CONNS:ACTIVE`): the server (2 workers, \
         1 shared doorbell poller, the idle sweeper) and CONNS clients (4 credits each) on \
         default mock QPs (Inline delivery). Every connection makes one call, then idles. RSS \
         = VmRSS growth from before the server started to all-idle, client and server \
         together; registered = bytes the mock tracker holds mapped per device. A server \
         transport keeps 2 x credits + batch = 136 receive buffers of the 1 KiB inline size \
         mapped for life (the kernel's svc_rdma_recv_ctxt cache does the same); the send \
         contexts are the idle shrink's part (floor {FLOOR}). No thread or descriptor is \
         per connection on the mock (doorbell pollers are shared)."
    );
    rate.note = format!(
        "Closed loop, one call in flight per active connection, two driver threads, {} \
         windows of {} ms back to back, the median one shown; \"alone\" is a run with only the active connections (no idle ones). The thread \
         pool's shared doorbell poller and the poll groups (one thread per CPU) poll only \
         the transports whose QP rang, so idle ones cost a wakeup nothing. Sweeps: the idle sweeper (period 500 ms) looking at \
         every transport once.",
        spec(mode.quick, 1, 1, ServerMode::ThreadPool).windows,
        spec(mode.quick, 1, 1, ServerMode::ThreadPool).window.as_millis()
    );

    let (shrink, series) = timeline_table(mode);
    (vec![idle, rate, shrink], series)
}

fn timeline_table(mode: &Mode) -> (Table, Vec<Series>) {
    let after = Duration::from_millis(if mode.quick { 150 } else { 400 });
    let mut t = Table::new(
        "B7 idle send-context shrink over time (plot: idle_shrink.svg)",
        &[
            "shrink",
            "peak contexts per transport",
            "burst ended (s)",
            "at the floor (s)",
            "contexts at the end",
            "contexts freed",
            "sweeps / parks",
        ],
    );
    let mut series = Vec::new();
    for on in [true, false] {
        let s = TimelineSpec {
            conns: 16,
            depth: 32,
            rounds: 3,
            idle_for: after * 4,
            sample: Duration::from_millis(5),
            idle_shrink: on.then_some(IdleShrink {
                after,
                floor: FLOOR,
            }),
        };
        let label = if on {
            format!("idle shrink after {} ms, floor {FLOOR}", after.as_millis())
        } else {
            "no shrink (the kernel: freed at teardown)".into()
        };
        match scale::shrink_timeline(&s) {
            Ok(tl) => {
                t.row(row(&label, &tl));
                series.push(tl.series(label));
            }
            Err(e) => t.row(vec![label, format!("failed: {e}")]),
        }
    }
    t.note = format!(
        "16 connections whose Send completions lag 1 ms (a mock NIC thread per pair), 3 \
         rounds of 32 pipelined calls each, then {} ms of silence; the mean send-context pool \
         per transport sampled every 5 ms. The sweeper shrinks a transport with no reply for \
         a full period, so between one and two periods after the burst.",
        (after * 4).as_millis()
    );
    (t, series)
}

fn row(label: &str, tl: &Timeline) -> Vec<String> {
    vec![
        label.into(),
        format!("{:.1}", tl.peak),
        format!("{:.3}", tl.burst_end),
        tl.at_floor
            .map_or("-".into(), |s| format!("{s:.3} (+{:.3})", s - tl.burst_end)),
        format!("{:.1}", tl.end),
        tl.shrunk.to_string(),
        format!("{} / {}", tl.sweep.sweeps, tl.sweep.parks),
    ]
}

/// Writes the shrink plot.
pub(super) fn b7_svg(
    path: &std::path::Path,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    plot::pool_size_svg(
        path,
        "B7: mean send contexts per transport, burst then idle",
        series,
        &[(format!("floor {FLOOR}"), f64::from(FLOOR))],
    )
}
