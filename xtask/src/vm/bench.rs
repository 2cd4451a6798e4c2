//! `vm-bench`: our verbs path (backend-verbs/examples/echo_bench) beside
//! perftest's `ib_send_lat` / `ib_send_bw`, on the same rxe0 in one VM boot,
//! at 64 B and 64 KiB. Prints a table with the ratios (ours / perftest) and
//! writes it, with the raw lines, to `target/vm-bench/report.md`.
//!
//! Not a test: under TCG the numbers are slow and noisy; only the ratios
//! mean something, and even they move by tens of percent between runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::time::Instant;

use super::host::{self, Res};
use super::initramfs::GuestPair;
use super::{
    boot_pairs, build_examples, fetch, loadavg, target_dir, workspace_root, write_report,
    GuestProgram, PairsBoot, Plan,
};
use crate::VmBenchArgs;

/// The server address (dummy0 in the guest).
const ADDR: &str = "192.168.77.1";

/// One message size and its iteration counts.
struct Size {
    bytes: usize,
    lat_iters: u32,
    bw_iters: u32,
    /// Every how many sends of the rate test are signaled: ib_send_bw's
    /// CQ moderation at this size (its header: 100 at 64 B, 1 at 64 KiB).
    signal_every: u32,
}

fn sizes(quick: bool) -> Vec<Size> {
    let d = if quick { 5 } else { 1 };
    vec![
        Size {
            bytes: 64,
            lat_iters: 1000 / d,
            bw_iters: 2000 / d,
            signal_every: 100,
        },
        Size {
            bytes: 65536,
            lat_iters: 200 / d,
            bw_iters: 500 / d,
            signal_every: 1,
        },
    ]
}

fn perftest_pair(
    name: String,
    tool: &str,
    port: u16,
    size: usize,
    iters: u32,
    event: bool,
) -> GuestPair {
    // -x: the IPv4-mapped GID (init.sh finds its index); -F: no CPU
    // frequency check (meaningless in a VM); -e: CQ events.
    let ev = if event { " -e" } else { "" };
    let cmd = format!("{tool} -d rxe0 -x $RXE_GID -F{ev} -p {port} -s {size} -n {iters}");
    GuestPair {
        name,
        client: format!("{cmd} {ADDR}"),
        server: cmd,
        check: String::new(),
    }
}

/// How the programs wait for completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Busy-poll the CQ (perftest's default).
    Busy,
    /// Sleep on the completion channel (perftest `-e`, echo_bench `--event`).
    Event,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Busy => "busy-poll",
            Mode::Event => "event",
        }
    }
}

/// The modes `--mode` names.
fn modes(arg: &str) -> Res<Vec<Mode>> {
    match arg {
        "both" => Ok(vec![Mode::Busy, Mode::Event]),
        "busy" => Ok(vec![Mode::Busy]),
        "event" => Ok(vec![Mode::Event]),
        other => Err(format!("--mode must be both, busy or event, not {other:?}")),
    }
}

/// The pairs of `rounds` rounds, each round every tool once (perftest and
/// ours alternate, so a slow stretch of the host hits both); run `r` of a
/// pair is named `.../r{r}`.
fn pairs(sizes: &[Size], modes: &[Mode], rounds: u32) -> Vec<GuestPair> {
    let mut out = Vec::new();
    let mut port = 18600;
    let mut echo_port = 7200;
    for r in 1..=rounds {
        for &mode in modes {
            round(&mut out, sizes, mode, r, &mut port, &mut echo_port);
        }
    }
    out
}

/// One round of `mode`: perftest at each size, then echo_bench.
fn round(
    out: &mut Vec<GuestPair>,
    sizes: &[Size],
    mode: Mode,
    r: u32,
    port: &mut u16,
    echo_port: &mut u16,
) {
    let event = mode == Mode::Event;
    for s in sizes {
        for (tool, iters) in [("ib_send_lat", s.lat_iters), ("ib_send_bw", s.bw_iters)] {
            // perftest 4.5's ib_send_lat -e prints "inf" for every latency.
            if event && tool == "ib_send_lat" {
                continue;
            }
            out.push(perftest_pair(
                format!("bench/{}/{tool}_{}/r{r}", mode.name(), s.bytes),
                tool,
                *port,
                s.bytes,
                iters,
                event,
            ));
            *port += 1;
        }
    }
    let join = |f: &dyn Fn(&Size) -> String| sizes.iter().map(f).collect::<Vec<_>>().join(",");
    out.push(GuestPair {
        name: format!("bench/{}/echo_bench/r{r}", mode.name()),
        server: String::new(),
        // The guest's clocksource, for reading the numbers: each
        // Instant::now() is a vDSO read with tsc, a syscall without.
        client: format!(
            "echo clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource); \
             /examples/echo_bench -a {ADDR} -p {} --sizes {} --lat-iters {} --bw-iters {} --signal-every {}{}",
            *echo_port,
            join(&|s| s.bytes.to_string()),
            join(&|s| s.lat_iters.to_string()),
            join(&|s| s.bw_iters.to_string()),
            join(&|s| s.signal_every.to_string()),
            if event { " --event" } else { "" },
        ),
        check: String::new(),
    });
    *echo_port += 1;
}

