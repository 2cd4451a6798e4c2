//! Soak and teardown at volume on the mock NIC (not a timed test: a program
//! that runs until its volume is done and checks invariants as it goes).
//!
//! - `calls`: RPCs over many connections at once, connections closed and
//!   opened while running, all three release policies, every chunk type,
//!   seeded faults rotating per connection, calls the server drops (client
//!   timeouts). Every reply is checked byte for byte; every connection's
//!   teardown is checked (no stuck receive, reclaimed send contexts ==
//!   partial posts, both devices' DMA trackers clean); a transport still
//!   open at its end must be quiescent with completions == releases == replies
//!   posted. A watchdog fails the run when nothing progresses for a while.
//!   A failure prints the one command that replays the failing connection.
//! - `teardown`: cycles of closing a transport with replies posted but not
//!   completed and workers parked waiting for Send Queue space: every cycle
//!   must end with the workers back, no leak and no hang.
//!
//! `cargo run --release --example soak -- calls --calls 10000000 --conns 64`
//! `cargo run --release --example soak -- teardown --cycles 1000`
//!
//! CI (`.ci/test`) runs the short versions: 1e5 calls and 100 cycles.
//!
//! Long runs (2 cores shared with other builds, so calls/s is a floor):
//! - `calls --calls 10000000 --seed 1` with issue 8 defect d fixed (this
//!   branch merged with the Workqueue fix): 10,000,958 calls in 164.0 s
//!   (60,993 calls/s), 9,955,723 byte-exact, 44,073 failed with their
//!   connection, 1,162 client timeouts; 12,803 connections churned (6,976
//!   closed by faults, 1,819 with calls in flight), 8,674 server waits for
//!   SQ space; faults injected: 1,470 post failures, 1,284 partial chains,
//!   1,078 error completions, 1,138 QP errors, 1,084 disconnects,
//!   2,557,483 delayed completions; 1,036 send contexts reclaimed (==
//!   partial posts), 0 stuck receives, every tracker clean.
//! - Without that fix the same command stops after about 300 s: a
//!   Workqueue transport waits at its pool cap with every context free
//!   (defect d). `calls --policies workqueue --wq-cap 4 --inflight 8`
//!   shows it in seconds.
//! - `teardown --cycles 1000`: 0.4 s, every close with Sends in flight
//!   (min 3, 5,015 in all) and workers parked for SQ space (1,995 waits);
//!   0 leaks, 0 hangs.

#[path = "../../tests/support/worker.rs"]
mod worker;

mod conn;
mod lane;
mod plan;
mod teardown;
mod totals;
mod xprt;

use clap::{Parser, Subcommand, ValueEnum};
use conn::{ConnConfig, Failure};
use indicatif::{ProgressBar, ProgressStyle};
use lane::{Lane, Run};
use rdmaxprt::lifecycle::Policy;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum PolicyArg {
    Deferred,
    Workqueue,
    Inline,
}

impl PolicyArg {
    fn policy(self) -> Policy {
        match self {
            PolicyArg::Deferred => Policy::Deferred,
            PolicyArg::Workqueue => Policy::Workqueue,
            PolicyArg::Inline => Policy::Inline,
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Soak and teardown runs on the mock NIC")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// RPCs over churning connections with rotating faults.
    Calls(CallsArgs),
    /// Close cycles with Sends in flight and SQ waiters parked.
    Teardown(teardown::Args),
}

#[derive(clap::Args, Debug, Clone)]
struct CallsArgs {
    /// Calls to make in all (the run plans connections until this many).
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    /// Connections open at once.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Driver threads (each with its own completion poller thread).
    #[arg(long, default_value_t = 2)]
    lanes: usize,
    /// Seed of everything the run chooses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Release policies, rotated per connection.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "deferred,workqueue,inline"
    )]
    policies: Vec<PolicyArg>,
    /// Fewest calls on one connection.
    #[arg(long, default_value_t = 200)]
    min_conn_calls: u64,
    /// Most calls on one connection.
    #[arg(long, default_value_t = 2000)]
    max_conn_calls: u64,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// Client timeout, ms (what a dropped call waits).
    #[arg(long, default_value_t = 20)]
    timeout_ms: u64,
    /// A call unanswered this long on a live connection fails the run.
    #[arg(long, default_value_t = 20)]
    hang_secs: u64,
    /// Fail when no call resolves and no connection retires for this long.
    #[arg(long, default_value_t = 60)]
    watchdog_secs: u64,
    /// Send-context cap of Workqueue transports (default: the transport's
    /// `sq_depth + credits`); a small cap makes releases lagging behind
    /// the workqueue hit it.
    #[arg(long)]
    wq_cap: Option<u32>,
    /// On a hang, wait this long after the dump before exiting (time to
    /// attach a debugger).
    #[arg(long, default_value_t = 0)]
    hang_pause_secs: u64,
    /// Replay one connection (its serial) of the run with this seed.
    #[arg(long)]
    only: Option<u64>,
}

impl CallsArgs {
    /// The command that reruns the whole run (for a failure that needs the
    /// load of the others, e.g. a race).
    fn rerun(&self) -> String {
        let mut s = self.replay(0).replace(" --only 0", "");
        let _ = write!(
            s,
            " --calls {} --conns {} --lanes {}",
            self.calls, self.conns, self.lanes
        );
        s
    }

