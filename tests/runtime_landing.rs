//! Read-chunk backpressure in the runtime: one landing buffer per
//! connection, several 64 KiB echoes in flight on each of several
//! connections, in both server modes. Every call but one per connection
//! waits for the buffer at some point; the transport must be scheduled
//! again when it comes back (returned by the call, or by the release of
//! the reply's send context that wrote from it: the worker's drain under
//! Deferred, the completion handler under Inline, a release thread under
//! Workqueue): a lost wakeup leaves a call unanswered and the client times
//! out. With the mock NIC on its own thread this
//! also needs the NIC thread to ring the completion notifiers (the
//! runtime's pollers sleep behind them) after it runs work requests: it
//! used to wake only `wait_for_completions` sleepers, so a server waiting
//! on a completion while its client sat idle stalled until the client
//! timed out (the `*_nic_thread` cases failed that way).

#[path = "../examples/common/echo.rs"]
mod echo;

use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode};
use rdmaxprt::service::Dispatcher;
use rdmaxprt::transport::XprtConfig;
use std::sync::Arc;
use std::time::Duration;

const CONNS: usize = 3;
const ROUNDS: usize = 15;
const WINDOW: usize = 4;

fn run(mode: ServerMode, delivery: Delivery) {
    run_policy(mode, delivery, Policy::Deferred);
}

fn run_policy(mode: ServerMode, delivery: Delivery, policy: Policy) {
    let server_dev = MockDevice::new();
    let qcfg = QpConfig {
        delivery,
        ..QpConfig::default()
    };
    let (connector, listener) = MockNetwork::new(server_dev.clone(), qcfg);
    let server = Arc::new(Server::start(
        ServerConfig {
            mode,
            policy,
            groups: 2,
            xprt: XprtConfig {
                read_bufs: 1,
                ..XprtConfig::default()
            },
            ..ServerConfig::default()
        },
        Dispatcher::new().with(echo::Echo::default()),
    ));
    let accept = server.serve(listener);
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let connector = connector.clone();
            std::thread::spawn(move || {
                let dev = MockDevice::new();
                let qp = connector.connect(&dev).unwrap();
                let ccfg = ClientConfig {
                    timeout: Duration::from_secs(20),
                    ..ClientConfig::default()
                };
                let mut c = RpcClient::new(qp, dev.clone(), ccfg).unwrap();
                for round in 0..ROUNDS {
                    let calls: Vec<_> = (0..WINDOW)
                        .map(|k| {
                            let len = (64 << 10) - 8 * k;
                            let args: Vec<u8> =
                                (0..len).map(|b| (b ^ k ^ round ^ i) as u8).collect();
                            let opts = CallOptions {
                                write_chunk: Some(len as u32),
                                ..CallOptions::default()
                            };
                            let t = c
                                .start_call(
                                    echo::PROG,
                                    echo::VERS,
                                    echo::PROC_ECHO_BULK,
                                    &args,
                                    &opts,
                                )
                                .unwrap();
                            (t, args)
                        })
                        .collect();
                    for (t, args) in calls {
                        let r = c.wait(t).unwrap();
                        assert_eq!(r.bulk.as_deref(), Some(&args[..]), "conn {i} round {round}");
                    }
                }
                c.close();
                dev.assert_clean();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    drop(connector);
    accept.join().unwrap();
    let server = Arc::try_unwrap(server).unwrap();
    let report = server.shutdown();
    assert_eq!(report.freed, CONNS as u64, "{report:?}");
    assert_eq!(report.reclaimed_send, 0, "{report:?}");
    // Whether (and how often) calls waited depends on thread timing; the
    // transport tests show the wait deterministically. Here every call
    // must complete.
    eprintln!("{mode:?}: {} calls waited", report.counters.read_waits);
    assert_eq!(
        report.counters.read_calls,
        (CONNS * ROUNDS * WINDOW) as u64,
        "{report:?}"
    );
    server_dev.assert_clean();
}

#[test]
fn thread_pool_inline_delivery() {
    run(ServerMode::ThreadPool, Delivery::Inline);
}

#[test]
fn thread_pool_nic_thread() {
    run(
        ServerMode::ThreadPool,
        Delivery::Thread {
            latency: Duration::from_micros(20),
        },
    );
}

#[test]
fn poll_groups_inline_delivery() {
    run(ServerMode::PollGroup, Delivery::Inline);
}

#[test]
fn poll_groups_nic_thread() {
    run(
        ServerMode::PollGroup,
        Delivery::Thread {
            latency: Duration::from_micros(20),
        },
    );
}

/// The landing buffer a reply wrote from comes back at its context's
/// release, wherever the policy runs it.
#[test]
fn thread_pool_inline_release_nic_thread() {
    run_policy(
        ServerMode::ThreadPool,
        Delivery::Thread {
            latency: Duration::from_micros(20),
        },
        Policy::Inline,
    );
}

#[test]
fn thread_pool_workqueue_release_nic_thread() {
    run_policy(
        ServerMode::ThreadPool,
        Delivery::Thread {
            latency: Duration::from_micros(20),
        },
        Policy::Workqueue,
    );
}

#[test]
fn poll_groups_inline_release_inline_delivery() {
    run_policy(ServerMode::PollGroup, Delivery::Inline, Policy::Inline);
}
