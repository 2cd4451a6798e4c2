//! An echo server on the mock NIC: the server runtime (workers, pollers,
//! deferred release) serving the echo program, with in-process clients
//! (the mock NIC cannot cross processes) exercising every chunk type.
//!
//! `cargo run --example echo_server -- --clients 4 --calls 200`

#[path = "common/echo.rs"]
mod echo;

use clap::Parser;
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig};
use rdmaxprt::service::Dispatcher;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(about = "echo server on the mock NIC with in-process clients")]
struct Args {
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Calls per client (mixed sizes and chunk types).
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Server worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn main() {
    let args = Args::parse();
    let server_dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(server_dev.clone(), QpConfig::default());
    let server = Arc::new(Server::start(
        ServerConfig {
            workers: args.workers,
            policy: Policy::Deferred,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(echo::Echo::default()),
    ));
    let accept = server.serve(listener);

    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let connector = connector.clone();
            let calls = args.calls;
            std::thread::spawn(move || {
                let dev = MockDevice::new();
                let qp = connector.connect(&dev).expect("connect");
                let mut c =
                    RpcClient::new(qp, dev.clone(), ClientConfig::default()).expect("client");
                let sizes = [0usize, 1, 100, 1000, 1024, 4096, 65536, 1 << 20];
                let mut bytes = 0usize;
                for n in 0..calls {
                    let len = sizes[(n + i) % sizes.len()];
                    let args: Vec<u8> = (0..len).map(|k| (k + n) as u8).collect();
                    let opts = CallOptions {
                        reply_chunk: Some(len as u32 + 64),
                        ..CallOptions::default()
                    };
                    let r = c
                        .call(echo::PROG, echo::VERS, echo::PROC_ECHO, &args, &opts)
                        .expect("echo");
                    assert_eq!(r.results, args, "echo mismatch at {len} bytes");
                    bytes += len;
                }
                c.close();
                dev.assert_clean();
                bytes
            })
        })
        .collect();
    let bytes: usize = clients
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .sum();
    drop(connector);
    accept.join().expect("listener");
    let server = Arc::try_unwrap(server).expect("server still shared");
    let report = server.shutdown();
    server_dev.assert_clean();
    println!(
        "echoed {} calls ({} bytes) over {} connections, byte-exact",
        args.clients * args.calls,
        bytes,
        args.clients
    );
    let s = report.stats;
    println!(
        "server: completions {} drains {} ctx/drain {:.1} (max {}) pool {} (largest per transport {}) backstop enqueues {} unmaps {}; teardown reclaimed {} stuck recvs {}; tracker clean",
        s.completions, s.drains, s.batch_mean(), s.batch_max, s.pool_size, report.max_pool_size, s.backstop_enqueues, s.unmaps,
        report.reclaimed_send, report.stuck_recvs
    );
}
