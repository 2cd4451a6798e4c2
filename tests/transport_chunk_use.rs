//! Which chunks a reply used: the per-chunk-type counters (Read chunks
//! pulled, Write chunks written, Reply chunks used) each bump on their
//! path and only there, and an inline bulk payload (a reply with a payload
//! but no Write chunk in the call) is XDR-padded to a multiple of 4 bytes.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig, ReplyPath};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt_core::oncrpc::{self, AcceptStat, ReplyStat};
use rdmaxprt_core::transport::{RecvdCall, XprtConfig, XprtCountersSnapshot};

fn setup() -> (MockDevice, Client, Server) {
    let dev = MockDevice::new();
    let (c, x, _hook) = pair(
        &dev,
        QpConfig::default(),
        XprtConfig::default(),
        ClientConfig::default(),
    );
    (dev, c, x)
}

/// One echo round trip; the counters' change over it.
fn echo_delta(
    c: &mut Client,
    x: &Server,
    args: &[u8],
    opts: &CallOptions<'_>,
) -> XprtCountersSnapshot {
    let before = x.counters().snapshot();
    let t = c.start_call(PROG, VERS, PROC_ECHO, args, opts).unwrap();
    serve(x);
    c.wait(t).unwrap();
    let after = x.counters().snapshot();
    XprtCountersSnapshot {
        read_calls: after.read_calls - before.read_calls,
        read_chunks: after.read_chunks - before.read_chunks,
        write_chunks: after.write_chunks - before.write_chunks,
        reply_chunks: after.reply_chunks - before.reply_chunks,
        ..XprtCountersSnapshot::default()
    }
}

fn used(read_chunks: u64, write_chunks: u64, reply_chunks: u64) -> XprtCountersSnapshot {
    XprtCountersSnapshot {
        read_calls: read_chunks.min(1),
        read_chunks,
        write_chunks,
        reply_chunks,
        ..XprtCountersSnapshot::default()
    }
}

#[test]
fn each_chunk_counter_bumps_on_its_path_only() {
    let (dev, mut c, x) = setup();
    // Inline both ways: no chunk.
    let d = echo_delta(&mut c, &x, b"tiny", &CallOptions::default());
    assert_eq!(d, used(0, 0, 0), "inline call and reply");
    // A Write chunk offered and written into.
    let w = CallOptions {
        write_chunk: Some(8192),
        ..Default::default()
    };
    assert_eq!(echo_delta(&mut c, &x, &pattern(5000, 1), &w), used(1, 1, 0));
    // A Write chunk offered but the payload is empty: nothing written.
    assert_eq!(echo_delta(&mut c, &x, b"", &w), used(0, 0, 0));
    // A long reply through the Reply chunk.
    let rc = CallOptions {
        reply_chunk: Some(8192),
        ..Default::default()
    };
    assert_eq!(echo_delta(&mut c, &x, &pattern(900, 2), &rc), used(0, 0, 0));
    assert_eq!(
        echo_delta(&mut c, &x, &pattern(2000, 3), &rc),
        used(1, 0, 1)
    );
    // A positional Read chunk (an NFS WRITE's data) in, the echo back
    // through a Write chunk.
    let payload = pattern(3000, 4);
    let pos = CallOptions {
        read_payload: Some(&payload),
        write_chunk: Some(4096),
        ..Default::default()
    };
    assert_eq!(echo_delta(&mut c, &x, &[0u8; 8], &pos), used(1, 1, 0));
    let total = x.counters().snapshot();
    assert_eq!(
        (total.read_chunks, total.write_chunks, total.reply_chunks),
        (3, 2, 1)
    );
    assert_eq!(total.error_replies, 0);
    finish(dev, c, x);
}

/// Answers `call` with an accepted SUCCESS header, a 4-byte length word
/// and `payload` as the bulk payload (the way an NFS READ reply is built),
/// with or without a Write chunk in the call.
fn reply_with_bulk(x: &Server, call: &RecvdCall<'_>, payload: &[u8]) {
    let h = oncrpc::decode_call(call.msg()).unwrap();
    let mut hdr = [0u8; 32];
    let n =
        oncrpc::encode_reply(&mut hdr, h.xid, ReplyStat::Accepted(AcceptStat::Success)).unwrap();
    let len = (payload.len() as u32).to_be_bytes();
    x.sendto(call, &[&hdr[..n], &len], Some(payload)).unwrap();
}

/// Runs the completion handlers and worker passes until nothing moves,
/// answering every call with `payload` as bulk data.
fn serve_bulk(x: &Server, payload: &[u8]) -> usize {
    let mut total = 0;
    loop {
        let polled = x.poll(usize::MAX).unwrap();
        let mut served = 0;
        while let Ok(Some(call)) = x.recvfrom() {
            reply_with_bulk(x, &call, payload);
            x.release_ctxt();
            served += 1;
        }
        x.release_ctxt();
        total += served;
        if polled == 0 && served == 0 {
            return total;
        }
    }
}

/// Regression: `sendto` appended an inline bulk payload without XDR
/// padding, so an inline READ-like reply of a length not a multiple of 4
/// ended mid-word (a malformed XDR opaque).
#[test]
fn an_inline_bulk_payload_is_xdr_padded() {
    let (dev, mut c, x) = setup();
    let rc = CallOptions {
        reply_chunk: Some(8192),
        ..Default::default()
    };
    for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 900, 901, 2001, 4095] {
        let payload = pattern(n, n as u8);
        let t = c.start_call(PROG, VERS, PROC_ECHO, b"", &rc).unwrap();
        assert_eq!(serve_bulk(&x, &payload), 1);
        let reply = c.wait(t).unwrap();
        assert_eq!(reply.bulk, None, "size {n}: no Write chunk offered");
        let padded = n.div_ceil(4) * 4;
        assert_eq!(
            reply.results.len(),
            4 + padded,
            "size {n}: length + padded data"
        );
        assert_eq!(&reply.results[..4], &(n as u32).to_be_bytes(), "size {n}");
        assert_eq!(&reply.results[4..4 + n], &payload[..], "size {n}");
        assert!(
            reply.results[4 + n..].iter().all(|&b| b == 0),
            "size {n}: zero padding"
        );
        let path = if n + 4 + 24 + 28 <= 1024 {
            ReplyPath::Inline
        } else {
            ReplyPath::ReplyChunk
        };
        assert_eq!(reply.reply_path, path, "size {n}");
    }
    // With a Write chunk the payload goes unpadded into it (RFC 8166
    // section 3.5.3) and the inline part stays the length word.
    let w = CallOptions {
        write_chunk: Some(8),
        ..Default::default()
    };
    let t = c.start_call(PROG, VERS, PROC_ECHO, b"", &w).unwrap();
    serve_bulk(&x, b"abcde");
    let reply = c.wait(t).unwrap();
    assert_eq!(reply.bulk.as_deref(), Some(&b"abcde"[..]));
    assert_eq!(reply.results, 5u32.to_be_bytes());
    let k = x.counters().snapshot();
    assert_eq!((k.write_chunks, k.reply_chunks, k.error_replies), (1, 2, 0));
    finish(dev, c, x);
}
