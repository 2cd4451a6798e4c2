//! B5, the idle trailing edge: an idle transport sends its last reply; how
//! long until that reply's send context is released (back on the free
//! list) with no further RPC, and how many worker wakeups it took. The
//! seed's answer is the backstop: the Send completion's push takes the
//! release list from empty to non-empty, sets DATA and enqueues the
//! transport once; that worker's pass (recvfrom finds nothing, then
//! release_ctxt) drains it.
//!
//! - [`threaded`]: the real runtime. Per trial one call; when the client
//!   has the reply (so the reply's Send has executed: Inline delivery
//!   queues its completion during the post), poll the server's counters
//!   until the contexts in use are back to the idle baseline. Wakeups =
//!   the runtime's worker passes started after the client saw the reply
//!   and up to the release (`ServerReport::worker_passes`, counted as each
//!   pass starts; a backstop pass that started just before the client's
//!   look counts 0); the `backstop_enqueues` delta is kept alongside.
//!   Edges already released when the client first looks after its reply
//!   are reported apart: they say nothing about the trailing edge.
//! - [`poll_group`]: the same with the runtime in poll-group mode (the
//!   group's own passes count: a group pass is its thread's wakeup for the
//!   transport).
//! - [`rtc`]: the same on one thread with a hand-driven transport: after
//!   the reply, loop { poll completions; if enqueued, one worker pass }
//!   until the pool census shows nothing pending and in-use back to the
//!   baseline; count the worker passes.

use crate::e2e::{elapsed_ns, EchoService, Payload, PROG, VERS};
use crate::rtc::{server_turn, worker_pass, RtcConn};
use rdmaxprt::client::{ClientConfig, RpcClient};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode};
use rdmaxprt::service::Dispatcher;
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use std::time::{Duration, Instant};

/// One idle edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// ns from "the client has the reply" to "context released"; `None`
    /// if not released within the timeout.
    pub ns: Option<u64>,
    /// Worker wakeups it took: worker passes after the reply until the
    /// release (threaded: started after the client saw the reply).
    pub wakeups: u64,
    /// Backstop enqueues during the trial (the empty -> non-empty pushes).
    pub backstops: u64,
    /// Already released when the client saw the reply (the worker's own
    /// release_ctxt after sendto found the completion handled).
    pub already: bool,
}

/// Many idle edges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleResult {
    /// One per trial.
    pub edges: Vec<Edge>,
}

impl IdleResult {
    /// Release times of the released trials, sorted.
    pub fn sorted_ns(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.edges.iter().filter_map(|e| e.ns).collect();
        v.sort_unstable();
        v
    }

    /// Trials not released within the timeout.
    pub fn timed_out(&self) -> usize {
        self.edges.iter().filter(|e| e.ns.is_none()).count()
    }

    /// Trials released before the client saw the reply.
    pub fn already(&self) -> usize {
        self.edges.iter().filter(|e| e.already).count()
    }

    /// `(min, max, trials with exactly one)` wakeups over the edges not
    /// already released when the client saw the reply (the trailing edges
    /// proper).
    pub fn wakeups(&self) -> (u64, u64, usize) {
        let trailing = || self.edges.iter().filter(|e| !e.already);
        let min = trailing().map(|e| e.wakeups).min().unwrap_or(0);
        let max = trailing().map(|e| e.wakeups).max().unwrap_or(0);
        let one = trailing().filter(|e| e.wakeups == 1).count();
        (min, max, one)
    }

    /// `(min, max)` backstop enqueues per trial, over every trial.
    pub fn backstops(&self) -> (u64, u64) {
        let min = self.edges.iter().map(|e| e.backstops).min().unwrap_or(0);
        let max = self.edges.iter().map(|e| e.backstops).max().unwrap_or(0);
        (min, max)
    }
}

/// Threaded: the real runtime (Deferred, [`crate::threaded::WORKERS`]
/// workers), one connection, `trials` idle edges of `size`-byte echoes;
/// each edge waits at most `timeout` for the release.
pub fn threaded(trials: usize, size: usize, timeout: Duration) -> IdleResult {
    runtime(ServerMode::ThreadPool, trials, size, timeout)
}

