//! Poll-group mode on the mock NIC: calls run on the group threads with no
//! handoff, a blocking program's calls go to the worker threads, shutdown
//! frees transports still connected, and a transport id is never confused
//! with the one that reuses its registry slot.

#[path = "support/disk.rs"]
mod disk;
#[path = "../examples/common/echo.rs"]
mod echo;

use disk::Disk;

use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockConnector, MockNetwork, Server, ServerConfig, ServerMode};
use rdmaxprt::service::{CallContext, Dispatcher, ProcError, ReplyBody, Service};
use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DISK_PROG: u32 = 0x2000_0777;

/// Echo, recording the threads it ran on.
struct Traced {
    inner: echo::Echo,
    threads: Arc<Mutex<BTreeSet<String>>>,
}

impl Service for Traced {
    fn program(&self) -> u32 {
        self.inner.program()
    }
    fn versions(&self) -> RangeInclusive<u32> {
        self.inner.versions()
    }
    fn call(
        &self,
        ctx: &CallContext<'_>,
        args: &[u8],
        out: &mut ReplyBody,
    ) -> Result<(), ProcError> {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.threads.lock().unwrap().insert(name);
        self.inner.call(ctx, args, out)
    }
}

type Threads = Arc<Mutex<BTreeSet<String>>>;

struct Fixture {
    server: Arc<Server>,
    dev: MockDevice,
    connector: MockConnector,
    echo_threads: Threads,
    disk_threads: Threads,
}

fn fixture(groups: usize) -> Fixture {
    let dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(dev.clone(), QpConfig::default());
    let (echo_threads, disk_threads) = (Threads::default(), Threads::default());
    let server = Arc::new(Server::start(
        ServerConfig {
            mode: ServerMode::PollGroup,
            groups,
            workers: 2,
            ..ServerConfig::default()
        },
        Dispatcher::new()
            .with(Traced {
                inner: echo::Echo::default(),
                threads: echo_threads.clone(),
            })
            .with(Disk {
                prog: DISK_PROG,
                delay: Duration::ZERO,
                threads: disk_threads.clone(),
            }),
    ));
    let _accept = server.serve(listener);
    Fixture {
        server,
        dev,
        connector,
        echo_threads,
        disk_threads,
    }
}

type Client = RpcClient<rdmaxprt::mock::MockQp, MockDevice>;

fn client(connector: &MockConnector) -> (Client, MockDevice) {
    let cdev = MockDevice::new();
    let qp = connector.connect(&cdev).unwrap();
    let c = RpcClient::new(qp, cdev.clone(), ClientConfig::default()).unwrap();
    (c, cdev)
}

