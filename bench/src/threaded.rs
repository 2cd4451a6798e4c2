//! B4 (b) threaded and (c) poll groups: the real [`Server`] behind a
//! [`MockNetwork`], in [`ServerMode::ThreadPool`] (worker threads, shared
//! completion pollers) or [`ServerMode::PollGroup`] (run-to-completion
//! group threads), one client thread per connection keeping `window` calls
//! in flight (as `examples/loadgen.rs`). Delivery is Inline as in loadgen:
//! what costs here on top of (a) is thread wakeups and hand-offs, counted
//! from the server's report over the timed window.
//!
//! Two floors, raw mock echo of [`crate::rtc::RawPair`] with a client
//! thread per connection: [`run_raw`] with a server thread per connection
//! (each sleeps in `wait_for_completions` when idle), and [`run_raw_grouped`]
//! with `threads` server threads each looping over its share of the pairs
//! and sleeping on a doorbell the QPs ring (the poll groups' shape).

use crate::e2e::{elapsed_ns, process_cpu, E2eResult, EchoService, Payload, PROG, VERS};
use crate::rtc::{RawClient, RawPair};
use rdmaxprt::client::{ClientConfig, RpcClient, Ticket};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode, ServerReport};
use rdmaxprt::service::Dispatcher;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
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

/// Poll-group threads of the (c) runs: one per CPU, the mode's default.
pub fn groups() -> usize {
    ServerConfig::default().group_threads()
}

/// Server thread wakeups and passes over a timed window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wakeups {
    /// Calls the clients counted in the window.
    pub calls: u64,
    /// Times a server thread woke from its sleep (completion pollers, poll
    /// groups, workers that then took a job).
    pub wakeups: u64,
    /// Passes over a transport (workers' or groups').
    pub passes: u64,
    /// Calls handed from a poll group to a worker.
    pub handoffs: u64,
}

impl Wakeups {
    fn between(a: &ServerReport, b: &ServerReport, calls: u64) -> Self {
        let w = |r: &ServerReport| r.poller_wakeups + r.worker_wakeups;
        Self {
            calls,
            wakeups: w(b).saturating_sub(w(a)),
            passes: b.worker_passes.saturating_sub(a.worker_passes),
            handoffs: b.handoffs.saturating_sub(a.handoffs),
        }
    }

    /// Server thread wakeups per call.
    pub fn per_call(&self) -> f64 {
        self.wakeups as f64 / self.calls.max(1) as f64
    }

    /// Passes per call.
    pub fn passes_per_call(&self) -> f64 {
        self.passes as f64 / self.calls.max(1) as f64
    }
}

/// The timed window: releases the client threads (`go`), sleeps `dur`,
/// raises `stop`; wall and process CPU time of that window, and what the
/// clients counted inside it (they finish their calls in flight untimed).
/// `snap` (a server report) is taken as the window opens and closes.
fn timed_window<T>(
    dur: Duration,
    go: &Barrier,
    stop: &AtomicBool,
    clients: Vec<JoinHandle<ClientOut>>,
    snap: impl Fn() -> T,
) -> (E2eResult, T, T) {
    go.wait();
    let s0 = snap();
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let wall = t0.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let s1 = snap();
    let (mut calls, mut errors, mut lat) = (0, 0, Vec::new());
    for h in clients {
        let o = h.join().expect("client thread");
        calls += o.calls;
        errors += o.errors;
        lat.extend(o.lat);
    }
    (E2eResult::new(calls, errors, wall, cpu, lat), s0, s1)
}

/// B4 (b), transport: the runtime with `policy`, `conns` client threads.
pub fn run(conns: usize, size: usize, window: usize, dur: Duration, policy: Policy) -> E2eResult {
    run_mode(conns, size, window, dur, policy, ServerMode::ThreadPool).0
}

