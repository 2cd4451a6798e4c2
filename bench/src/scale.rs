//! B7, scale on the mock NIC: what an idle transport costs at 1, 1,000 and
//! 10,000 connections, calls/s when 1% of 10,000 connections are active,
//! and the idle send-context shrink over time.
//!
//! - [`run`]: one threaded server (the default runtime: 2 workers, 1 shared
//!   doorbell poller, the idle sweeper) and `conns` mock clients in this
//!   process, every client on one client device, every server transport on
//!   one server device, so the mock's DMA tracker of each device gives the
//!   bytes each side keeps mapped (registered). Each connection makes one
//!   call (all started at once, then all awaited) and then idles; RSS
//!   (`VmRSS` of `/proc/self/status`) is read before the server starts and
//!   once everything is idle. Then `active` connections make calls in a
//!   closed loop (one call in flight each, on two driver threads) for a
//!   fixed window while the others stay idle.
//! - [`shrink_timeline`]: a few connections whose Send completions lag
//!   1 ms (so pipelined calls hold many contexts), a burst of pipelined
//!   calls, then silence; a sampler records the mean send-context pool size
//!   per transport every few ms, with the idle shrink on and off.
//!
//! RSS covers both ends (client and server live in one process); the
//! registered bytes are per side and exact.

use crate::e2e::{EchoService, PROC_ECHO, PROG, VERS};
use crate::plot::Series;
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::mock::{Delivery, MockDevice, MockQp, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode, SweepReport};
use rdmaxprt::service::Dispatcher;
use rdmaxprt::transport::{IdleShrink, XprtConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod line;

type Client = RpcClient<MockQp, MockDevice>;

/// `VmRSS` of this process in KiB (`None` off Linux).
pub fn vm_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Entries of a `/proc/self` directory (threads: `task`, descriptors:
/// `fd`); 0 if unreadable.
pub fn proc_count(dir: &str) -> usize {
    std::fs::read_dir(format!("/proc/self/{dir}")).map_or(0, |d| d.count())
}

/// Bytes `dev` keeps DMA-mapped right now (the mock tracker's live
/// mappings), and how many mappings.
pub fn mapped(dev: &MockDevice) -> (u64, usize) {
    let live = dev.tracker().leaks();
    (live.iter().map(|s| u64::from(s.length)).sum(), live.len())
}

/// One scale run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleSpec {
    /// Connections.
    pub conns: usize,
    /// Of which this many make calls in the timed window.
    pub active: usize,
    /// The timed window.
    pub window: Duration,
    /// Windows run back to back; the median one is reported.
    pub windows: usize,
    /// Credits (posted receives) per client.
    pub client_credits: u32,
    /// The server's idle shrink.
    pub idle_shrink: Option<IdleShrink>,
    /// After the windows, wait for one sweep with nothing else running
    /// and time it ([`ScaleResult::idle_sweep`]).
    pub idle_sweep: bool,
    /// The server's mode (thread pool or poll groups).
    pub mode: ServerMode,
}

/// What one scale run measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ScaleResult {
    /// Connections.
    pub conns: usize,
    /// Active connections in the window.
    pub active: usize,
    /// Connect + accept + one call each, wall time.
    pub setup: Duration,
    /// RSS before the server started, KiB.
    pub rss_before_kib: u64,
    /// RSS with every connection idle, KiB.
    pub rss_idle_kib: u64,
    /// Bytes the server's device keeps mapped, idle.
    pub server_mapped: u64,
    /// Mappings the server's device holds, idle.
    pub server_mappings: usize,
    /// Bytes the clients' device keeps mapped, idle.
    pub client_mapped: u64,
    /// Send contexts over all server transports, idle.
    pub send_ctxts: u64,
    /// Threads of the process before / with the server running.
    pub threads: (usize, usize),
    /// Open descriptors before / with the server running.
    pub fds: (usize, usize),
    /// Calls completed in the median window.
    pub calls: u64,
    /// Call errors in all windows.
    pub errors: u64,
    /// The median window as measured.
    pub elapsed: Duration,
    /// Shared-poller wakeups in the median window.
    pub poller_wakeups: u64,
    /// Slowest window, calls/s.
    pub rate_min: u64,
    /// Fastest window, calls/s.
    pub rate_max: u64,
    /// What the idle sweeper did over the whole run.
    pub sweep: SweepReport,
    /// Mean time of the sweeps made with no calls running (zero if not
    /// measured).
    pub idle_sweep: Duration,
    /// Shutdown (close and free every transport), wall time.
    pub teardown: Duration,
}

