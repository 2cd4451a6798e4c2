//! The idle send-context shrink in the runtime: a transport whose replies
//! stopped gives its free contexts back down to the floor, the sweeper then
//! parks without a timer (pollers and workers stay asleep), a new burst
//! grows the pool again and wakes the sweeper, and teardown leaks nothing.

#[path = "../examples/common/echo.rs"]
mod echo;

use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig};
use rdmaxprt::service::Dispatcher;
use rdmaxprt::transport::{IdleShrink, XprtConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOOR: u32 = 1;
const PERIOD: Duration = Duration::from_millis(40);

type Client = RpcClient<rdmaxprt::mock::MockQp, MockDevice>;

fn server(idle_shrink: Option<IdleShrink>) -> (Arc<Server>, MockDevice, Client, MockDevice) {
    let dev = MockDevice::new();
    // Send completions lag 1 ms behind their post, so a burst of pipelined
    // calls holds many contexts at once and the pool grows.
    let q = QpConfig {
        delivery: Delivery::Thread {
            latency: Duration::from_millis(1),
        },
        ..QpConfig::default()
    };
    let (connector, listener) = MockNetwork::new(dev.clone(), q);
    let cfg = ServerConfig {
        xprt: XprtConfig {
            idle_shrink,
            ..XprtConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = Arc::new(Server::start(
        cfg,
        Dispatcher::new().with(echo::Echo::default()),
    ));
    let _accept = server.serve(listener);
    let cdev = MockDevice::new();
    let qp = connector.connect(&cdev).unwrap();
    let c = RpcClient::new(qp, cdev.clone(), ClientConfig::default()).unwrap();
    (server, dev, c, cdev)
}

/// 32 pipelined calls, then every reply.
fn burst(c: &mut Client) {
    let opts = CallOptions::default();
    let tickets: Vec<_> = (0..32u8)
        .map(|i| {
            c.start_call(echo::PROG, echo::VERS, echo::PROC_ECHO, &[i; 8], &opts)
                .unwrap()
        })
        .collect();
    for (i, t) in tickets.into_iter().enumerate() {
        assert_eq!(c.wait(t).unwrap().results, [i as u8; 8]);
    }
}

fn pool_size(s: &Server) -> u64 {
    s.transports()[0].stats.pool_size
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn an_idle_transport_shrinks_to_its_floor_then_grows_again() {
    let shrink = IdleShrink {
        after: PERIOD,
        floor: FLOOR,
    };
    let (server, dev, mut c, cdev) = server(Some(shrink));
    // A server that has served nothing runs no timer: the sweeper starts
    // parked.
    std::thread::sleep(PERIOD * 3);
    assert_eq!(server.idle_sweeps().sweeps, 0, "swept before any call");
    burst(&mut c);
    let grown = pool_size(&server);
    assert!(grown > 2, "the burst should grow the pool: {grown}");

    eventually("the idle shrink", || pool_size(&server) <= u64::from(FLOOR));
    let t = server.transports()[0];
    assert_eq!(t.stats.shrunk, grown - u64::from(FLOOR), "{:?}", t.stats);
    assert_eq!(t.census.allocated, FLOOR, "{:?}", t.census);
    assert_eq!(t.census.free, FLOOR, "{:?}", t.census);
    assert_eq!(u64::from(t.census.hollow), t.stats.shrunk, "{:?}", t.census);

    // At the floor the sweeper parks: no timer, and the pollers and
    // workers of the idle transport stay asleep too.
    eventually("the sweeper to park", || server.idle_sweeps().parks >= 1);
    let (sweeps, wakeups, passes) = (
        server.idle_sweeps().sweeps,
        server.poller_wakeups(),
        server.report().worker_passes,
    );
    std::thread::sleep(PERIOD * 5);
    assert_eq!(server.idle_sweeps().sweeps, sweeps, "a parked sweeper woke");
    assert_eq!(server.poller_wakeups(), wakeups, "an idle poller woke");
    assert_eq!(server.report().worker_passes, passes, "an idle worker ran");

    // Load again: the pool grows back (reallocating into hollow slots),
    // the worker's pass wakes the sweeper, and it shrinks once more.
    let allocs = server.transports()[0].stats.allocations;
    burst(&mut c);
    assert!(pool_size(&server) > u64::from(FLOOR));
    assert!(server.transports()[0].stats.allocations > allocs);
    eventually("the second shrink", || {
        pool_size(&server) <= u64::from(FLOOR)
    });
    let r = server.idle_sweeps();
    assert!(r.sweeps > sweeps, "{r:?}");
    assert_eq!(r.freed, server.transports()[0].stats.shrunk, "{r:?}");

    c.close();
    let report = server.shutdown();
    assert_eq!(report.freed, 1);
    dev.assert_clean();
    cdev.assert_clean();
}

#[test]
fn with_the_shrink_off_nothing_sweeps_and_the_pool_keeps_its_size() {
    let (server, dev, mut c, cdev) = server(None);
    burst(&mut c);
    let grown = pool_size(&server);
    std::thread::sleep(PERIOD * 4);
    assert_eq!(pool_size(&server), grown);
    assert_eq!(server.idle_sweeps(), Default::default());
    assert_eq!(server.transports()[0].stats.shrunk, 0);
    c.close();
    server.shutdown();
    dev.assert_clean();
    cdev.assert_clean();
}

/// Regression (scale): the shared doorbell poller polled every transport it
/// served on each wakeup, so with 10,000 idle connections each call paid a
/// scan of all of them (10,000 mock connections took 27 s to set up). Now a
/// wakeup polls only the transports whose QP rang.
#[test]
fn a_poller_wakeup_polls_only_the_transports_that_rang() {
    const IDLE: usize = 200;
    let dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(dev.clone(), QpConfig::default());
    let server = Arc::new(Server::start(
        ServerConfig::default(),
        Dispatcher::new().with(echo::Echo::default()),
    ));
    let _accept = server.serve(listener);
    let cdev = MockDevice::new();
    let mut clients: Vec<Client> = (0..=IDLE)
        .map(|_| {
            let qp = connector.connect(&cdev).unwrap();
            RpcClient::new(qp, cdev.clone(), ClientConfig::default()).unwrap()
        })
        .collect();
    eventually("every accept", || server.live_transports() == IDLE + 1);
    std::thread::sleep(Duration::from_millis(20));
    let c = &mut clients[0];
    let opts = CallOptions::default();
    let polls = server.poller_polls();
    const CALLS: u64 = 50;
    for i in 0..CALLS {
        let r = c
            .call(
                echo::PROG,
                echo::VERS,
                echo::PROC_ECHO,
                &[i as u8; 4],
                &opts,
            )
            .unwrap();
        assert_eq!(r.results, [i as u8; 4]);
    }
    let per_call = (server.poller_polls() - polls) as f64 / CALLS as f64;
    assert!(
        per_call < 10.0,
        "{per_call:.1} transport polls per call with {IDLE} idle transports"
    );
    for c in clients {
        c.close();
    }
    server.shutdown();
    dev.assert_clean();
    cdev.assert_clean();
}
