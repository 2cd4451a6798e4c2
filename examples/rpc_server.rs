//! An RPC-over-RDMA server over real verbs (feature `verbs`): the runtime
//! listening on rdma_cm, serving the examples' echo program, and
//! optionally a program that answers only NULL (PROC_UNAVAIL otherwise),
//! e.g. NFSv4's number for the kernel client to probe.
//!
//! ```sh
//! cargo run --release --features verbs --example rpc_server -- \
//!     --listen 192.168.77.1:20049 --workers 2 --policy deferred
//! ```
//!
//! `--mode poll-group` runs the calls on run-to-completion poll groups
//! (`--groups` threads, default one per CPU) instead of the worker pool.
//!
//! It prints one line per change: `ACCEPTED n`, `LIVE n` (transports not
//! yet freed), `CLOSED_BY_CM n`, `IDLE ...` whenever no transport is live
//! (its thread count and the registered memory still in use), `PLATEAU
//! ...` when the live count has held for a second (threads, RSS; the
//! largest one again as `PEAK` at exit), and on exit (after `--secs`, after
//! `--idle-exit` seconds without a live connection, or when standard input
//! closes) the server's report.

#[path = "common/echo.rs"]
mod echo;

use clap::Parser;
use rdmaxprt::runtime::{ListenConfig, Server, ServerConfig, ServerMode};
use rdmaxprt::service::{CallContext, Dispatcher, ProcError, ReplyBody, Service};
use std::io::Write as _;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "RPC-over-RDMA echo server on rdma_cm (verbs)")]
struct Args {
    /// Address to listen on (an address of the RDMA device's netdev).
    #[arg(long, default_value = "192.168.77.1:20049")]
    listen: SocketAddr,
    /// How calls run: thread-pool (pollers hand each call to a worker) or
    /// poll-group (run to completion on the group threads).
    #[arg(long, default_value = "thread-pool")]
    mode: ServerMode,
    /// Poll-group threads (--mode poll-group; 0: one per CPU).
    #[arg(long, default_value_t = 0)]
    groups: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Completion-poller threads per device.
    #[arg(long, default_value_t = 1)]
    pollers: usize,
    /// Send-context release policy: deferred, workqueue or inline.
    #[arg(long, default_value = "deferred", value_parser = parse_policy)]
    policy: rdmaxprt::lifecycle::Policy,
    /// Credits granted per connection (at most).
    #[arg(long, default_value_t = 64)]
    credits: u32,
    /// Inline threshold offered each way (RFC 8797), bytes.
    #[arg(long, default_value_t = 4096)]
    inline: u32,
    /// Live connections above which new ones are rejected.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Also serve program PROG version VERS answering only NULL
    /// (`PROG:VERS`, e.g. 100003:4).
    #[arg(long, value_parser = parse_prog)]
    null_program: Option<(u32, u32)>,
    /// Serve this long, then shut down (0: until standard input closes,
    /// or --idle-exit).
    #[arg(long, default_value_t = 0)]
    secs: u64,
    /// Shut down once connections were served and none has been live for
    /// this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    idle_exit: u64,
    /// 4 KiB chunks of registered memory per device (receive buffers,
    /// send headers, small replies): about 2 x credits + 8 per connection.
    #[arg(long, default_value_t = 4096)]
    small_chunks: usize,
}

fn parse_policy(s: &str) -> Result<rdmaxprt::lifecycle::Policy, String> {
    s.parse()
        .map_err(|e: rdmaxprt::lifecycle::UnknownPolicy| e.to_string())
}

fn parse_prog(s: &str) -> Result<(u32, u32), String> {
    let (p, v) = s.split_once(':').ok_or("expected PROG:VERS")?;
    Ok((
        p.parse().map_err(|e| format!("program: {e}"))?,
        v.parse().map_err(|e| format!("version: {e}"))?,
    ))
}

/// Answers NULL; every other procedure is PROC_UNAVAIL.
struct NullOnly {
    prog: u32,
    vers: u32,
}

impl Service for NullOnly {
    fn program(&self) -> u32 {
        self.prog
    }
    fn versions(&self) -> RangeInclusive<u32> {
        self.vers..=self.vers
    }
    fn call(&self, ctx: &CallContext<'_>, _: &[u8], _: &mut ReplyBody) -> Result<(), ProcError> {
        match ctx.proc {
            0 => Ok(()),
            _ => Err(ProcError::ProcUnavail),
        }
    }
}

/// A number field of /proc/self/status (`Threads`, `VmRSS` in KiB).
fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn threads() -> u64 {
    status("Threads")
}

