//! Thread-pool mode on the mock NIC: the wakeups a burst of calls costs,
//! counted by the runtime's own counters (not timed). A worker's own
//! `svc_xprt_received` wakes no idle worker for a call of a program that
//! does not block (the worker takes the transport's next call itself); for
//! a blocking program it still does, as the kernel's does, so a call that
//! waits on a disk does not hold up the next.

#[path = "support/disk.rs"]
mod disk;
#[path = "../examples/common/echo.rs"]
mod echo;

use disk::Disk;

use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode, ServerReport};
use rdmaxprt::service::Dispatcher;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DISK_PROG: u32 = 0x2000_0778;

const BURSTS: u64 = 40;
const BURST: usize = 8;

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// `BURSTS` bursts of `BURST` calls of `prog` on one connection against a
/// thread pool of 2 workers and one shared poller, on a stepped mock NIC:
/// each burst's calls reach the server together (one step, so the poller
/// finds them in one poll), and their replies are delivered only once the
/// server sent all of them. Returns the server's report and the threads
/// the blocking program ran on.
fn bursts(prog: u32, vers: u32) -> (ServerReport, BTreeSet<String>) {
    let threads = Arc::new(Mutex::new(BTreeSet::new()));
    let dev = MockDevice::new();
    let cfg = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (connector, listener) = MockNetwork::new(dev.clone(), cfg);
    let server = Arc::new(Server::start(
        ServerConfig {
            mode: ServerMode::ThreadPool,
            workers: 2,
            pollers: 1,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(echo::Echo::default()).with(Disk {
            prog: DISK_PROG,
            delay: Duration::from_millis(2),
            threads: threads.clone(),
        }),
    ));
    let accept = server.serve(listener);
    let cdev = MockDevice::new();
    let qp = connector.connect(&cdev).unwrap();
    drop(connector);
    let mut c = RpcClient::new(qp, cdev.clone(), ClientConfig::default()).unwrap();
    let opts = CallOptions::default();
    let args = [7u8; 64];
    // One call first: its reply grants the credits a burst needs.
    let t = c.start_call(prog, vers, 1, &args, &opts).unwrap();
    stepped_wait(&mut c, &cdev, &t, &args);
    let before = server.report();
    for b in 1..=BURSTS {
        let tickets: Vec<_> = (0..BURST)
            .map(|_| c.start_call(prog, vers, 1, &args, &opts).unwrap())
            .collect();
        cdev.step_all();
        let sent = 1 + b * BURST as u64;
        eventually("the burst's replies to be sent", || {
            server.report().counters.replies == sent
        });
        for t in tickets {
            stepped_wait(&mut c, &cdev, &t, &args);
        }
    }
    let r = server.report();
    let during = ServerReport {
        worker_wakeups: r.worker_wakeups - before.worker_wakeups,
        worker_notifies: r.worker_notifies - before.worker_notifies,
        received_wakes: r.received_wakes - before.received_wakes,
        worker_passes: r.worker_passes - before.worker_passes,
        ..r
    };
    c.close();
    cdev.step_all();
    cdev.assert_clean();
    accept.join().unwrap();
    let server = Arc::try_unwrap(server).expect("server no longer shared");
    let report = server.shutdown();
    assert_eq!(
        report.counters.replies,
        1 + BURSTS * BURST as u64,
        "{report:?}"
    );
    dev.assert_clean();
    let t = threads.lock().unwrap().clone();
    (during, t)
}

type Client = RpcClient<rdmaxprt::mock::MockQp, MockDevice>;

/// Steps the NIC until the reply for `t` is in; checks it echoes `args`.
fn stepped_wait(c: &mut Client, cdev: &MockDevice, t: &rdmaxprt::client::Ticket, args: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        cdev.step_all();
        if let Some(r) = c.try_wait(t) {
            break r.unwrap();
        }
        assert!(Instant::now() < deadline, "no reply");
        std::thread::sleep(Duration::from_micros(100));
    };
    assert_eq!(r.results, args);
}

#[test]
fn a_burst_of_calls_wakes_no_worker_from_svc_xprt_received() {
    let (r, threads) = bursts(echo::PROG, echo::VERS);
    eprintln!(
        "worker notifies {} (from svc_xprt_received {}) wakeups {} passes {} over {BURSTS} bursts of {BURST}",
        r.worker_notifies, r.received_wakes, r.worker_wakeups, r.worker_passes
    );
    assert!(threads.is_empty());
    // The worker that took a burst's first call takes the other seven
    // itself: its svc_xprt_received wakes no one. (Waking from each, as
    // the kernel does: 32-40 such wakes over the 40 bursts.)
    assert_eq!(r.received_wakes, 0, "{r:?}");
    // Per burst: the worker woken for the calls, and one for the drain
    // after the replies' Send completions, give or take a poll that sees
    // the calls after the worker took the first.
    assert!(r.worker_notifies <= 4 * BURSTS, "{r:?}");
}

#[test]
fn a_blocking_programs_next_call_still_wakes_another_worker() {
    let (r, threads) = bursts(DISK_PROG, 1);
    eprintln!(
        "worker notifies {} (from svc_xprt_received {}) wakeups {} threads {threads:?}",
        r.worker_notifies, r.received_wakes, r.worker_wakeups
    );
    // While one worker sleeps in a call, the other was woken for the next.
    assert_eq!(
        threads,
        BTreeSet::from(["rdmaxprt-svc0".to_string(), "rdmaxprt-svc1".to_string()]),
        "{r:?}"
    );
    // The blocked worker's svc_xprt_received woke the other for its next
    // call, unless the poller's enqueue of the same transport woke it
    // first (10-47 over the 40 bursts; 0 if a worker in a blocking call
    // were counted on to look at the queue soon).
    assert!(r.received_wakes > 0, "{r:?}");
}