fn call(c: &mut Client, prog: u32, proc: u32, bytes: &[u8]) {
    let r = c
        .call(prog, 1, proc, bytes, &CallOptions::default())
        .unwrap();
    assert_eq!(r.results, bytes);
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn names(t: &Threads) -> BTreeSet<String> {
    t.lock().unwrap().clone()
}

#[test]
fn a_non_blocking_program_runs_in_the_groups_with_no_handoff() {
    let f = fixture(2);
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let connector = f.connector.clone();
            std::thread::spawn(move || {
                let (mut c, cdev) = client(&connector);
                for n in 0..50u32 {
                    call(&mut c, echo::PROG, echo::PROC_ECHO, &(n ^ i).to_be_bytes());
                }
                c.close();
                cdev.assert_clean();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let r = f.server.report();
    assert_eq!(r.counters.calls, 200, "{r:?}");
    assert_eq!(r.handoffs, 0, "{r:?}");
    assert_eq!(r.worker_wakeups, 0, "no worker ever woke: {r:?}");
    assert!(r.worker_passes >= 200, "every call had a group pass: {r:?}");
    // Every enqueue of a call, a reply's completion or a release-list
    // edge happened on the group's own thread and woke nobody; only each
    // accept's first enqueue came from another thread.
    assert!(r.remote_pushes <= 4, "cross-thread wakes: {r:?}");
    let threads = names(&f.echo_threads);
    assert!(
        threads.iter().all(|t| t.starts_with("rdmaxprt-group")),
        "echo ran on {threads:?}"
    );
    let report = f.server.shutdown();
    assert_eq!(report.freed, 4, "{report:?}");
    f.dev.assert_clean();
}

#[test]
fn a_blocking_programs_calls_are_handed_to_the_workers() {
    let f = fixture(1);
    let (mut c, cdev) = client(&f.connector);
    for n in 0..20u32 {
        call(&mut c, DISK_PROG, 1, &n.to_be_bytes());
        call(&mut c, echo::PROG, echo::PROC_ECHO, &n.to_be_bytes());
    }
    let r = f.server.report();
    assert_eq!(r.counters.calls, 40, "{r:?}");
    assert_eq!(r.handoffs, 20, "only the blocking program's calls: {r:?}");
    let disk = names(&f.disk_threads);
    assert!(
        !disk.is_empty() && disk.iter().all(|t| t.starts_with("rdmaxprt-svc")),
        "the blocking program ran on {disk:?}"
    );
    let echo = names(&f.echo_threads);
    assert!(
        echo.iter().all(|t| t.starts_with("rdmaxprt-group")),
        "echo ran on {echo:?}"
    );
    c.close();
    let report = f.server.shutdown();
    assert_eq!(report.freed, 1, "{report:?}");
    assert_eq!((report.reclaimed_send, report.stuck_recvs), (0, 0));
    cdev.assert_clean();
    f.dev.assert_clean();
}

#[test]
fn shutdown_frees_transports_still_connected() {
    let f = fixture(2);
    let mut held = Vec::new();
    for i in 0..5u8 {
        let (mut c, cdev) = client(&f.connector);
        call(&mut c, echo::PROG, echo::PROC_ECHO, &[i; 100]);
        call(&mut c, DISK_PROG, 1, &[i; 10]);
        held.push((c, cdev));
    }
    eventually("5 live transports", || f.server.live_transports() == 5);
    let report = f.server.shutdown();
    assert_eq!(report.freed, 5, "{report:?}");
    assert_eq!(f.server.live_transports(), 0);
    assert_eq!(
        (
            report.reclaimed_send,
            report.stuck_recvs,
            report.failed_drains
        ),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(report.counters.replies, 10, "{report:?}");
    // The clients see their connection gone.
    for (mut c, _) in held {
        assert!(c
            .call(
                echo::PROG,
                1,
                echo::PROC_ECHO,
                b"late",
                &CallOptions::default()
            )
            .is_err());
    }
    f.dev.assert_clean();
}

#[test]
fn a_closed_id_stays_closed_after_its_slot_is_reused() {
    let f = fixture(1);
    let (mut a, adev) = client(&f.connector);
    call(&mut a, echo::PROG, echo::PROC_ECHO, b"a");
    let old = f.server.transports()[0].id;
    assert!(f.server.close_transport(old));
    eventually("the first transport freed", || {
        f.server.live_transports() == 0
    });
    assert!(!f.server.close_transport(old), "freed: not live");
    drop(a);
    let (mut b, bdev) = client(&f.connector);
    call(&mut b, echo::PROG, echo::PROC_ECHO, b"b");
    let new = f.server.transports()[0].id;
    assert_ne!(new, old);
    assert!(
        !f.server.close_transport(old),
        "a stale id must not close the transport in its reused slot"
    );
    call(&mut b, echo::PROG, echo::PROC_ECHO, b"still served");
    assert_eq!(f.server.live_transports(), 1);
    b.close();
    let report = f.server.shutdown();
    assert_eq!(report.freed, 2, "{report:?}");
    adev.assert_clean();
    bdev.assert_clean();
    f.dev.assert_clean();
}

/// A reply longer than the SQ goes out in SQ-sized batches, each waiting
/// for the previous one's completions; in a poll group only the waiting
/// thread polls them, so the wait must poll, not sleep (it would never
/// wake).
#[test]
fn a_reply_longer_than_the_sq_waits_by_polling_on_the_group_thread() {
    let dev = MockDevice::new();
    let qcfg = QpConfig {
        sq_depth: 1,
        ..QpConfig::default()
    };
    let (connector, listener) = MockNetwork::new(dev.clone(), qcfg);
    let server = Arc::new(Server::start(
        ServerConfig {
            mode: ServerMode::PollGroup,
            groups: 1,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(echo::Echo::default()),
    ));
    let _accept = server.serve(listener);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let cdev = MockDevice::new();
        let qp = connector.connect(&cdev).unwrap();
        let cfg = ClientConfig {
            credits: 1,
            ..ClientConfig::default()
        };
        let mut c = RpcClient::new(qp, cdev.clone(), cfg).unwrap();
        let args: Vec<u8> = (0..30_000).map(|k| k as u8).collect();
        let opts = CallOptions {
            reply_chunk: Some(args.len() as u32 + 64),
            read_payload: None,
            ..CallOptions::default()
        };
        for _ in 0..3 {
            let r = c
                .call(echo::PROG, echo::VERS, echo::PROC_ECHO, &args, &opts)
                .unwrap();
            assert_eq!(r.results, args);
        }
        c.close();
        let _ = done_tx.send(());
        cdev
    });
    // A sleeping wait would hang the group (and the client) for good.
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the calls finished: the group thread did not hang in an SQ wait");
    let cdev = client.join().unwrap();
    let r = server.report();
    assert!(r.stats.sq_starved > 0, "the SQ wait was exercised: {r:?}");
    let report = server.shutdown();
    assert_eq!((report.reclaimed_send, report.stuck_recvs), (0, 0));
    cdev.assert_clean();
    dev.assert_clean();
}