/// The client's lines of each `bench/` pair, from the serial log.
fn bench_lines(log: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix("BENCH ") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(' ') else {
            continue;
        };
        if let Some(text) = rest.strip_prefix("client: ") {
            m.entry(name.to_owned()).or_default().push(text.to_owned());
        }
    }
    m
}

/// perftest's result row for `size`: the header's column names (up to the
/// first one with a space in it) mapped to the row's numbers.
fn perftest_row(lines: &[String], size: usize) -> Option<(Vec<String>, Vec<f64>)> {
    let h = lines
        .iter()
        .position(|l| l.trim_start().starts_with("#bytes"))?;
    let header: Vec<String> = lines[h].split_whitespace().map(str::to_owned).collect();
    let row = lines[h + 1..].iter().find_map(|l| {
        let nums: Vec<f64> = l
            .split_whitespace()
            .map_while(|t| t.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect();
        (nums.len() >= 3 && nums[0] as usize == size).then_some(nums)
    })?;
    Some((header, row))
}

/// ib_send_lat: (typical, average) one-way latency in us.
fn perftest_lat(lines: &[String], size: usize) -> Option<(f64, f64)> {
    let (h, row) = perftest_row(lines, size)?;
    let col = |p: &str| {
        h.iter()
            .position(|c| c.starts_with(p))
            .and_then(|i| row.get(i).copied())
    };
    Some((col("t_typical")?, col("t_avg")?))
}

/// ib_send_bw: (BW average in MB/s as perftest counts them (MiB), Mpps):
/// the last two columns of "#bytes #iterations BW peak BW average MsgRate".
fn perftest_bw(lines: &[String], size: usize) -> Option<(f64, f64)> {
    let (_, row) = perftest_row(lines, size)?;
    (row.len() >= 5).then(|| (row[row.len() - 2], row[row.len() - 1]))
}

/// The median of the values present and positive (the mean of the middle
/// two for an even count); None if there is none.
fn median(vals: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    // perftest prints 0 or inf when its own clock calibration fails.
    let mut v: Vec<f64> = vals
        .flatten()
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Our `ECHO <kind> size=<n> key=value ...` line for `size`, as a map.
fn echo_line(lines: &[String], kind: &str, size: usize) -> Option<BTreeMap<String, f64>> {
    lines.iter().find_map(|l| {
        let mut w = l.strip_prefix("ECHO ")?.split_whitespace();
        if w.next()? != kind {
            return None;
        }
        let kv: BTreeMap<String, f64> = w
            .filter_map(|t| t.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect();
        (kv.get("size").copied()? as usize == size).then_some(kv)
    })
}

fn human(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// One row of the table.
struct Row {
    mode: Mode,
    size: usize,
    metric: &'static str,
    better: &'static str,
    ours: Option<f64>,
    theirs: Option<f64>,
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "n/a".into(),
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| mode | size | metric | better | ours (echo_bench) | perftest | ours / perftest |\n\
         |---|---|---|---|---:|---:|---:|\n",
    );
    for r in rows {
        let ratio = match (r.ours, r.theirs) {
            (Some(o), Some(p)) if p > 0.0 => format!("{:.2}", o / p),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.mode.name(),
            human(r.size),
            r.metric,
            r.better,
            fmt_num(r.ours),
            fmt_num(r.theirs),
            ratio
        );
    }
    t
}

/// Run the benchmark VM; Ok(true) iff every number was measured.
pub fn vm_bench(a: &VmBenchArgs) -> Res<bool> {
    let t0 = Instant::now();
    host::check_prerequisites()?;
    let root = workspace_root();
    let target = target_dir(&root);
    let cache = target.join("vm-cache");
    fs::create_dir_all(&cache).map_err(|e| format!("mkdir {}: {e}", cache.display()))?;
    let guest = fetch::fetch(&cache)?;
    let examples = build_examples(
        &root,
        &[GuestProgram::example("rdmaxprt-verbs", "echo_bench", None)],
        true,
    )?;
    let sizes = sizes(a.quick);
    let modes = modes(&a.mode)?;
    let load_before = loadavg();
    let plan = Plan {
        tests: Vec::new(),
        examples,
        pairs: pairs(&sizes, &modes, a.rounds.max(1)),
    };
    let boot = PairsBoot {
        timeout: a.timeout,
        pair_timeout: a.pair_timeout,
        vm: &a.vm,
        verbose: a.verbose,
    };
    let (outcome, all_ran, log_path, log) =
        boot_pairs(&cache, "bench-run", &guest, &plan, boot, t0)?;
    let lines = bench_lines(&log);
    let rounds = a.rounds.max(1);
    // Every round's output of a pair, in round order.
    let runs = |name: &str| -> Vec<Vec<String>> {
        (1..=rounds)
            .map(|r| {
                lines
                    .get(&format!("{name}/r{r}"))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };

    let mut rows = Vec::new();
    for (&mode, s) in modes.iter().flat_map(|m| sizes.iter().map(move |s| (m, s))) {
        let m = mode.name();
        let ours = runs(&format!("bench/{m}/echo_bench"));
        let b = s.bytes;
        let lat: Vec<_> = runs(&format!("bench/{m}/ib_send_lat_{b}"))
            .iter()
            .map(|l| perftest_lat(l, b))
            .collect();
        let bw: Vec<_> = runs(&format!("bench/{m}/ib_send_bw_{b}"))
            .iter()
            .map(|l| perftest_bw(l, b))
            .collect();
        let ol: Vec<_> = ours.iter().map(|l| echo_line(l, "lat", b)).collect();
        let ob: Vec<_> = ours.iter().map(|l| echo_line(l, "bw", b)).collect();
        // The median over the rounds of one number of each run.
        let of = |v: &[Option<BTreeMap<String, f64>>], k: &str, scale: f64| {
            median(
                v.iter()
                    .map(|m| m.as_ref().and_then(|m| m.get(k)).map(|x| x * scale)),
            )
        };
        let pt =
            |v: &[Option<(f64, f64)>], f: fn((f64, f64)) -> f64| median(v.iter().map(|x| x.map(f)));
        let lat_row = [
            (
                "latency, typical (us, one-way = RTT/2)",
                of(&ol, "typical_us", 1.0),
                pt(&lat, |l| l.0),
            ),
            (
                "latency, average (us, one-way)",
                of(&ol, "avg_us", 1.0),
                pt(&lat, |l| l.1),
            ),
        ];
        let rate_row = [
            (
                "message rate (k msg/s)",
                of(&ob, "mpps", 1e3),
                pt(&bw, |v| v.1 * 1e3),
            ),
            ("bandwidth (MiB/s)", of(&ob, "mib_s", 1.0), pt(&bw, |v| v.0)),
        ];
        for (better, group) in [("lower", lat_row), ("higher", rate_row)] {
            for (metric, ours, theirs) in group {
                rows.push(Row {
                    mode,
                    size: b,
                    metric,
                    better,
                    ours,
                    theirs,
                });
            }
        }
    }
    // Every number we measured, and perftest's wherever it ran.
    let complete = rows.iter().all(|r| {
        r.ours.is_some() && (r.theirs.is_some() || (r.mode == Mode::Event && r.better == "lower"))
    });
    let tbl = table(&rows);
    println!();
    println!(
        "== vm-bench: our verbs path vs perftest on rxe0 ({})",
        outcome.accel
    );
    print!("{tbl}");

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# vm-bench: rdmaxprt-verbs echo vs perftest on Soft-RoCE\n"
    );
    let _ = writeln!(
        md,
        "One VM boot ({}, {} vCPUs, stock Debian kernel {}), rxe0 on dummy0, server and \
         client in the same guest; {} rounds, perftest and ours alternating, each number the \
         median over the rounds; VM run {:.1}s; host load average before/after: {} / {}. \
         Under TCG the absolute numbers are those of an emulated CPU: read the ratios, and \
         expect them to move between runs. Busy-poll mode needs a host core per polling \
         vCPU: on a loaded host both tools fall to the scheduler's time slice (~4 ms).\n",
        outcome.accel,
        a.vm.smp,
        guest.kver,
        rounds,
        outcome.vm_secs,
        load_before,
        loadavg()
    );
    md.push_str(&tbl);
    md.push_str(
        "\nOurs: `backend-verbs/examples/echo_bench` (SEND/RECV over an rdma_cm RC connection, \
         CQ busy-polled or event-driven as the mode says; latency = ping-pong RTT/2, median as \"typical\"; rate = windowed \
         SEND stream, 128 in flight, signaled as often as ib_send_bw's CQ moderation, against 512 posted receives that land in a page-sized cycle buffer like perftest's; \
         no inline sends, as perftest on rxe (`Max inline data : 0[B]`); latency timed with the TSC like perftest's \
         cycle counter, since the guest's clocksource under TCG is hpet, whose reads are system calls). Perftest: the same sizes \
         and iteration counts, `-F`, GID by index (`-x`); in event mode only ib_send_bw \
         (perftest 4.5's `ib_send_lat -e` prints `inf` for every latency), so the event \
         latency rows have ours alone.\n\n## Commands (in the guest)\n\n",
    );
    for p in &plan.pairs {
        if p.server.is_empty() {
            let _ = writeln!(md, "- `{}`", p.client);
        } else {
            let _ = writeln!(md, "- `{}` & then `{}`", p.server, p.client);
        }
    }
    md.push_str("\n## Raw client output\n\n```text\n");
    for (name, ls) in &lines {
        for l in ls.iter().filter(|l| {
            l.starts_with("ECHO ")
                || l.starts_with("clocksource ")
                || ["TX depth", "CQ Moderation", "Max inline data", "Mtu"]
                    .iter()
                    .any(|k| l.contains(k))
                || l.trim_start().starts_with("#bytes")
                || l.split_whitespace()
                    .next()
                    .is_some_and(|t| t.parse::<u64>().is_ok())
        }) {
            let _ = writeln!(md, "{name}: {l}");
        }
    }
    md.push_str("```\n");
    write_report(
        &target,
        "vm-bench",
        &md,
        complete && all_ran,
        t0,
        outcome.vm_secs,
        &log_path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn parses_perftest_lat() {
        let l = v(&[
            "---------------------------------------------------------------------------------------",
            " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ",
            " 64       1000          20.11          250.3        27.80             30.12           8.01            60.2                   200.1",
            "---------------------------------------------------------------------------------------",
        ]);
        assert_eq!(perftest_lat(&l, 64), Some((27.80, 30.12)));
        assert_eq!(perftest_lat(&l, 65536), None);
    }

    #[test]
    fn parses_perftest_bw() {
        let l = v(&[
            " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]",
            " 65536      500              26.50              26.12                0.000418",
        ]);
        assert_eq!(perftest_bw(&l, 65536), Some((26.12, 0.000418)));
    }

    #[test]
    fn parses_echo_lines() {
        let l = v(&[
            "ECHO lat size=64 iters=1000 typical_us=40.00 avg_us=45.50 min_us=30.00",
            "ECHO bw size=64 iters=2000 window=128 secs=0.5 mpps=0.004 mib_s=0.24",
        ]);
        assert_eq!(echo_line(&l, "lat", 64).unwrap()["typical_us"], 40.0);
        assert_eq!(echo_line(&l, "bw", 64).unwrap()["mpps"], 0.004);
        assert!(echo_line(&l, "bw", 65536).is_none());
    }

    #[test]
    fn median_of_what_was_measured() {
        assert_eq!(
            median([Some(3.0), None, Some(1.0), Some(2.0)].into_iter()),
            Some(2.0)
        );
        assert_eq!(median([Some(4.0), Some(1.0)].into_iter()), Some(2.5));
        assert_eq!(
            median([None, Some(f64::INFINITY), Some(0.0)].into_iter()),
            None
        );
    }

    #[test]
    fn rounds_alternate_tools_with_distinct_ports() {
        let p = pairs(&sizes(true), &[Mode::Busy], 2);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 10);
        assert_eq!(names[4], "bench/busy-poll/echo_bench/r1");
        assert_eq!(names[5], "bench/busy-poll/ib_send_lat_64/r2");
        assert!(p[4].client.contains("-p 7200 ") && p[9].client.contains("-p 7201 "));
        assert!(p[0].client.contains("-p 18600 ") && p[5].client.contains("-p 18604 "));
        assert!(p[4].client.contains("--signal-every 100,1"));
    }

    #[test]
    fn bench_lines_keep_client_output() {
        let log = "BENCH bench/x server: a\nBENCH bench/x client: ECHO y\nother\n";
        let m = bench_lines(log);
        assert_eq!(m["bench/x"], vec!["ECHO y".to_owned()]);
    }
}