/// As [`threaded`], with the runtime in poll-group mode
/// ([`crate::threaded::groups`] groups): its wakeups are the group's
/// passes after the reply.
pub fn poll_group(trials: usize, size: usize, timeout: Duration) -> IdleResult {
    runtime(ServerMode::PollGroup, trials, size, timeout)
}

fn runtime(mode: ServerMode, trials: usize, size: usize, timeout: Duration) -> IdleResult {
    let server_dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(server_dev.clone(), QpConfig::default());
    let server = std::sync::Arc::new(Server::start(
        ServerConfig {
            mode,
            workers: crate::threaded::WORKERS,
            groups: crate::threaded::groups(),
            policy: Policy::Deferred,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(EchoService::default()),
    ));
    let accept = server.serve(listener);
    let cdev = MockDevice::new();
    let qp = connector.connect(&cdev).expect("connect");
    drop(connector);
    let mut c = RpcClient::new(qp, cdev, ClientConfig::default()).expect("client");
    let p = Payload::new(size);
    let in_use = || server.report().stats.in_use;
    let backstops = || server.report().stats.backstop_enqueues;
    let passes = || server.report().worker_passes;
    // Settle: one call, then wait for its context to come back.
    if let Ok(t) = c.start_call(PROG, VERS, p.proc, &p.args, &p.opts()) {
        let _ = c.wait(t);
    }
    let settle = Instant::now();
    while in_use() != 0 && settle.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_micros(100));
    }
    let baseline = in_use();
    let mut res = IdleResult::default();
    for _ in 0..trials {
        let b0 = backstops();
        let mut e = threaded_edge(&mut c, &p, baseline, timeout, &in_use, &passes);
        e.backstops = backstops() - b0;
        res.edges.push(e);
    }
    c.close();
    accept.join().expect("listener thread");
    let server = std::sync::Arc::try_unwrap(server).expect("server no longer shared");
    let rep = server.shutdown();
    if rep.reclaimed_send != 0 {
        eprintln!("B5 {mode:?} teardown: {rep:?}");
    }
    res
}

/// One threaded idle edge: start a call, then spin (yielding) on both the
/// client's completions and the server's counters. With Inline delivery
/// the client's receive completion is queued in the same step as the
/// server's Send completion, so "the client polled the reply" marks the
/// Send completion to within one spin; the edge ends when the contexts in
/// use are back to `baseline`; its wakeups are the worker passes started
/// in between (backstops are filled in by the caller).
fn threaded_edge(
    c: &mut RpcClient<rdmaxprt::mock::MockQp, MockDevice>,
    p: &Payload,
    baseline: u64,
    timeout: Duration,
    in_use: &dyn Fn() -> u64,
    passes: &dyn Fn() -> u64,
) -> Edge {
    let edge = |ns, wakeups, already| Edge {
        ns,
        wakeups,
        backstops: 0,
        already,
    };
    let failed = edge(None, 0, false);
    let Ok(t) = c.start_call(PROG, VERS, p.proc, &p.args, &p.opts()) else {
        return failed;
    };
    let start = Instant::now();
    let mut reply_at = None;
    let mut passes_at_reply = 0;
    loop {
        if reply_at.is_none() {
            match c.try_wait(&t) {
                Some(Ok(r)) if p.check(&r) => {
                    let at = Instant::now();
                    passes_at_reply = passes();
                    // Released before this first look after the reply?
                    if in_use() <= baseline {
                        return edge(Some(0), 0, true);
                    }
                    reply_at = Some(at);
                }
                Some(_) => return failed,
                None => {}
            }
        }
        if let Some(at) = reply_at {
            if in_use() <= baseline {
                let n = passes().saturating_sub(passes_at_reply);
                return edge(Some(elapsed_ns(at)), n, false);
            }
            if at.elapsed() > timeout {
                return failed;
            }
        } else if start.elapsed() > timeout {
            return failed;
        }
        std::thread::yield_now();
    }
}