impl ScaleResult {
    /// RSS growth per connection, KiB (both ends).
    pub fn rss_per_conn_kib(&self) -> f64 {
        self.rss_idle_kib.saturating_sub(self.rss_before_kib) as f64 / self.conns.max(1) as f64
    }

    /// Calls per second in the median window.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Mean time of one sweep over all transports.
    pub fn sweep_mean(&self) -> Option<Duration> {
        (self.sweep.sweeps != 0)
            .then(|| Duration::from_nanos(self.sweep.sweep_ns / self.sweep.sweeps))
    }
}

fn server(
    q: QpConfig,
    idle_shrink: Option<IdleShrink>,
    mode: ServerMode,
) -> (Arc<Server>, MockDevice, rdmaxprt::runtime::MockConnector) {
    let sdev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(sdev.clone(), q);
    let cfg = ServerConfig {
        mode,
        xprt: XprtConfig {
            idle_shrink,
            ..XprtConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = Arc::new(Server::start(
        cfg,
        Dispatcher::new().with(EchoService::default()),
    ));
    // The accept thread ends when the connector is dropped.
    let _accept = server.serve(listener);
    (server, sdev, connector)
}

fn connect(
    connector: &rdmaxprt::runtime::MockConnector,
    cdev: &MockDevice,
    credits: u32,
) -> Result<Client, String> {
    let qp = connector.connect(cdev).map_err(|e| e.to_string())?;
    let cfg = ClientConfig {
        credits,
        ..ClientConfig::default()
    };
    RpcClient::new(qp, cdev.clone(), cfg).map_err(|e| e.to_string())
}

/// Starts one call on every client, then waits for every reply.
fn call_all(clients: &mut [Client], arg: &[u8]) -> (u64, u64) {
    let opts = CallOptions::default();
    let tickets: Vec<_> = clients
        .iter_mut()
        .map(|c| c.start_call(PROG, VERS, PROC_ECHO, arg, &opts))
        .collect();
    let (mut ok, mut err) = (0, 0);
    for (c, t) in clients.iter_mut().zip(tickets) {
        match t.and_then(|t| c.wait(t)) {
            Ok(r) if r.results == arg => ok += 1,
            _ => err += 1,
        }
    }
    (ok, err)
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Window {
    calls: u64,
    errors: u64,
    elapsed: Duration,
    poller_wakeups: u64,
}

impl Window {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One timed window: `active` in a closed loop on two driver threads.
fn window(
    server: &Server,
    mut active: Vec<Client>,
    len: Duration,
) -> Result<(Window, Vec<Client>), String> {
    let half = active.len().div_ceil(2);
    let second: Vec<Client> = active.split_off(half);
    let wake0 = server.poller_wakeups();
    let t0 = Instant::now();
    let deadline = t0 + len;
    let drive = move |mut cs: Vec<Client>| {
        let (mut ok, mut err) = (0u64, 0u64);
        while !cs.is_empty() && Instant::now() < deadline {
            let (o, e) = call_all(&mut cs, b"0123456789abcdef0123456789abcdef");
            ok += o;
            err += e;
        }
        (ok, err, cs)
    };
    let h = std::thread::spawn(move || drive(second));
    let (o1, e1, mut back) = drive(active);
    let (o2, e2, back2) = h.join().map_err(|_| "driver thread panicked")?;
    let w = Window {
        calls: o1 + o2,
        errors: e1 + e2,
        elapsed: t0.elapsed(),
        poller_wakeups: server.poller_wakeups() - wake0,
    };
    back.extend(back2);
    Ok((w, back))
}

/// One scale run (see the module docs).
pub fn run(spec: &ScaleSpec) -> Result<ScaleResult, String> {
    let mut r = ScaleResult {
        conns: spec.conns,
        active: spec.active.min(spec.conns),
        ..ScaleResult::default()
    };
    let threads0 = proc_count("task");
    let fds0 = proc_count("fd");
    r.rss_before_kib = vm_rss_kib().unwrap_or(0);
    let start = Instant::now();
    let (server, sdev, connector) = server(QpConfig::default(), spec.idle_shrink, spec.mode);
    let cdev = MockDevice::new();
    let mut clients = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        clients.push(connect(&connector, &cdev, spec.client_credits)?);
    }
    drop(connector);
    wait_until("every accept", Duration::from_secs(120), || {
        server.live_transports() == spec.conns
    })?;
    let (_, err) = call_all(&mut clients, b"warm");
    if err != 0 {
        return Err(format!("{err} warm-up calls failed"));
    }
    r.setup = start.elapsed();
    // Let the trailing Send completions drain.
    std::thread::sleep(Duration::from_millis(50));
    r.rss_idle_kib = vm_rss_kib().unwrap_or(0);
    (r.server_mapped, r.server_mappings) = mapped(&sdev);
    r.client_mapped = mapped(&cdev).0;
    r.send_ctxts = server.report().stats.pool_size;
    r.threads = (threads0, proc_count("task"));
    r.fds = (fds0, proc_count("fd"));

    // The windows: `active` connections in a closed loop, two drivers;
    // the median window's figures are kept (the host is shared).
    let mut active: Vec<Client> = clients.drain(..r.active).collect();
    let mut windows: Vec<Window> = Vec::new();
    for _ in 0..spec.windows.max(1) {
        let (w, back) = window(&server, active, spec.window)?;
        active = back;
        windows.push(w);
    }
    windows.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let med = windows[windows.len() / 2];
    r.calls = med.calls;
    r.elapsed = med.elapsed;
    r.poller_wakeups = med.poller_wakeups;
    r.errors = windows.iter().map(|w| w.errors).sum();
    r.rate_min = windows[0].rate() as u64;
    r.rate_max = windows[windows.len() - 1].rate() as u64;
    let back = active;

    // One sweep with nothing else running: the last window's passes poked
    // the sweeper, which sweeps one period later and then parks.
    if let (Some(s), true) = (spec.idle_shrink, spec.idle_sweep) {
        let before = server.idle_sweeps();
        std::thread::sleep(s.after * 2 + Duration::from_millis(100));
        let after = server.idle_sweeps();
        if let Some(ns) =
            (after.sweep_ns - before.sweep_ns).checked_div(after.sweeps - before.sweeps)
        {
            r.idle_sweep = Duration::from_nanos(ns);
        }
    }

    let t1 = Instant::now();
    for c in back.into_iter().chain(clients) {
        c.close();
    }
    let report = server.shutdown();
    r.teardown = t1.elapsed();
    r.sweep = server.idle_sweeps();
    if report.freed != spec.conns as u64 {
        return Err(format!(
            "freed {} of {} transports",
            report.freed, spec.conns
        ));
    }
    sdev.tracker()
        .check()
        .map_err(|e| format!("server device: {e}"))?;
    Ok(r)
}

/// The shrink-over-time scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSpec {
    /// Connections.
    pub conns: usize,
    /// Pipelined calls per connection per burst round.
    pub depth: usize,
    /// Burst rounds.
    pub rounds: usize,
    /// Silence after the burst.
    pub idle_for: Duration,
    /// Sampling period.
    pub sample: Duration,
    /// The shrink (`None`: the kernel's behaviour).
    pub idle_shrink: Option<IdleShrink>,
}

/// What the timeline recorded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    /// `(seconds, mean send contexts per transport)`.
    pub points: Vec<(f64, f64)>,
    /// When the burst ended (s).
    pub burst_end: f64,
    /// Largest mean pool seen.
    pub peak: f64,
    /// Mean pool at the end.
    pub end: f64,
    /// When the mean pool first fell to the floor after the burst (s).
    pub at_floor: Option<f64>,
    /// Contexts given back.
    pub shrunk: u64,
    /// The sweeper's counters.
    pub sweep: SweepReport,
}

/// Runs the shrink-over-time scenario (see the module docs).
pub fn shrink_timeline(spec: &TimelineSpec) -> Result<Timeline, String> {
    let q = QpConfig {
        delivery: Delivery::Thread {
            latency: Duration::from_millis(1),
        },
        ..QpConfig::default()
    };
    let (server, sdev, connector) = server(q, spec.idle_shrink, ServerMode::ThreadPool);
    let cdev = MockDevice::new();
    let mut clients = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        clients.push(connect(&connector, &cdev, spec.depth as u32)?);
    }
    drop(connector);
    wait_until("every accept", Duration::from_secs(30), || {
        server.live_transports() == spec.conns
    })?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = Instant::now();
    let sampler = {
        let (server, stop) = (server.clone(), stop.clone());
        let (n, every) = (spec.conns as f64, spec.sample);
        std::thread::spawn(move || {
            let mut pts = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pool = server.report().stats.pool_size as f64 / n;
                pts.push((t0.elapsed().as_secs_f64(), pool));
                std::thread::sleep(every);
            }
            pts
        })
    };
    let opts = CallOptions::default();
    for _ in 0..spec.rounds {
        let mut tickets = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            for _ in 0..spec.depth {
                tickets.push((i, c.start_call(PROG, VERS, PROC_ECHO, b"burst", &opts)));
            }
        }
        for (i, t) in tickets {
            t.and_then(|t| clients[i].wait(t))
                .map_err(|e| format!("burst call: {e}"))?;
        }
    }
    let burst_end = t0.elapsed().as_secs_f64();
    std::thread::sleep(spec.idle_for);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let points = sampler.join().map_err(|_| "sampler panicked")?;
    let shrunk = server.report().stats.shrunk;
    for c in clients {
        c.close();
    }
    server.shutdown();
    let sweep = server.idle_sweeps();
    sdev.tracker()
        .check()
        .map_err(|e| format!("server device: {e}"))?;
    let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let end = points.last().map_or(0.0, |p| p.1);
    let floor = spec.idle_shrink.map(|s| f64::from(s.floor));
    let at_floor = floor.and_then(|f| {
        points
            .iter()
            .find(|p| p.0 > burst_end && p.1 <= f)
            .map(|p| p.0)
    });
    Ok(Timeline {
        points,
        burst_end,
        peak,
        end,
        at_floor,
        shrunk,
        sweep,
    })
}

