//! An echo client: sends one call of each requested size through the chunk
//! type asked for, verifies the bytes, and says which path each took. The
//! mock NIC cannot cross processes, so the server runs in this process.
//!
//! `cargo run --example echo_client -- --sizes 0,1,1023,1024,1025,1048576 --via reply-chunk`

#[path = "common/echo.rs"]
mod echo;

use clap::{Parser, ValueEnum};
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockNetwork, Server, ServerConfig};
use rdmaxprt::service::Dispatcher;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Via {
    /// No chunks offered: long replies are answered with ERR_CHUNK (shown).
    Auto,
    /// Arguments in a Position Zero Read chunk.
    ReadChunk,
    /// Results back through a Write chunk (bulk payload).
    WriteChunk,
    /// Results back through a Reply chunk when too long for inline.
    ReplyChunk,
}

#[derive(Parser, Debug)]
#[command(about = "echo client against an in-process echo server on the mock NIC")]
struct Args {
    /// Comma-separated payload sizes in bytes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,1,1000,1024,4096,1048576"
    )]
    sizes: Vec<usize>,
    /// Which chunk type to use.
    #[arg(long, value_enum, default_value_t = Via::ReplyChunk)]
    via: Via,
}

fn main() {
    let args = Args::parse();
    let server_dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(server_dev.clone(), QpConfig::default());
    let bulk = matches!(args.via, Via::WriteChunk);
    let server = Arc::new(Server::start(
        ServerConfig::default(),
        Dispatcher::new().with(echo::Echo { bulk_echo: bulk }),
    ));
    let accept = server.serve(listener);
    let dev = MockDevice::new();
    let qp = connector.connect(&dev).expect("connect");
    drop(connector);
    let mut c = RpcClient::new(qp, dev.clone(), ClientConfig::default()).expect("client");
    println!("| bytes | call path | reply path | bulk | verified |");
    println!("|---|---|---|---|---|");
    for &len in &args.sizes {
        let payload: Vec<u8> = (0..len).map(echo::pattern).collect();
        let room = len as u32 + 64;
        let opts = match args.via {
            Via::Auto => CallOptions::default(),
            Via::ReadChunk => CallOptions {
                force_position_zero: true,
                reply_chunk: Some(room),
                ..CallOptions::default()
            },
            Via::WriteChunk => CallOptions {
                write_chunk: Some(len.max(1) as u32),
                ..CallOptions::default()
            },
            Via::ReplyChunk => CallOptions {
                reply_chunk: Some(room),
                ..CallOptions::default()
            },
        };
        match c.call(echo::PROG, echo::VERS, echo::PROC_ECHO, &payload, &opts) {
            Ok(r) => {
                let got = if bulk {
                    r.bulk.clone().unwrap_or_default()
                } else {
                    r.results.clone()
                };
                println!(
                    "| {len} | {:?} | {:?} | {} | {} |",
                    r.call_path,
                    r.reply_path,
                    r.bulk.as_ref().map_or(0, Vec::len),
                    if got == payload { "yes" } else { "NO" }
                );
                assert_eq!(got, payload, "echo mismatch at {len} bytes");
            }
            Err(e) => println!("| {len} | - | - | - | error: {e} |"),
        }
    }
    c.close();
    accept.join().expect("listener");
    let server = Arc::try_unwrap(server).expect("server still shared");
    server.shutdown();
    dev.assert_clean();
    server_dev.assert_clean();
}