/// Run-to-completion: one hand-driven transport, `trials` idle edges.
/// Wakeups = worker passes after the reply until released (at most
/// `max_passes` loop turns are tried).
pub fn rtc(trials: usize, size: usize, max_passes: u64) -> IdleResult {
    let dev = MockDevice::new();
    let mut conn = RtcConn::new(&dev, 1);
    let d = Dispatcher::new().with(EchoService::default());
    let p = Payload::new(size);
    let mut res = IdleResult::default();
    let stats = |c: &RtcConn| c.server.send_lifecycle().stats().snapshot();
    let settled = |c: &RtcConn, baseline: u64| {
        let census = c.server.send_lifecycle().pool().census();
        census.pending_release == 0 && stats(c).in_use <= baseline
    };
    for trial in 0..=trials {
        let Ok(t) = conn
            .client
            .start_call(PROG, VERS, p.proc, &p.args, &p.opts())
        else {
            res.edges.push(Edge {
                ns: None,
                wakeups: 0,
                backstops: 0,
                already: false,
            });
            continue;
        };
        // Serve it: poll (the receive enqueues), worker pass (sendto; its
        // release_ctxt finds the Send completion not yet handled).
        // One poll and at most one pass per step, the reply checked after
        // each, so the step that sent it stops before polling its Send
        // completion.
        let mut reply = None;
        for _ in 0..1000 {
            let _ = conn.server.poll(usize::MAX);
            if conn.hook.take() {
                worker_pass(&conn.server, &d);
            }
            if let Some(r) = conn.client.try_wait(&t) {
                reply = Some(r);
                break;
            }
        }
        let ok = reply.is_some_and(|r| r.is_ok_and(|r| p.check(&r)));
        if trial == 0 {
            // Warm-up: release, then the idle baseline (no context in use).
            for _ in 0..4 {
                server_turn(&conn.server, &conn.hook, &d);
            }
            continue;
        }
        let baseline = 0;
        let b0 = stats(&conn).backstop_enqueues;
        let t0 = Instant::now();
        let already = settled(&conn, baseline);
        let mut passes = 0;
        let mut ns = None;
        for _ in 0..max_passes.max(1) {
            if settled(&conn, baseline) {
                ns = Some(elapsed_ns(t0));
                break;
            }
            let _ = conn.server.poll(usize::MAX);
            if conn.hook.take() {
                worker_pass(&conn.server, &d);
                passes += 1;
            }
        }
        if ns.is_none() && settled(&conn, baseline) {
            ns = Some(elapsed_ns(t0));
        }
        res.edges.push(Edge {
            ns: if ok { ns } else { None },
            wakeups: passes,
            backstops: stats(&conn).backstop_enqueues - b0,
            already,
        });
    }
    let _ = conn.finish();
    if let Err(e) = dev.tracker().check() {
        eprintln!("B5 run-to-completion tracker: {e}");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_idle_edge_takes_exactly_one_worker_pass() {
        for size in [64, 64 << 10] {
            let r = rtc(20, size, 10);
            assert_eq!(r.edges.len(), 20);
            assert_eq!(r.timed_out(), 0, "{r:?}");
            assert_eq!(r.already(), 0, "the trailing release needs the backstop");
            assert_eq!(r.wakeups(), (1, 1, 20), "{r:?}");
        }
    }

    #[test]
    fn threaded_idle_edge_is_released_with_one_backstop_enqueue() {
        let r = threaded(20, 64, Duration::from_secs(5));
        assert_eq!(r.edges.len(), 20);
        assert_eq!(r.timed_out(), 0, "{r:?}");
        assert_eq!(r.backstops(), (1, 1), "{r:?}");
        // Trailing edges (not released by the serving pass) took at most
        // one worker pass after the reply.
        let (_, hi, _) = r.wakeups();
        assert!(hi <= 1, "{r:?}");
    }

    #[test]
    fn summaries() {
        let e = |ns, wakeups, already| Edge {
            ns,
            wakeups,
            backstops: 1,
            already,
        };
        let r = IdleResult {
            edges: vec![
                e(Some(30), 1, false),
                e(None, 0, false),
                e(Some(10), 2, true),
            ],
        };
        assert_eq!(r.sorted_ns(), vec![10, 30]);
        assert_eq!(r.timed_out(), 1);
        assert_eq!(r.already(), 1);
        // The already-released edge is left out.
        assert_eq!(r.wakeups(), (0, 1, 1));
        assert_eq!(r.backstops(), (1, 1));
    }
}
