//! Many server transports at once on one mock device: interleaved calls of
//! every kind, one worker and one poller serving all of them.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, CallPath, ClientConfig, ReplyPath};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt_core::transport::XprtConfig;
use std::time::Duration;

const PAIRS: usize = 16;
const ROUNDS: usize = 6;

/// The call mix of one round: inline, Position Zero with a Reply chunk,
/// and a Write chunk for bulk results.
fn mix(round: usize, i: usize) -> Vec<(Vec<u8>, CallOptions<'static>)> {
    let seed = (round * PAIRS + i) as u8;
    vec![
        (pattern(16 + i, seed), CallOptions::default()),
        (
            pattern(2000 + 8 * i, seed),
            CallOptions {
                reply_chunk: Some(4096),
                ..Default::default()
            },
        ),
        (
            pattern(3000 + i, seed),
            CallOptions {
                write_chunk: Some(4096),
                ..Default::default()
            },
        ),
    ]
}

fn many_transports_interleaved(delivery: Delivery) {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery,
        ..QpConfig::default()
    };
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..PAIRS {
        let (c, x, _hook) = pair(&dev, q, XprtConfig::default(), ClientConfig::default());
        clients.push(c);
        servers.push(x);
    }
    let st = ServerThread::spawn(servers);
    for round in 0..ROUNDS {
        // Start every call of the round on every transport before waiting
        // for any: the server sees all transports busy at once.
        let mut tickets = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            for (args, opts) in mix(round, i) {
                let t = c.start_call(PROG, VERS, PROC_ECHO, &args, &opts).unwrap();
                tickets.push((i, t, args, opts));
            }
        }
        for (i, t, args, opts) in tickets {
            let r = clients[i].wait(t).unwrap();
            if opts.write_chunk.is_some() {
                assert_eq!(r.bulk.as_deref(), Some(&args[..]), "pair {i}");
                assert_eq!(r.call_path, CallPath::PositionZero);
            } else {
                assert_eq!(r.results, args, "pair {i}");
            }
            if opts.reply_chunk.is_some() {
                assert_eq!(r.reply_path, ReplyPath::ReplyChunk);
            }
        }
    }
    let servers = st.stop();
    for (i, x) in servers.into_iter().enumerate() {
        assert_eq!(
            counter(&x.counters().calls),
            (ROUNDS * 3) as u64,
            "pair {i}"
        );
        assert_eq!(counter(&x.counters().read_calls), (ROUNDS * 2) as u64);
        let report = x.free();
        assert_eq!(report.reclaimed_send, 0, "pair {i}: {report:?}");
        assert_eq!(report.stuck_recvs, 0, "pair {i}: {report:?}");
    }
    for c in clients {
        let stats = c.close();
        assert_eq!(stats.replies, (ROUNDS * 3) as u64);
        assert_eq!(stats.unmatched_replies, 0);
    }
    dev.assert_clean();
}

#[test]
fn sixteen_transports_interleaved_inline_delivery() {
    many_transports_interleaved(Delivery::Inline);
}

#[test]
fn sixteen_transports_interleaved_with_nic_threads() {
    many_transports_interleaved(Delivery::Thread {
        latency: Duration::from_micros(50),
    });
}
