//! The runtime's handle and run-time counters on the mock NIC: a shared
//! server shuts down while a connector (and its accept thread) still
//! lives, and bad input shows up in the per-transport and total counters
//! while the transport is live. Each in both server modes (thread pool and
//! poll groups).

#[path = "transport_common.rs"]
mod common;
#[path = "../examples/common/echo.rs"]
mod echo;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode};
use rdmaxprt::service::Dispatcher;
use rdmaxprt::transport::XprtCountersSnapshot;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn server(mode: ServerMode) -> (Arc<Server>, MockDevice, rdmaxprt::runtime::MockConnector) {
    let dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(dev.clone(), QpConfig::default());
    let server = Arc::new(Server::start(
        ServerConfig {
            mode,
            groups: 2,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(echo::Echo::default()),
    ));
    // The accept thread lives as long as the connector.
    let _accept = server.serve(listener);
    (server, dev, connector)
}

type Client = RpcClient<rdmaxprt::mock::MockQp, MockDevice>;

/// A client connected through `connector`, on a device of its own.
fn client(connector: &rdmaxprt::runtime::MockConnector) -> (Client, MockDevice) {
    let cdev = MockDevice::new();
    let qp = connector.connect(&cdev).unwrap();
    let c = RpcClient::new(qp, cdev.clone(), ClientConfig::default()).unwrap();
    (c, cdev)
}

/// One echo call; checks the bytes come back.
fn echo_once(c: &mut Client, bytes: &[u8]) {
    let opts = CallOptions::default();
    let r = c
        .call(echo::PROG, echo::VERS, echo::PROC_ECHO, bytes, &opts)
        .unwrap();
    assert_eq!(r.results, bytes);
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_shared_server_shuts_down_while_a_connector_is_kept_for_reconnects() {
    a_shared_server_shuts_down_while_a_connector_is_kept_for_reconnects_in(ServerMode::ThreadPool);
}

#[test]
fn a_shared_server_shuts_down_while_a_connector_is_kept_for_reconnects_in_poll_groups() {
    a_shared_server_shuts_down_while_a_connector_is_kept_for_reconnects_in(ServerMode::PollGroup);
}

fn a_shared_server_shuts_down_while_a_connector_is_kept_for_reconnects_in(mode: ServerMode) {
    let (server, dev, connector) = server(mode);
    let (mut c, cdev) = client(&connector);
    echo_once(&mut c, b"ping");
    c.close();
    cdev.assert_clean();
    // No Arc::try_unwrap: the accept thread and the connector still hold on.
    let report = server.shutdown();
    assert_eq!(report.freed, 1, "{report:?}");
    assert_eq!(server.live_transports(), 0);
    assert_eq!((report.reclaimed_send, report.stuck_recvs), (0, 0));
    assert_eq!(report.counters.calls, 1, "{report:?}");
    assert_eq!(report.counters.replies, 1, "{report:?}");
    // A reconnect after shutdown is refused: nothing is accepted.
    let late = MockDevice::new();
    let _qp = connector.connect(&late).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(server.live_transports(), 0);
    dev.assert_clean();
}

#[test]
fn a_closed_connection_is_freed_while_the_workers_sleep() {
    a_closed_connection_is_freed_while_the_server_sleeps_in(ServerMode::ThreadPool);
}

#[test]
fn a_closed_connection_is_freed_while_the_groups_sleep() {
    a_closed_connection_is_freed_while_the_server_sleeps_in(ServerMode::PollGroup);
}

/// The closing pass frees the transport without a shutdown: no thread
/// that goes back to sleep afterwards (a worker waiting for its next job)
/// still holds it.
fn a_closed_connection_is_freed_while_the_server_sleeps_in(mode: ServerMode) {
    let (server, dev, connector) = server(mode);
    for _ in 0..3 {
        let (mut c, cdev) = client(&connector);
        for i in 0..20u8 {
            echo_once(&mut c, &[i; 64]);
        }
        let ids: Vec<u64> = server.transports().iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), 1);
        assert!(server.close_transport(ids[0]));
        eventually("the closed transport to be freed", || {
            server.live_transports() == 0
        });
        c.close();
        cdev.assert_clean();
    }
    let report = server.shutdown();
    assert_eq!(report.freed, 3, "{report:?}");
    assert_eq!(report.counters.replies, 60, "{report:?}");
    dev.assert_clean();
}