/// B4 (b) or (c): the runtime in `mode` with `policy` ([`WORKERS`]
/// workers; poll groups: [`groups`]), `conns` client threads; with the
/// server's wakeups over the window.
pub fn run_mode(
    conns: usize,
    size: usize,
    window: usize,
    dur: Duration,
    policy: Policy,
    mode: ServerMode,
) -> (E2eResult, Wakeups) {
    let server_dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(server_dev.clone(), QpConfig::default());
    let server = Arc::new(Server::start(
        ServerConfig {
            mode,
            workers: WORKERS,
            policy,
            groups: groups(),
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
                            c.recycle(r);
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
    let (res, r0, r1) = timed_window(dur, &go, &stop, clients, || server.report());
    let wakeups = Wakeups::between(&r0, &r1, res.calls);
    accept.join().expect("listener thread");
    let server = Arc::try_unwrap(server).expect("server no longer shared");
    let rep = server.shutdown();
    if rep.reclaimed_send != 0 || rep.stuck_recvs != 0 {
        eprintln!("B4 threaded teardown: {rep:?}");
    }
    if let Err(e) = server_dev.tracker().check() {
        eprintln!("B4 threaded tracker: {e}");
    }
    (res, wakeups)
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
        let RawPair { client, server } = RawPair::new(&sdev, size, window, QpConfig::default());
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
        clients.push(std::thread::spawn(move || raw_client(client, &go, &stop)));
    }
    let (res, (), ()) = timed_window(dur, &go, &stop, clients, || ());
    stop_servers.store(true, Ordering::Relaxed);
    for h in servers {
        h.join().expect("server thread");
    }
    res
}

/// A raw server thread's doorbell: rung by its QPs' completion notifiers,
/// slept on when a loop over its pairs found nothing (no timer). A ring
/// costs an atomic swap unless the thread sleeps, as the poll groups' bell.
#[derive(Default)]
struct Bell {
    rung: AtomicBool,
    sleeping: AtomicBool,
    m: Mutex<()>,
    cv: Condvar,
}

impl Bell {
    fn ring(&self) {
        // SeqCst: pairs with `wait` storing `sleeping` then swapping
        // `rung`; one of the two sides sees the other.
        if self.rung.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.sleeping.load(Ordering::SeqCst) {
            let _g = self.m.lock().unwrap_or_else(|p| p.into_inner());
            self.cv.notify_one();
        }
    }

    fn wait(&self) {
        if self.rung.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut g = self.m.lock().unwrap_or_else(|p| p.into_inner());
        self.sleeping.store(true, Ordering::SeqCst);
        while !self.rung.swap(false, Ordering::SeqCst) {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }
}

/// B4 (c), floor: `conns` raw pairs served by `threads` server threads
/// (pair `i` on thread `i % threads`), each echoing on its pairs in a loop
/// and sleeping on its doorbell when a loop found nothing; a client thread
/// per pair.
pub fn run_raw_grouped(
    conns: usize,
    size: usize,
    window: usize,
    dur: Duration,
    threads: usize,
) -> E2eResult {
    let threads = threads.clamp(1, conns.max(1));
    let sdev = MockDevice::new();
    let go = Arc::new(Barrier::new(conns + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_servers = Arc::new(AtomicBool::new(false));
    let mut shards: Vec<(Arc<Bell>, Vec<crate::rtc::RawServer>)> = (0..threads)
        .map(|_| (Arc::new(Bell::default()), Vec::new()))
        .collect();
    let mut clients = Vec::new();
    for i in 0..conns {
        let RawPair { client, server } = RawPair::new(&sdev, size, window, QpConfig::default());
        let (bell, pairs) = &mut shards[i % threads];
        let b = bell.clone();
        server
            .qp
            .set_completion_notifier(Some(Arc::new(move || b.ring())));
        pairs.push(server);
        let (go, stop) = (go.clone(), stop.clone());
        clients.push(std::thread::spawn(move || raw_client(client, &go, &stop)));
    }
    let bells: Vec<Arc<Bell>> = shards.iter().map(|(b, _)| b.clone()).collect();
    let servers: Vec<_> = shards
        .into_iter()
        .map(|(bell, pairs)| {
            let ss = stop_servers.clone();
            std::thread::spawn(move || {
                while !ss.load(Ordering::Relaxed) {
                    let n: usize = pairs.iter().map(|p| p.turn()).sum();
                    if n == 0 {
                        bell.wait();
                    }
                }
                for p in &pairs {
                    p.qp.set_completion_notifier(None);
                }
                // Dropped here: each drains its QP before unmapping.
                drop(pairs);
            })
        })
        .collect();
    let (res, (), ()) = timed_window(dur, &go, &stop, clients, || ());
    stop_servers.store(true, Ordering::Relaxed);
    // The servers may be asleep with nothing left to do.
    for b in &bells {
        b.ring();
    }
    for h in servers {
        h.join().expect("server thread");
    }
    res
}

/// A floor client thread: keeps its window full from `go` until `stop`,
/// then finishes its calls in flight (untimed), sleeping on its QP when
/// nothing completed.
fn raw_client(mut client: RawClient, go: &Barrier, stop: &AtomicBool) -> ClientOut {
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
}
