//! B4 (b) threaded: the real [`Server`] (worker threads, one completion
//! poller per connection) behind a [`MockNetwork`], one client thread per
//! connection keeping `window` calls in flight (as `examples/loadgen.rs`).
//! Delivery is Inline as in loadgen: what costs here on top of (a) is
//! thread wakeups and hand-offs.
//!
//! The floor is the raw mock echo of [`crate::rtc::RawPair`] with a thread
//! per end: the server thread polls and echoes, the client thread keeps its
//! window full; each sleeps in `wait_for_completions` when idle.

use crate::e2e::{elapsed_ns, process_cpu, E2eResult, EchoService, Payload, PROG, VERS};
use crate::rtc::RawPair;
use rdmaxprt::client::{ClientConfig, RpcClient, Ticket};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig};
use rdmaxprt::service::Dispatcher;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Idle sleep of pollers that found nothing.
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// Server worker threads (the runtime's default).
pub const WORKERS: usize = 2;

/// What a client thread brings back.
struct ClientOut {
    calls: u64,
    errors: u64,
    lat: Vec<u64>,
}

/// The timed window: releases the client threads (`go`), sleeps `dur`,
/// raises `stop`; wall and process CPU time of that window, and what the
/// clients counted inside it (they finish their calls in flight untimed).
fn timed_window(
    dur: Duration,
    go: &Barrier,
    stop: &AtomicBool,
    clients: Vec<JoinHandle<ClientOut>>,
) -> E2eResult {
    go.wait();
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let wall = t0.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let (mut calls, mut errors, mut lat) = (0, 0, Vec::new());
    for h in clients {
        let o = h.join().expect("client thread");
        calls += o.calls;
        errors += o.errors;
        lat.extend(o.lat);
    }
    E2eResult::new(calls, errors, wall, cpu, lat)
}

/// B4 (b), transport: the runtime with `policy`, `conns` client threads.
pub fn run(conns: usize, size: usize, window: usize, dur: Duration, policy: Policy) -> E2eResult {
    let server_dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(server_dev.clone(), QpConfig::default());
    let server = Arc::new(Server::start(
        ServerConfig {
            workers: WORKERS,
            policy,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(EchoService::default()),
    ));
    let accept = server.serve(listener);
    let go = Arc::new(Barrier::new(conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..conns)
        .map(|_| {
            let (connector, go, stop) = (connector.clone(), go.clone(), stop.clone());
            std::thread::spawn(move || {
                let dev = MockDevice::new();
                let qp = connector.connect(&dev).expect("connect");
                let cfg = ClientConfig {
                    credits: window.max(1) as u32,
                    ..ClientConfig::default()
                };
                let mut c = RpcClient::new(qp, dev, cfg).expect("client");
                let p = Payload::new(size);
                // Warm-up before the barrier: a few windows' worth.
                for _ in 0..4 * window {
                    if let Ok(t) = c.start_call(PROG, VERS, p.proc, &p.args, &p.opts()) {
                        let _ = c.wait(t);
                    }
                }
                go.wait();
                let mut out = ClientOut {
                    calls: 0,
                    errors: 0,
                    lat: Vec::with_capacity(1 << 14),
                };
                let mut win: VecDeque<(Ticket, Instant)> = VecDeque::new();
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    while !stopping && win.len() < window {
                        match c.start_call(PROG, VERS, p.proc, &p.args, &p.opts()) {
                            Ok(t) => win.push_back((t, Instant::now())),
                            Err(_) => {
                                out.errors += 1;
                                break;
                            }
                        }
                    }
                    let Some((t, at)) = win.pop_front() else {
                        break;
                    };
                    match c.wait(t) {
                        Ok(r) if p.check(&r) => {
                            // Calls finishing after the stop are not timed.
                            if !stop.load(Ordering::Relaxed) {
                                out.calls += 1;
                                out.lat.push(elapsed_ns(at));
                            }
                        }
                        _ => out.errors += 1,
                    }
                }
                c.close();
                out
            })
        })
        .collect();
    drop(connector);
    let res = timed_window(dur, &go, &stop, clients);
    accept.join().expect("listener thread");
    let server = Arc::try_unwrap(server).expect("server no longer shared");
    let rep = server.shutdown();
    if rep.reclaimed_send != 0 || rep.stuck_recvs != 0 {
        eprintln!("B4 threaded teardown: {rep:?}");
    }
    if let Err(e) = server_dev.tracker().check() {
        eprintln!("B4 threaded tracker: {e}");
    }
    res
}

/// B4 (b), floor: `conns` raw pairs, a server thread and a client thread
/// each.
pub fn run_raw(conns: usize, size: usize, window: usize, dur: Duration) -> E2eResult {
    let sdev = MockDevice::new();
    let go = Arc::new(Barrier::new(conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_servers = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..conns {
        let RawPair { mut client, server } = RawPair::new(&sdev, size, window, QpConfig::default());
        let ss = stop_servers.clone();
        servers.push(std::thread::spawn(move || {
            while !ss.load(Ordering::Relaxed) {
                if server.turn() == 0 {
                    server.qp.wait_for_completions(IDLE_WAIT);
                }
            }
            // Dropped here: drains its QP before unmapping.
            drop(server);
        }));
        let (go, stop) = (go.clone(), stop.clone());
        clients.push(std::thread::spawn(move || {
            go.wait();
            let mut out = ClientOut {
                calls: 0,
                errors: 0,
                lat: Vec::with_capacity(1 << 14),
            };
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                if !stopping {
                    client.start();
                } else if client.in_flight() == 0 {
                    break;
                }
                let (d, e, n) = client.poll(if stopping { None } else { Some(&mut out.lat) });
                if !stopping {
                    out.calls += d;
                }
                out.errors += e;
                if n == 0 {
                    client.qp.wait_for_completions(IDLE_WAIT);
                }
            }
            drop(client);
            out
        }));
    }
    let res = timed_window(dur, &go, &stop, clients);
    stop_servers.store(true, Ordering::Relaxed);
    for h in servers {
        h.join().expect("server thread");
    }
    res
}
