//! The server runtime end to end on the mock NIC: every policy, shared and
//! dedicated completion pollers, poll groups, several connections at once;
//! byte-exact replies, and a shutdown that frees every transport with
//! nothing leaked.

#[path = "../examples/common/echo.rs"]
mod echo;

use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig, ServerMode};
use rdmaxprt::service::Dispatcher;
use std::sync::Arc;

fn run(policy: Policy, pollers: usize, conns: usize, calls: usize) {
    run_in(ServerMode::ThreadPool, policy, pollers, conns, calls);
}

/// `threads`: completion pollers (thread pool) or poll groups.
fn run_in(mode: ServerMode, policy: Policy, threads: usize, conns: usize, calls: usize) {
    let server_dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(server_dev.clone(), QpConfig::default());
    let server = Arc::new(Server::start(
        ServerConfig {
            mode,
            policy,
            pollers: threads,
            groups: threads,
            workqueue_cap: 4096,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(echo::Echo::default()),
    ));
    let accept = server.serve(listener);
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            let connector = connector.clone();
            std::thread::spawn(move || {
                let dev = MockDevice::new();
                let qp = connector.connect(&dev).unwrap();
                let mut c = RpcClient::new(qp, dev.clone(), ClientConfig::default()).unwrap();
                for n in 0..calls {
                    let len = [0, 7, 900, 5000][(n + i) % 4];
                    let args: Vec<u8> = (0..len).map(|k| (k ^ n ^ i) as u8).collect();
                    let opts = CallOptions {
                        reply_chunk: Some(len as u32 + 64),
                        ..CallOptions::default()
                    };
                    let r = c
                        .call(echo::PROG, echo::VERS, echo::PROC_ECHO, &args, &opts)
                        .unwrap();
                    assert_eq!(r.results, args, "conn {i} call {n}");
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
    assert_eq!(report.freed, conns as u64, "{report:?}");
    assert_eq!(
        (report.reclaimed_send, report.stuck_recvs),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(
        report.stats.completions,
        (conns * calls) as u64,
        "{report:?}"
    );
    if mode == ServerMode::PollGroup {
        assert_eq!(report.handoffs, 0, "nothing blocks here: {report:?}");
        assert_eq!(report.worker_wakeups, 0, "workers never ran: {report:?}");
    }
    server_dev.assert_clean();
}

#[test]
fn deferred_with_a_shared_poller_serves_many_connections_and_shuts_down_clean() {
    run(Policy::Deferred, 1, 8, 40);
}

#[test]
fn deferred_with_dedicated_pollers_serves_and_shuts_down_clean() {
    run(Policy::Deferred, 0, 4, 40);
}

#[test]
fn workqueue_and_inline_policies_serve_through_the_runtime() {
    run(Policy::Workqueue, 1, 4, 40);
    run(Policy::Inline, 2, 4, 40);
}

#[test]
fn poll_groups_serve_many_connections_and_shut_down_clean() {
    run_in(ServerMode::PollGroup, Policy::Deferred, 1, 8, 40);
    run_in(ServerMode::PollGroup, Policy::Deferred, 3, 8, 40);
}

#[test]
fn poll_groups_one_per_cpu_by_default_serve_and_shut_down_clean() {
    run_in(ServerMode::PollGroup, Policy::Deferred, 0, 4, 40);
}

#[test]
fn workqueue_and_inline_policies_serve_through_poll_groups() {
    run_in(ServerMode::PollGroup, Policy::Workqueue, 2, 4, 40);
    run_in(ServerMode::PollGroup, Policy::Inline, 2, 4, 40);
}