    /// The command that replays connection `serial` of this run.
    fn replay(&self, serial: u64) -> String {
        let p: Vec<String> = self
            .policies
            .iter()
            .map(|p| format!("{p:?}").to_lowercase())
            .collect();
        let cap = self
            .wq_cap
            .map(|c| format!(" --wq-cap {c}"))
            .unwrap_or_default();
        format!(
            "cargo run --release --example soak -- calls --seed {} --only {serial} --policies {} --min-conn-calls {} --max-conn-calls {} --inflight {} --timeout-ms {} --hang-secs {}{cap}",
            self.seed,
            p.join(","),
            self.min_conn_calls,
            self.max_conn_calls,
            self.inflight,
            self.timeout_ms,
            self.hang_secs
        )
    }
}

/// A progress bar on a terminal (stderr), nothing otherwise.
fn progress(len: u64, what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
        .expect("progress template");
    pb.set_style(style);
    pb.set_prefix(what.to_string());
    Some(pb)
}

fn fail(args: &CallsArgs, f: &Failure) -> ! {
    eprintln!("SOAK FAILED on connection {}: {}", f.serial, f.what);
    eprintln!("replay: {}", args.replay(f.serial));
    eprintln!("whole run: {}", args.rerun());
    std::process::exit(1);
}

fn calls(args: CallsArgs) {
    let lanes = args.lanes.clamp(1, args.conns.max(1));
    let run = Run::new(
        args.seed,
        args.policies.iter().map(|p| p.policy()).collect(),
        (
            args.min_conn_calls.max(1),
            args.max_conn_calls.max(args.min_conn_calls.max(1)),
        ),
        args.calls,
        args.only,
        ConnConfig {
            inflight: args.inflight.max(1),
            timeout: Duration::from_millis(args.timeout_ms),
            hang: Duration::from_secs(args.hang_secs),
            wq_cap: args.wq_cap,
        },
    );
    let slots: Vec<usize> = (0..lanes)
        .map(|i| args.conns / lanes + usize::from(i < args.conns % lanes))
        .collect();
    println!(
        "soak calls: seed {}, {} calls, {} connections on {} lanes, policies {:?}, {}..={} calls per connection, {} in flight",
        args.seed, args.calls, args.conns, lanes, args.policies, run.conn_calls.0, run.conn_calls.1, args.inflight
    );
    let lane_state: Vec<Lane> = (0..lanes).map(|_| Lane::default()).collect();
    let start = Instant::now();
    let failure = std::thread::scope(|s| {
        let drivers: Vec<_> = lane_state
            .iter()
            .zip(&slots)
            .map(|(l, &n)| {
                let run = &run;
                s.spawn(move || l.poller());
                s.spawn(move || {
                    let r = l.drive(run, n);
                    if r.is_err() {
                        run.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        watch(&args, &run, &lane_state, &drivers);
        let mut failure = None;
        for d in drivers {
            match d.join() {
                Ok(Ok(())) => {}
                Ok(Err(f)) => failure = failure.or(Some(f)),
                Err(_) => {
                    failure = failure.or(Some(Failure {
                        serial: u64::MAX,
                        what: "a lane panicked (see above)".into(),
                    }))
                }
            }
        }
        failure
    });
    if let Some(f) = failure {
        fail(&args, &f);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{}", run.totals.report(secs));
    println!("wall time: {secs:.1} s");
}

/// Progress display and the watchdog, until every driver is done.
fn watch<T>(
    args: &CallsArgs,
    run: &Run,
    lanes: &[Lane],
    drivers: &[std::thread::ScopedJoinHandle<'_, T>],
) {
    let pb = progress(args.calls, "calls");
    let mut mark = (u64::MAX, u64::MAX);
    let mut since = Instant::now();
    let (start, mut ticks) = (Instant::now(), 0u64);
    while !drivers.iter().all(|d| d.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let t = &run.totals;
        let now = (
            t.resolved(),
            t.conns.load(std::sync::atomic::Ordering::Relaxed),
        );
        match &pb {
            Some(pb) => {
                pb.set_position(now.0);
                pb.set_message(format!("{} connections", now.1));
            }
            // Not a terminal: a line every 30 s for the log.
            None if ticks % 150 == 0 && ticks > 0 => eprintln!(
                "progress: {} calls, {} connections, {:.0} s",
                now.0,
                now.1,
                start.elapsed().as_secs_f64()
            ),
            None => {}
        }
        ticks += 1;
        if now != mark {
            mark = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(args.watchdog_secs) {
            if let Some(pb) = &pb {
                pb.abandon();
            }
            eprintln!(
                "SOAK HUNG: no call resolved and no connection retired for {} s; last published state:",
                args.watchdog_secs
            );
            // Replay the connections the drivers are stuck in; failing
            // that, every connection last seen open.
            let (mut stuck, mut open) = (Vec::new(), Vec::new());
            for (i, l) in lanes.iter().enumerate() {
                eprintln!(" lane {i}:");
                if let Some((serial, s)) = l.stuck_in() {
                    eprintln!("{s}");
                    stuck.push(serial);
                }
                for (serial, s) in l.status.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    eprintln!("{s}");
                    open.push(*serial);
                }
            }
            let mut serials = if stuck.is_empty() { open } else { stuck };
            serials.sort_unstable();
            serials.dedup();
            for s in serials {
                eprintln!("replay: {}", args.replay(s));
            }
            eprintln!("whole run: {}", args.rerun());
            std::thread::sleep(Duration::from_secs(args.hang_pause_secs));
            std::process::exit(2);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
}

fn main() {
    match Cli::parse().mode {
        Mode::Calls(a) => calls(a),
        Mode::Teardown(a) => teardown::run(a),
    }
}
