//! An RPC-over-RDMA client over real verbs (feature `verbs`), the twin of
//! `rpc_server`: connects over rdma_cm (RFC 8797 private data both ways),
//! calls the echo program through every path (inline, Position-Zero Read
//! chunk, positional Read chunk, Write chunk, Reply chunk) and checks every
//! byte.
//!
//! ```sh
//! cargo run --release --features verbs --example rpc_client -- \
//!     --server 192.168.77.1:20049 --connections 4 --secs 5
//! cargo run --release --features verbs --example rpc_client -- \
//!     --server 192.168.77.1:20049 --cycles 1000
//! ```
//!
//! `--cycles N` connects, makes one call and disconnects N times, and
//! checks that each connection's memory was given back. `--hold N` opens N
//! small connections from one thread and holds them for `--secs` (for the
//! server's threads and memory at N connections).

#[path = "common/echo.rs"]
mod echo;

use clap::Parser;
use rdmaxprt::client::{connect_rdma, CallOptions, ClientConfig, ConnectConfig, VerbsClient};
use rdmaxprt::rdma::MemoryConfig;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "RPC-over-RDMA echo client on rdma_cm (verbs)")]
struct Args {
    /// The server's address.
    #[arg(long, default_value = "192.168.77.1:20049")]
    server: SocketAddr,
    /// Connections, each on its own thread.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Calls per connection (0: run for --secs).
    #[arg(long, default_value_t = 0)]
    calls: u64,
    /// Seconds to run when --calls is 0.
    #[arg(long, default_value_t = 2)]
    secs: u64,
    /// Argument sizes cycled through (bytes, comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,64,1000,4096,65536,1048576"
    )]
    sizes: Vec<usize>,
    /// Inline threshold offered each way, bytes.
    #[arg(long, default_value_t = 4096)]
    inline: usize,
    /// Connect, call once and disconnect this many times instead.
    #[arg(long, default_value_t = 0)]
    cycles: u64,
    /// Instead: open this many connections (small ones, from one thread),
    /// call NULL on each, hold them all for --secs, then close them.
    #[arg(long, default_value_t = 0)]
    hold: usize,
}

fn config(args: &Args) -> ConnectConfig {
    ConnectConfig {
        client: ClientConfig {
            inline_threshold: args.inline,
            timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        },
        memory: MemoryConfig {
            small_chunk: 4096,
            small_chunks: 256,
            large_chunk: 2 << 20,
            large_chunks: 4,
        },
        ..ConnectConfig::default()
    }
}

/// One echo call of `len` bytes through the path `n` selects; checks it.
fn echo_call(c: &mut VerbsClient, n: u64, len: usize) -> Result<(), String> {
    let args: Vec<u8> = (0..len).map(|k| (k as u64 + n) as u8).collect();
    let payload_len = (len / 2) & !3;
    let (head, tail) = args.split_at(len - payload_len);
    let (opts, proc_, sent) = match n % 4 {
        // Inline or Position Zero (chosen by size), reply inline or Reply chunk.
        0 => (
            CallOptions {
                reply_chunk: Some(len as u32 + 64),
                ..CallOptions::default()
            },
            echo::PROC_ECHO,
            &args[..],
        ),
        // Forced Position Zero.
        1 => (
            CallOptions {
                force_position_zero: true,
                reply_chunk: Some(len as u32 + 64),
                ..CallOptions::default()
            },
            echo::PROC_ECHO,
            &args[..],
        ),
        // Results through a Write chunk (a chunk has at least one byte).
        2 if len > 0 => (
            CallOptions {
                write_chunk: Some(len as u32),
                ..CallOptions::default()
            },
            echo::PROC_ECHO_BULK,
            &args[..],
        ),
        // A positional Read chunk carries the tail.
        _ if head.len() % 4 == 0 && !tail.is_empty() => (
            CallOptions {
                read_payload: Some(tail),
                reply_chunk: Some(len as u32 + 64),
                ..CallOptions::default()
            },
            echo::PROC_ECHO,
            head,
        ),
        _ => (CallOptions::default(), echo::PROC_ECHO, &args[..]),
    };
    let r = c
        .call(echo::PROG, echo::VERS, proc_, sent, &opts)
        .map_err(|e| format!("{len} B call {n}: {e}"))?;
    let got = r.bulk.unwrap_or(r.results);
    if got[..] != args[..] {
        return Err(format!(
            "{len} B call {n}: reply differs ({} bytes back)",
            got.len()
        ));
    }
    Ok(())
}

/// What one connection did.
struct Run {
    calls: u64,
    /// Each call's round trip, microseconds.
    lat_us: Vec<u64>,
    connect: Duration,
    close: Duration,
}

