//! Load generator: N connections x M calls in flight against the server
//! runtime on the mock NIC, a size mix through every chunk type, for each
//! release policy asked for. Prints calls/s, latency percentiles, CPU time
//! per call (process user+sys / calls: both ends), peak RSS, and the
//! send-context counters.
//!
//! `cargo run --release --example loadgen -- --conns 1,16,64 --inflight 8 --secs 2 --policies deferred,workqueue,inline --unmap-ns 1000`
//!
//! `--mode poll-group` runs the server on run-to-completion poll groups
//! (`--groups`, default one per CPU) instead of its worker pool; the
//! table then also shows the server's thread wakeups per call.

#[path = "common/echo.rs"]
mod echo;

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient, Ticket};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{DeviceConfig, MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode};
use rdmaxprt::service::Dispatcher;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mix {
    /// 64 B inline echoes only.
    Small,
    /// 0 B .. 1 MiB through inline, Read, Write and Reply chunks.
    Mixed,
    /// 64 KiB READs through Write chunks.
    Large,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ModeArg {
    /// Pollers hand each call to a worker thread (the kernel's way).
    ThreadPool,
    /// Run to completion on poll-group threads.
    PollGroup,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum PolicyArg {
    Deferred,
    Workqueue,
    Inline,
}

#[derive(Parser, Debug)]
#[command(about = "RPC-over-RDMA load generator on the mock NIC")]
struct Args {
    /// Connection counts to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    conns: Vec<usize>,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Release policies to run (comma-separated).
    #[arg(long, value_delimiter = ',', value_enum, default_value = "deferred")]
    policies: Vec<PolicyArg>,
    /// Busy-wait per server DMA unmap, ns (strict IOMMU stand-in).
    #[arg(long, default_value_t = 0)]
    unmap_ns: u64,
    /// Size mix.
    #[arg(long, value_enum, default_value_t = Mix::Mixed)]
    mix: Mix,
    /// Server worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// How the server runs calls.
    #[arg(long, value_enum, default_value_t = ModeArg::ThreadPool)]
    mode: ModeArg,
    /// Poll-group threads (--mode poll-group; 0: one per CPU).
    #[arg(long, default_value_t = 0)]
    groups: usize,
    /// Keep glibc's default mmap/trim thresholds. By default they are
    /// raised so 1 MiB payload buffers are reused from the heap instead of
    /// being mmapped, faulted in and unmapped on every call: that churn
    /// (~100 us per 1 MiB call here) would swamp what the transport does.
    #[arg(long)]
    malloc_defaults: bool,
    /// Internal: run exactly one (policy, conns) and print its row.
    #[arg(long, hide = true)]
    row_only: bool,
}

/// One call of the mix: procedure, argument bytes, options, and the bytes
/// expected back (results or bulk).
struct Op {
    proc: u32,
    args: Vec<u8>,
    write_chunk: Option<u32>,
    reply_chunk: Option<u32>,
    position_zero: bool,
    expect: usize,
}

fn op(mix: Mix, n: u64) -> Op {
    let echo = |len: usize, reply: bool, pz: bool| Op {
        proc: echo::PROC_ECHO,
        args: vec![n as u8; len],
        write_chunk: None,
        reply_chunk: reply.then_some(len as u32 + 64),
        position_zero: pz,
        expect: len,
    };
    let read = |len: usize| Op {
        proc: echo::PROC_READ,
        args: (len as u32).to_be_bytes().to_vec(),
        write_chunk: Some(len as u32),
        reply_chunk: None,
        position_zero: false,
        expect: len,
    };
    match mix {
        Mix::Small => echo(64, false, false),
        Mix::Large => read(64 << 10),
        Mix::Mixed => match n % 20 {
            0 => Op {
                proc: echo::PROC_NULL,
                args: Vec::new(),
                write_chunk: None,
                reply_chunk: None,
                position_zero: false,
                expect: 0,
            },
            1..=11 => echo(64, false, false),
            12 | 13 => echo(4096, true, false),
            14 | 15 => echo(16 << 10, true, true),
            16..=18 => read(64 << 10),
            _ => read(1 << 20),
        },
    }
}

struct Row {
    policy: Policy,
    conns: usize,
    calls: u64,
    errors: u64,
    secs: f64,
    hist: Histogram<u64>,
    cpu_us_per_call: f64,
    peak_rss_mib: f64,
    report: rdmaxprt::runtime::ServerReport,
    /// Server thread wakeups (pollers, groups, workers that took a job).
    wakeups: u64,
}

/// Resets the kernel's peak-RSS mark (VmHWM) so each run reports its own
/// peak (Linux: writing 5 to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM in MiB, from /proc/self/status (0 if unreadable).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Process CPU time (user + sys), seconds.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads
    // nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn client_loop(
    mut c: RpcClient<rdmaxprt::mock::MockQp, MockDevice>,
    mix: Mix,
    inflight: usize,
    stop: &AtomicBool,
    calls: &AtomicU64,
    errors: &AtomicU64,
) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut window: VecDeque<(Ticket, Instant, usize, bool)> = VecDeque::new();
    let mut n = 0u64;
    loop {
        while window.len() < inflight && !stop.load(Ordering::Relaxed) {
            let o = op(mix, n);
            n += 1;
            let opts = CallOptions {
                write_chunk: o.write_chunk,
                reply_chunk: o.reply_chunk,
                force_position_zero: o.position_zero,
                ..CallOptions::default()
            };
            match c.start_call(echo::PROG, echo::VERS, o.proc, &o.args, &opts) {
                Ok(t) => window.push_back((t, Instant::now(), o.expect, o.write_chunk.is_some())),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        let Some((t, at, expect, bulk)) = window.pop_front() else {
            break;
        };
        match c.wait(t) {
            Ok(r) => {
                let got = if bulk {
                    r.bulk.as_ref().map_or(0, Vec::len)
                } else {
                    r.results.len()
                };
                if got == expect {
                    let _ = hist.record(at.elapsed().as_micros().max(1) as u64);
                    calls.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    c.close();
    hist
}

fn run(args: &Args, policy: Policy, conns: usize) -> Row {
    let server_dev = MockDevice::with_config(DeviceConfig {
        map_cost: Duration::ZERO,
        unmap_cost: Duration::from_nanos(args.unmap_ns),
    });
    let qcfg = QpConfig {
        sq_depth: 256,
        rq_depth: 256,
        ..QpConfig::default()
    };
    let (connector, listener) = MockNetwork::new(server_dev.clone(), qcfg);
    let server = Arc::new(Server::start(
        ServerConfig {
            mode: match args.mode {
                ModeArg::ThreadPool => ServerMode::ThreadPool,
                ModeArg::PollGroup => ServerMode::PollGroup,
            },
            groups: args.groups,
            workers: args.workers,
            policy,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(echo::Echo::default()),
    ));
    let accept = server.serve(listener);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    reset_peak_rss();
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let clients: Vec<_> = (0..conns)
        .map(|_| {
            let (connector, stop, calls, errors) = (
                connector.clone(),
                stop.clone(),
                calls.clone(),
                errors.clone(),
            );
            let (mix, inflight) = (args.mix, args.inflight);
            std::thread::spawn(move || {
                let dev = MockDevice::new();
                let qp = connector.connect(&dev).expect("connect");
                let cfg = ClientConfig {
                    credits: inflight as u32,
                    ..ClientConfig::default()
                };
                let c = RpcClient::new(qp, dev, cfg).expect("client");
                client_loop(c, mix, inflight, &stop, &calls, &errors)
            })
        })
        .collect();
    drop(connector);
    let pb = (args.secs > 1.0).then(|| {
        let pb = ProgressBar::new((args.secs * 10.0) as u64);
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {msg}").expect("progress template"),
        );
        pb.set_prefix(format!("{policy} x{conns}"));
        pb
    });
    let deadline = start + Duration::from_secs_f64(args.secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(pb) = &pb {
            pb.inc(1);
            pb.set_message(format!("{} calls", calls.load(Ordering::Relaxed)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    for c in clients {
        let _ = hist.add(c.join().expect("client thread"));
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    accept.join().expect("listener");
    let report = server.report();
    let server = Arc::try_unwrap(server).expect("server still shared");
    let final_report = server.shutdown();
    let cpu1 = cpu_secs();
    let rss = peak_rss_mib();
    let calls = calls.load(Ordering::Relaxed);
    if let Err(e) = server_dev.tracker().check() {
        eprintln!("TRACKER: {e}");
    }
    Row {
        policy,
        conns,
        calls,
        errors: errors.load(Ordering::Relaxed),
        secs,
        hist,
        cpu_us_per_call: (cpu1 - cpu0) * 1e6 / calls.max(1) as f64,
        peak_rss_mib: rss,
        report: rdmaxprt::runtime::ServerReport {
            stats: final_report.stats,
            ..report
        },
        wakeups: report.poller_wakeups + report.worker_wakeups,
    }
}

/// One table row.
fn row(r: &Row) -> String {
    let s = &r.report.stats;
    format!(
        "| {} | {} | {:.0} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {:.1} | {} | {} | {} | {:.2} |",
        r.policy,
        r.conns,
        r.calls as f64 / r.secs,
        r.hist.value_at_quantile(0.5),
        r.hist.value_at_quantile(0.99),
        r.hist.value_at_quantile(0.999),
        r.cpu_us_per_call,
        r.peak_rss_mib,
        s.pool_size,
        r.report.max_pool_size,
        s.batch_mean(),
        s.backstop_enqueues,
        s.cap_hits,
        r.errors,
        r.wakeups as f64 / r.calls.max(1) as f64
    )
}

fn main() {
    let args = Args::parse();
    if !args.malloc_defaults {
        // SAFETY: mallopt only tunes glibc's allocator thresholds; it runs
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        }
    }
    let policy_of = |p: &PolicyArg| match p {
        PolicyArg::Deferred => Policy::Deferred,
        PolicyArg::Workqueue => Policy::Workqueue,
        PolicyArg::Inline => Policy::Inline,
    };
    if args.row_only {
        // A child: exactly one run, one row.
        let r = run(&args, policy_of(&args.policies[0]), args.conns[0]);
        println!("{}", row(&r));
        return;
    }
    println!(
        "loadgen on the mock NIC: {} cores, mix {:?}, {} in flight per connection, {:.1}s per run, unmap {} ns, mode {:?}, {} workers, malloc {}, one process per row",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.mix, args.inflight, args.secs, args.unmap_ns, args.mode, args.workers,
        if args.malloc_defaults { "glibc defaults" } else { "mmap/trim thresholds raised" }
    );
    println!("| policy | conns | calls/s | p50 us | p99 us | p999 us | CPU us/call | peak RSS MiB | pool (sum) | largest pool | ctx/drain | backstop enqueues | cap hits | errors | server wakeups/call |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("own executable");
    let mix = format!("{:?}", args.mix).to_lowercase();
    let mode = match args.mode {
        ModeArg::ThreadPool => "thread-pool",
        ModeArg::PollGroup => "poll-group",
    };
    for p in &args.policies {
        let policy = format!("{:?}", p).to_lowercase();
        for &conns in &args.conns {
            // Each row in a fresh process, so peak RSS and the allocator's
            // state belong to that run alone.
            let mut cmd = std::process::Command::new(&exe);
            cmd.args([
                "--row-only",
                "--policies",
                &policy,
                "--conns",
                &conns.to_string(),
            ])
            .args([
                "--inflight",
                &args.inflight.to_string(),
                "--secs",
                &args.secs.to_string(),
            ])
            .args(["--unmap-ns", &args.unmap_ns.to_string(), "--mix", &mix])
            .args(["--workers", &args.workers.to_string()])
            .args(["--mode", mode, "--groups", &args.groups.to_string()]);
            if args.malloc_defaults {
                cmd.arg("--malloc-defaults");
            }
            // stderr stays the terminal's, so the child's progress bar shows.
            match cmd.stderr(std::process::Stdio::inherit()).output() {
                Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
                Ok(o) => println!(
                    "| {policy} | {conns} | run failed ({}), see stderr |",
                    o.status
                ),
                Err(e) => println!("| {policy} | {conns} | could not start: {e} |"),
            }
        }
    }
}
