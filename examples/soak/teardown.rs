//! Teardown cycles: a transport closed while its replies are posted but not
//! completed (Stepped delivery: the NIC runs nothing unless told) and
//! worker threads are parked in `svc_rdma_sq_wait` for Send Queue space.
//! Each cycle: the parked workers must come back, `free` must find no
//! stuck receive and reclaim nothing (the drain's flushes release every
//! posted context), and both devices' DMA trackers must end clean.

use crate::worker::PROC_ECHO;
use crate::xprt::{self, SoakXprt, PROG, VERS};
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::lifecycle::{Policy, WorkqueuePool};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_core::xprt::XprtFlags;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `teardown` mode's options.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Close cycles to run (policies rotate per cycle).
    #[arg(long, default_value_t = 100)]
    cycles: u64,
    /// Worker threads per cycle (all but a few end up parked).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Calls queued at the server per cycle (at most the SQ depth: they
    /// are the client's credits; half of them have two-WR replies, so the
    /// replies need more slots than the SQ has).
    #[arg(long, default_value_t = 8)]
    calls: usize,
    /// Send Queue depth of the pair.
    #[arg(long, default_value_t = 8)]
    sq_depth: u32,
    /// A cycle step that takes longer than this is a hang.
    #[arg(long, default_value_t = 10)]
    hang_secs: u64,
    /// Run only this cycle (replay).
    #[arg(long)]
    only: Option<u64>,
}

const POLICIES: [Policy; 3] = [Policy::Deferred, Policy::Workqueue, Policy::Inline];

/// What one cycle saw.
#[derive(Debug, Default)]
struct Cycle {
    /// Send contexts posted, not completed, when the transport closed.
    in_flight: usize,
    /// Senders that had to wait for SQ space (tickets taken).
    sq_waits: u32,
    /// Whether any worker was parked when close ran.
    parked: bool,
}

fn hang(args: &Args, cycle: u64, what: &str, x: &dyn SoakXprt) -> ! {
    eprintln!(
        "TEARDOWN HUNG in cycle {cycle}: {what} for {} s; flags {:?}, census {:?}, has_wspace {}",
        args.hang_secs,
        x.flags(),
        x.census(),
        x.has_wspace()
    );
    eprintln!("replay: {}", replay(args, cycle));
    std::process::exit(2);
}

fn replay(args: &Args, cycle: u64) -> String {
    format!(
        "cargo run --release --example soak -- teardown --only {cycle} --workers {} --calls {} --sq-depth {} --hang-secs {}",
        args.workers, args.calls, args.sq_depth, args.hang_secs
    )
}