fn run(args: &Args, conn: usize) -> Result<Run, String> {
    let t = Instant::now();
    let mut c = connect_rdma(args.server, &config(args)).map_err(|e| format!("connect: {e}"))?;
    let connect = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let mut n = 0u64;
    let mut lat_us = Vec::new();
    while if args.calls > 0 {
        n < args.calls
    } else {
        Instant::now() < deadline
    } {
        let len = args.sizes[(n as usize + conn) % args.sizes.len()];
        let t = Instant::now();
        echo_call(&mut c, n, len)?;
        lat_us.push(t.elapsed().as_micros() as u64);
        n += 1;
    }
    // The client keeps its chunk regions registered for the connection's
    // life (a pool); closing gives every one back.
    let mem = c.device().clone();
    let t = Instant::now();
    c.close();
    let close = t.elapsed();
    let accounting = mem.accounting();
    if accounting.live_regions != 0 {
        return Err(format!(
            "{} remote regions left after close",
            accounting.live_regions
        ));
    }
    Ok(Run {
        calls: n,
        lat_us,
        connect,
        close,
    })
}

fn cycles(args: &Args) -> Result<(), String> {
    let start = Instant::now();
    let cfg = small_config(args);
    for i in 0..args.cycles {
        let mut c =
            connect_rdma(args.server, &cfg).map_err(|e| format!("cycle {i}: connect: {e}"))?;
        echo_call(&mut c, i, 64).map_err(|e| format!("cycle {i}: {e}"))?;
        let mem = c.device().clone();
        c.close();
        let a = mem.accounting();
        if !a.is_clean() {
            return Err(format!("cycle {i}: client memory not clean: {a:?}"));
        }
    }
    println!(
        "CYCLES {} in {:.1} s, every connection's memory given back",
        args.cycles,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A small connection: few credits, little registered memory (for many
/// connections, or many short-lived ones).
fn small_config(args: &Args) -> ConnectConfig {
    let mut cfg = config(args);
    cfg.client.credits = 2;
    cfg.sq_depth = 8;
    cfg.memory = MemoryConfig {
        small_chunks: 8,
        large_chunk: 64 << 10,
        large_chunks: 1,
        ..cfg.memory
    };
    cfg
}

/// Each connection holds two descriptors (its CM event channel and its
/// completion channel): lift the soft open-file limit to the hard one.
#[allow(unsafe_code)]
fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one live local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn hold(args: &Args) -> Result<(), String> {
    raise_fd_limit();
    let cfg = small_config(args);
    let start = Instant::now();
    let mut held = Vec::with_capacity(args.hold);
    for i in 0..args.hold {
        let mut c = connect_rdma(args.server, &cfg).map_err(|e| format!("connection {i}: {e}"))?;
        c.call(
            echo::PROG,
            echo::VERS,
            echo::PROC_NULL,
            &[],
            &Default::default(),
        )
        .map_err(|e| format!("connection {i}: NULL: {e}"))?;
        held.push(c);
    }
    println!(
        "HOLDING {} connections ({:.1} s to open)",
        held.len(),
        start.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(args.secs));
    for c in held {
        c.close();
    }
    println!("RELEASED {}", args.hold);
    Ok(())
}

fn main() {
    let args = Args::parse();
    if args.sizes.is_empty() {
        eprintln!("rpc_client: --sizes needs at least one size");
        std::process::exit(2);
    }
    if args.hold > 0 {
        if let Err(e) = hold(&args) {
            eprintln!("rpc_client: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.cycles > 0 {
        if let Err(e) = cycles(&args) {
            eprintln!("rpc_client: {e}");
            std::process::exit(1);
        }
        return;
    }
    let start = Instant::now();
    let results: Vec<Result<Run, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.connections)
            .map(|i| {
                let a = &args;
                s.spawn(move || run(a, i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("client thread panicked".into()))
            })
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut total = 0;
    let mut failed = false;
    let mut lat: Vec<u64> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(r) => {
                total += r.calls;
                lat.extend(&r.lat_us);
                println!(
                    "connection {i}: {} calls, connect {:.1} ms, close {:.1} ms",
                    r.calls,
                    r.connect.as_secs_f64() * 1e3,
                    r.close.as_secs_f64() * 1e3
                );
            }
            Err(e) => {
                eprintln!("rpc_client: connection {i}: {e}");
                failed = true;
            }
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).copied()
    };
    if let (Some(p50), Some(p99), Some(max)) = (pct(0.5), pct(0.99), lat.last()) {
        println!("LATENCY us p50 {p50} p99 {p99} max {max}");
    }
    println!(
        "CALLS {total} over {} connections in {secs:.2} s ({:.0} calls/s), every byte checked",
        args.connections,
        total as f64 / secs
    );
    if failed {
        std::process::exit(1);
    }
}