#[test]
fn bad_input_is_counted_per_transport_and_in_total_while_live() {
    bad_input_is_counted_per_transport_and_in_total_while_live_in(ServerMode::ThreadPool);
}

#[test]
fn bad_input_is_counted_per_transport_and_in_total_while_live_in_poll_groups() {
    bad_input_is_counted_per_transport_and_in_total_while_live_in(ServerMode::PollGroup);
}

fn bad_input_is_counted_per_transport_and_in_total_while_live_in(mode: ServerMode) {
    let (server, dev, connector) = server(mode);
    let cdev = MockDevice::new();
    let raw = RawClient::new(&cdev, connector.connect(&cdev).unwrap(), 8, 4096);
    eventually("the transport to be live", || server.live_transports() == 1);
    // Transport version 2 -> ERR_VERS; an unknown procedure -> dropped
    // (RDMA_DONE from a client needs no answer); a call -> a reply (of the
    // harness's program, which this server answers with PROG_UNAVAIL).
    raw.send(&words(&[0x11, 2, 32, 0, 0, 0, 0]));
    raw.send(&words(&[0x12, 1, 32, 3, 0, 0, 0]));
    let mut good = words(&[0x13, 1, 32, 0, 0, 0, 0]);
    good.extend_from_slice(&rpc_call(0x13, b"ok"));
    raw.send(&good);
    let mut got = Vec::new();
    eventually("two answers", || {
        got.extend(raw.recv());
        got.len() >= 2
    });
    let per = server.transports();
    assert_eq!(per.len(), 1);
    let want = XprtCountersSnapshot {
        calls: 1,
        // The RDMA_ERROR and the RPC reply.
        replies: 2,
        error_replies: 1,
        err_vers: 1,
        err_chunk: 0,
        dropped: 1,
        read_calls: 0,
        read_chunks: 0,
        write_chunks: 0,
        reply_chunks: 0,
        bogus_completions: 0,
        partial_posts: 0,
        // The RPC reply (a 24-byte accepted header, no results), pulled
        // up into the header buffer.
        copies: 1,
        copied_bytes: 24,
        read_waits: 0,
        stage_waits: 0,
    };
    let mut seen = XprtCountersSnapshot::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen != want && Instant::now() < deadline {
        seen = server.transports()[0].counters;
    }
    assert_eq!(seen, want, "per-transport counters");
    let total = server.report();
    assert_eq!(total.counters, want, "{total:?}");
    assert_eq!(total.live, 1);
    drop(raw);
    let report = server.shutdown();
    assert_eq!(
        report.counters, want,
        "counters survive teardown: {report:?}"
    );
    assert_eq!(report.freed, 1);
    cdev.assert_clean();
    dev.assert_clean();
}

#[test]
fn an_idle_server_sleeps_without_a_timer() {
    an_idle_server_sleeps_without_a_timer_in(ServerMode::ThreadPool);
}

#[test]
fn an_idle_server_sleeps_without_a_timer_in_poll_groups() {
    an_idle_server_sleeps_without_a_timer_in(ServerMode::PollGroup);
}

fn an_idle_server_sleeps_without_a_timer_in(mode: ServerMode) {
    let (server, dev, connector) = server(mode);
    let (mut c, cdev) = client(&connector);
    echo_once(&mut c, b"x");
    // Let the trailing Send completion and its release settle.
    std::thread::sleep(Duration::from_millis(50));
    let before = server.poller_wakeups();
    std::thread::sleep(Duration::from_millis(200));
    let idle = server.poller_wakeups() - before;
    assert_eq!(idle, 0, "the poller woke {idle} times with nothing to do");
    // It still wakes for work.
    echo_once(&mut c, b"y");
    assert!(server.poller_wakeups() > before);
    c.close();
    server.shutdown();
    cdev.assert_clean();
    dev.assert_clean();
}