impl Timeline {
    /// The plot line.
    pub fn series(&self, label: impl Into<String>) -> Series {
        Series {
            label: label.into(),
            points: self.points.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_make_sense() {
        let rss = vm_rss_kib().expect("Linux /proc");
        assert!(rss > 0);
        let big: Vec<u8> = vec![1; 64 << 20];
        let after = vm_rss_kib().unwrap();
        assert!(
            after >= rss + 60 * 1024,
            "{rss} -> {after} KiB with 64 MiB touched"
        );
        drop(big);
        assert!(proc_count("task") >= 1);
        assert!(proc_count("fd") >= 3);
    }

    #[test]
    fn a_small_scale_run_counts_and_cleans_up() {
        let spec = ScaleSpec {
            conns: 8,
            active: 2,
            window: Duration::from_millis(50),
            windows: 3,
            client_credits: 4,
            idle_shrink: Some(IdleShrink::DEFAULT),
            idle_sweep: false,
            mode: ServerMode::ThreadPool,
        };
        let r = run(&spec).unwrap();
        assert_eq!((r.conns, r.active), (8, 2));
        assert!(r.calls > 0 && r.errors == 0, "{r:?}");
        // Every server transport keeps its receive buffers mapped.
        let recvs = XprtConfig::default().credits * 2 + XprtConfig::default().recv_batch;
        assert!(r.server_mappings >= 8 * recvs as usize, "{r:?}");
        assert!(
            r.send_ctxts >= 8,
            "one call each needed a send context: {r:?}"
        );
    }

    #[test]
    fn the_timeline_shows_growth_then_the_shrink_to_the_floor() {
        let spec = TimelineSpec {
            conns: 2,
            depth: 16,
            rounds: 2,
            idle_for: Duration::from_millis(400),
            sample: Duration::from_millis(5),
            idle_shrink: Some(IdleShrink {
                after: Duration::from_millis(50),
                floor: 2,
            }),
        };
        let t = shrink_timeline(&spec).unwrap();
        assert!(t.peak > 2.0, "the burst grew the pools: {t:?}");
        assert_eq!(t.end, 2.0, "shrunk to the floor: {:?}", t.points.last());
        assert!(t.at_floor.is_some() && t.shrunk > 0);
    }
}