fn main() {
    let args = Args::parse();
    let mut dispatcher = Dispatcher::new().with(echo::Echo::default());
    if let Some((prog, vers)) = args.null_program {
        dispatcher = dispatcher.with(NullOnly { prog, vers });
    }
    let mut cfg = ServerConfig {
        mode: args.mode,
        groups: args.groups,
        workers: args.workers,
        pollers: args.pollers,
        policy: args.policy,
        ..ServerConfig::default()
    };
    cfg.xprt.credits = args.credits;
    let server = Arc::new(Server::start(cfg, dispatcher));
    let mut listen = ListenConfig {
        max_connections: args.max_connections,
        inline_send: args.inline,
        inline_recv: args.inline,
        ..ListenConfig::default()
    };
    listen.memory.small_chunks = args.small_chunks;
    let listener = match server.listen_rdma(args.listen, listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rpc_server: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!("LISTENING {}", listener.local_addr());
    let _ = std::io::stdout().flush();
    let stdin_closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if args.secs == 0 && args.idle_exit == 0 {
        let flag = stdin_closed.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            flag.store(true, Ordering::Release);
        });
    }
    let start = Instant::now();
    let c = listener.counters();
    let mut last = (u64::MAX, usize::MAX, u64::MAX);
    let mut idle_since: Option<Instant> = None;
    // A plateau: the live count unchanged for a second (reported once).
    let mut steady: (usize, Instant, bool) = (0, Instant::now(), true);
    // The plateau with the most connections: (live, threads, rss_kib).
    let mut peak: Option<(usize, u64, u64)> = None;
    loop {
        let now = (
            c.accepted.load(Ordering::Relaxed),
            server.live_transports(),
            c.closed_by_cm.load(Ordering::Relaxed),
        );
        if now != last {
            let t = start.elapsed().as_secs_f64();
            if now.0 != last.0 {
                println!("{t:.3} ACCEPTED {}", now.0);
            }
            if now.1 != last.1 {
                println!("{t:.3} LIVE {}", now.1);
                // Only a snapshot with no connection being set up meanwhile
                // (a new one allocates its buffers before it counts as live).
                let quiet = || {
                    server.live_transports() == 0
                        && c.settled()
                        && c.accepted.load(Ordering::Acquire) == now.0
                };
                let m = listener.memory();
                if now.0 > 0 && now.1 == 0 && quiet() {
                    println!(
                        "{t:.3} IDLE threads {} live_bufs {} live_mappings {} bad_unmaps {}",
                        threads(),
                        m.live_bufs,
                        m.live_mappings,
                        m.bad_unmaps
                    );
                }
            }
            if now.2 != last.2 {
                println!("{t:.3} CLOSED_BY_CM {}", now.2);
            }
            let _ = std::io::stdout().flush();
            last = now;
        }
        if now.1 != steady.0 {
            steady = (now.1, Instant::now(), false);
        } else if !steady.2 && now.1 > 0 && steady.1.elapsed() >= Duration::from_secs(1) {
            steady.2 = true;
            let p = (now.1, threads(), status("VmRSS"));
            println!(
                "{:.3} PLATEAU live {} threads {} rss_kib {}",
                start.elapsed().as_secs_f64(),
                p.0,
                p.1,
                p.2
            );
            if peak.map_or(true, |k: (usize, u64, u64)| p.0 > k.0) {
                peak = Some(p);
            }
            let _ = std::io::stdout().flush();
        }
        idle_since = match (now.0 > 0 && now.1 == 0, idle_since) {
            (true, None) => Some(Instant::now()),
            (true, since) => since,
            (false, _) => None,
        };
        let idle_done = args.idle_exit > 0
            && idle_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(args.idle_exit));
        let done = idle_done
            || if args.secs > 0 {
                start.elapsed() >= Duration::from_secs(args.secs)
            } else {
                args.idle_exit == 0 && stdin_closed.load(Ordering::Acquire)
            };
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some((live, threads, rss)) = peak {
        println!("PEAK live {live} threads {threads} rss_kib {rss}");
    }
    let report = server.shutdown();
    let m = listener.memory();
    println!(
        "FINAL live_bufs {} live_mappings {} bad_unmaps {} threads {}",
        m.live_bufs,
        m.live_mappings,
        m.bad_unmaps,
        threads()
    );
    let s = report.stats;
    println!(
        "REPORT freed {} completions {} drains {} backstop_enqueues {} reclaimed {} stuck_recvs {} rejected_limit {} private_data_absent {} private_data_malformed {}",
        report.freed,
        s.completions,
        s.drains,
        s.backstop_enqueues,
        report.reclaimed_send,
        report.stuck_recvs,
        c.rejected_limit.load(Ordering::Relaxed),
        c.private_data_absent.load(Ordering::Relaxed),
        c.private_data_malformed.load(Ordering::Relaxed),
    );
    println!(
        "WAKEUPS mode {} passes {} poller_wakeups {} worker_wakeups {} handoffs {} remote_pushes {}",
        args.mode,
        report.worker_passes,
        report.poller_wakeups,
        report.worker_wakeups,
        report.handoffs,
        report.remote_pushes,
    );
}