fn wait_until(args: &Args, cycle: u64, what: &str, x: &dyn SoakXprt, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(args.hang_secs);
    while !ok() {
        if Instant::now() > deadline {
            hang(args, cycle, what, x);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// One cycle; `Err` is an invariant broken (a hang exits from inside).
fn cycle(args: &Args, n: u64, wq: &Arc<WorkqueuePool>) -> Result<Cycle, String> {
    let policy = POLICIES[(n % 3) as usize];
    let (server_dev, client_dev) = (MockDevice::new(), MockDevice::new());
    let q = QpConfig {
        sq_depth: args.sq_depth,
        rq_depth: 64,
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (cq, sq) =
        MockDevice::connect_pair(&client_dev, &server_dev, q).map_err(|e| e.to_string())?;
    let xb = xprt::server(policy, &server_dev, sq, XprtConfig::default(), wq, None);
    let x: &dyn SoakXprt = xb.as_ref();
    let ccfg = ClientConfig {
        credits: args.calls as u32,
        timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let mut c = RpcClient::new(cq, client_dev.clone(), ccfg).map_err(|e| e.to_string())?;
    // One round trip for the credit grant.
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, b"warm", &CallOptions::default())
        .map_err(|e| e.to_string())?;
    c.qp().step_all();
    x.poll();
    x.worker_pass();
    c.qp().step_all();
    c.wait(t).map_err(|e| format!("warm-up call: {e}"))?;
    // Queue the calls at the server: every other one wants a Write chunk
    // (a two-WR reply). The pair runs each Send as it is posted.
    let mut tickets = Vec::new();
    for i in 0..args.calls {
        let o = CallOptions {
            write_chunk: (i % 2 == 1).then_some(2048),
            ..CallOptions::default()
        };
        let args = vec![i as u8; 64 + 40 * (i % 2)];
        tickets.push(
            c.start_call(PROG, VERS, PROC_ECHO, &args, &o)
                .map_err(|e| e.to_string())?,
        );
        c.qp().step_all();
        c.poll().map_err(|e| e.to_string())?;
    }
    x.poll();
    let busy = Mutex::new(());
    let back = AtomicUsize::new(0);
    let seen = std::thread::scope(|s| {
        for _ in 0..args.workers {
            s.spawn(|| {
                loop {
                    let call = {
                        let _busy = busy.lock().unwrap_or_else(|p| p.into_inner());
                        x.recv_call()
                    };
                    match call {
                        Ok(Some(call)) => {
                            x.answer(&call);
                            x.release_ctxt();
                        }
                        Ok(None) if x.flags().test(XprtFlags::CLOSE) => break,
                        Ok(None) => std::thread::sleep(Duration::from_micros(50)),
                        Err(()) => break,
                    }
                }
                back.fetch_add(1, Ordering::SeqCst);
            });
        }
        // The SQ fills with replies the NIC never runs; the next sendto
        // parks. On odd cycles let the NIC run a few WRs first, so some
        // completions wait on the release list too.
        wait_until(args, n, "no worker parked for SQ space", x, || {
            !x.has_wspace()
        });
        if n % 2 == 1 {
            for _ in 0..3 {
                x.qp().step();
            }
            x.poll();
            wait_until(args, n, "no worker parked again", x, || !x.has_wspace());
        }
        let seen = Cycle {
            in_flight: x.census().posted as usize,
            sq_waits: x.sq_waits(),
            parked: !x.has_wspace(),
        };
        x.close();
        wait_until(
            args,
            n,
            "parked workers did not come back after close",
            x,
            || back.load(Ordering::SeqCst) == args.workers,
        );
        seen
    });
    if seen.in_flight == 0 || !seen.parked {
        return Err(format!("the cycle did not set up its case: {seen:?}"));
    }
    let partial = x.counters().partial_posts.load(Ordering::Relaxed) as usize;
    let td = xb.free();
    if td.stuck_recvs != 0 || td.reclaimed_send != partial || td.send_stats.in_use != 0 {
        return Err(format!(
            "{policy:?}: teardown {td:?} with {partial} partial posts"
        ));
    }
    drop(tickets);
    c.close();
    server_dev
        .tracker()
        .check()
        .map_err(|e| format!("{policy:?}: server device after free: {e}"))?;
    client_dev
        .tracker()
        .check()
        .map_err(|e| format!("{policy:?}: client device after close: {e}"))?;
    Ok(seen)
}

/// Runs the cycles and prints what they saw.
pub fn run(args: Args) {
    let wq = WorkqueuePool::new(1);
    let cycles: Vec<u64> = match args.only {
        Some(n) => vec![n],
        None => (0..args.cycles).collect(),
    };
    println!(
        "soak teardown: {} cycles, {} workers, {} calls queued, SQ depth {}, policies rotating",
        cycles.len(),
        args.workers,
        args.calls,
        args.sq_depth
    );
    let pb = crate::progress(cycles.len() as u64, "cycles");
    let start = Instant::now();
    let (mut in_flight, mut min_in_flight, mut waits, mut min_waits) = (0, usize::MAX, 0, u32::MAX);
    for &n in &cycles {
        match cycle(&args, n, &wq) {
            Ok(c) => {
                in_flight += c.in_flight;
                min_in_flight = min_in_flight.min(c.in_flight);
                waits += c.sq_waits;
                min_waits = min_waits.min(c.sq_waits);
            }
            Err(e) => {
                if let Some(pb) = &pb {
                    pb.abandon();
                }
                eprintln!("TEARDOWN FAILED in cycle {n}: {e}");
                eprintln!("replay: {}", replay(&args, n));
                std::process::exit(1);
            }
        }
        if let Some(pb) = &pb {
            pb.inc(1);
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} cycles in {secs:.1} s: every close had Sends in flight (min {min_in_flight}, total {in_flight}) and workers parked for SQ space (min {min_waits}, total {waits} SQ waits); 0 leaks, 0 hangs, 0 stuck receives, 0 reclaimed",
        cycles.len()
    );
}
