//! Every class of malformed transport header, sent raw from a bare mock QP:
//! answered with the RFC 8166 error it deserves (ERR_VERS, ERR_CHUNK) or
//! dropped, never a panic, and the transport keeps serving.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt_core::backend::DmaDevice;
use rdmaxprt_core::oncrpc::{self, AcceptStat, ReplyStat};
use rdmaxprt_core::rpcrdma::{decode_reply_header, Limits, Proc, RdmaError};
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_core::xprt::XprtFlags;

/// What a message deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Vers,
    Chunk,
    Drop,
}

const MSG: u32 = 0;
const NOMSG: u32 = 1;
const V1: u32 = 1;
const CREDITS: u32 = 8;

/// Tight limits so "too many" fits a 1 KiB receive.
const LIMITS: Limits = Limits {
    max_read_segments: 4,
    max_write_chunks: 2,
    max_segments_per_chunk: 4,
    max_chunk_bytes: 1 << 20,
};

fn setup() -> (MockDevice, RawClient, Server) {
    let dev = MockDevice::new();
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let (x, _hook) = server(
        &dev,
        sq,
        XprtConfig {
            limits: LIMITS,
            ..XprtConfig::default()
        },
    );
    let raw = RawClient::new(&dev, cq, 16, 1024);
    (dev, raw, x)
}

/// A segment: handle, length, 64-bit offset.
fn seg(handle: u32, len: u32, off: u64) -> Vec<u32> {
    vec![handle, len, (off >> 32) as u32, off as u32]
}

/// The fixed part plus `rest` words plus `body` bytes.
fn msg(xid: u32, vers: u32, proc: u32, rest: &[u32], body: &[u8]) -> Vec<u8> {
    let mut m = words(&[xid, vers, CREDITS, proc]);
    m.extend(words(rest));
    m.extend_from_slice(body);
    m
}

fn cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    let x = |i: u32| 0xbad0_0000 + i;
    let rpc = |i: u32| rpc_call(x(i), b"args");
    let empty_lists = [0u32, 0, 0];
    let mut c: Vec<(&'static str, Vec<u8>, Want)> = vec![
        (
            "version 0",
            msg(x(0), 0, MSG, &empty_lists, &rpc(0)),
            Want::Vers,
        ),
        (
            "version 2",
            msg(x(1), 2, MSG, &empty_lists, &rpc(1)),
            Want::Vers,
        ),
        (
            "version u32::MAX",
            msg(x(2), u32::MAX, MSG, &empty_lists, &rpc(2)),
            Want::Vers,
        ),
        (
            "unknown proc 5",
            msg(x(3), V1, 5, &empty_lists, &rpc(3)),
            Want::Chunk,
        ),
        (
            "unknown proc u32::MAX",
            msg(x(4), V1, u32::MAX, &empty_lists, &rpc(4)),
            Want::Chunk,
        ),
        (
            "RDMA_MSGP",
            msg(x(5), V1, 2, &[0, 0, 0, 0, 0], &rpc(5)),
            Want::Chunk,
        ),
        ("RDMA_DONE", msg(x(6), V1, 3, &[], &[]), Want::Drop),
        (
            "RDMA_ERROR from a client",
            msg(x(7), V1, 4, &[2], &[]),
            Want::Drop,
        ),
        (
            "RDMA_ERROR with an unknown code",
            msg(x(8), V1, 4, &[9], &[]),
            Want::Drop,
        ),
        (
            "RDMA_ERROR truncated",
            msg(x(9), V1, 4, &[], &[]),
            Want::Drop,
        ),
        ("empty message", Vec::new(), Want::Drop),
        ("4 bytes", words(&[x(10)]), Want::Drop),
        (
            "15 bytes",
            msg(x(11), V1, 0, &[], &[])[..15].to_vec(),
            Want::Drop,
        ),
        (
            "fixed part only",
            msg(x(12), V1, MSG, &[], &[]),
            Want::Chunk,
        ),
        (
            "read list cut after its discriminator",
            msg(x(13), V1, MSG, &[1], &[]),
            Want::Chunk,
        ),
        (
            "read segment cut short",
            msg(x(14), V1, MSG, &[1, 0, 0x100, 64], &[]),
            Want::Chunk,
        ),
        (
            "no reply-chunk discriminator",
            msg(x(15), V1, MSG, &[0, 0], &[]),
            Want::Chunk,
        ),
        (
            "read-list discriminator 2",
            msg(x(16), V1, MSG, &[2, 0, 0, 0], &rpc(16)),
            Want::Chunk,
        ),
        (
            "write-list discriminator 7",
            msg(x(17), V1, MSG, &[0, 7, 0, 0], &rpc(17)),
            Want::Chunk,
        ),
        (
            "reply-chunk discriminator u32::MAX",
            msg(x(18), V1, MSG, &[0, 0, u32::MAX], &rpc(18)),
            Want::Chunk,
        ),
        (
            "RDMA_MSG without a body",
            msg(x(19), V1, MSG, &empty_lists, &[]),
            Want::Chunk,
        ),
        (
            "RDMA_NOMSG without a Position Zero chunk",
            msg(x(20), V1, NOMSG, &empty_lists, &[]),
            Want::Chunk,
        ),
        (
            "reply chunk of u32::MAX segments",
            msg(x(21), V1, MSG, &[0, 0, 1, u32::MAX], &[]),
            Want::Chunk,
        ),
    ];
    // Write chunk claiming 3 segments, carrying one.
    let mut w = vec![0, 1, 3];
    w.extend(seg(0x100, 64, 0x1000));
    c.push((
        "write chunk cut short",
        msg(x(22), V1, MSG, &w, &[]),
        Want::Chunk,
    ));
    // Five Read segments (limit 4).
    let mut r = Vec::new();
    for i in 0..5 {
        r.push(1);
        r.push(0);
        r.extend(seg(0x100, 64, 0x1000 + 64 * i));
    }
    r.extend([0, 0]);
    c.push((
        "five Read segments, limit four",
        msg(x(23), V1, NOMSG, &r, &[]),
        Want::Chunk,
    ));
    // Three Write chunks (limit 2).
    let mut w = vec![0];
    for i in 0..3 {
        w.extend([1, 1]);
        w.extend(seg(0x100, 64, 0x1000 + 64 * i));
    }
    w.extend([0, 0]);
    c.push((
        "three Write chunks, limit two",
        msg(x(24), V1, MSG, &w, &rpc(24)),
        Want::Chunk,
    ));
    // A Write chunk of five segments (limit 4).
    let mut w = vec![0, 1, 5];
    for i in 0..5 {
        w.extend(seg(0x100, 64, 0x1000 + 64 * i));
    }
    w.extend([0, 0]);
    c.push((
        "Write chunk of five segments",
        msg(x(25), V1, MSG, &w, &rpc(25)),
        Want::Chunk,
    ));
    // offset + length past 2^64.
    let mut w = vec![0, 1, 1];
    w.extend(seg(0x100, 64, u64::MAX - 16));
    w.extend([0, 0]);
    c.push((
        "Write segment overflowing u64",
        msg(x(26), V1, MSG, &w, &rpc(26)),
        Want::Chunk,
    ));
    let mut r = vec![1, 0];
    r.extend(seg(0x100, 4096, u64::MAX - 100));
    r.extend([0, 0, 0]);
    c.push((
        "Read segment overflowing u64",
        msg(x(27), V1, NOMSG, &r, &[]),
        Want::Chunk,
    ));
    // Totals beyond max_chunk_bytes.
    let mut w = vec![0, 0, 1, 2];
    w.extend(seg(0x100, 0x8000_0000, 0));
    w.extend(seg(0x100, 0x8000_0000, 0x8000_0000));
    c.push((
        "Reply chunk of 4 GiB",
        msg(x(28), V1, MSG, &w, &rpc(28)),
        Want::Chunk,
    ));
    let mut r = Vec::new();
    for i in 0..2u64 {
        r.extend([1, 0]);
        r.extend(seg(0x100, 0x0010_0000, i << 20));
    }
    r.extend([0, 0, 0]);
    c.push((
        "Read chunk of 2 MiB, limit 1 MiB",
        msg(x(29), V1, NOMSG, &r, &[]),
        Want::Chunk,
    ));
    // Zero-length and empty offers.
    let mut w = vec![0, 1, 1];
    w.extend(seg(0x100, 0, 0x1000));
    w.extend([0, 0]);
    c.push((
        "zero-length Write segment",
        msg(x(30), V1, MSG, &w, &rpc(30)),
        Want::Chunk,
    ));
    c.push((
        "Write chunk of no segments",
        msg(x(31), V1, MSG, &[0, 1, 0, 0, 0], &rpc(31)),
        Want::Chunk,
    ));
    // Read positions.
    let mut r = vec![1, 3];
    r.extend(seg(0x100, 64, 0x1000));
    r.extend([0, 0, 0]);
    c.push((
        "Read position 3 (not XDR aligned)",
        msg(x(32), V1, MSG, &r, &rpc(32)),
        Want::Chunk,
    ));
    let mut r = vec![1, 0];
    r.extend(seg(0x100, 64, 0x1000));
    r.extend([0, 0, 0]);
    c.push((
        "Position Zero chunk in RDMA_MSG",
        msg(x(33), V1, MSG, &r, &rpc(33)),
        Want::Chunk,
    ));
    c
}

#[test]
fn every_malformed_header_class_gets_its_rfc8166_answer_and_the_transport_keeps_serving() {
    let (dev, raw, x) = setup();
    let mut errors = 0;
    let mut drops = 0;
    for (name, bytes, want) in cases() {
        assert!(bytes.len() <= 1024, "{name}: must fit the server's receive");
        let dropped = counter(&x.counters().dropped);
        raw.send(&bytes);
        serve(&x);
        let got = raw.recv();
        match want {
            Want::Drop => {
                assert!(got.is_empty(), "{name}: dropped, got {got:?}");
                assert_eq!(counter(&x.counters().dropped), dropped + 1, "{name}");
                drops += 1;
            }
            Want::Vers | Want::Chunk => {
                assert_eq!(got.len(), 1, "{name}: exactly one answer");
                let h = decode_reply_header(&got[0], &Limits::DEFAULT)
                    .unwrap_or_else(|e| panic!("{name}: undecodable answer: {e}"));
                assert_eq!(
                    Some(h.xid()),
                    bytes
                        .get(..4)
                        .map(|b| u32::from_be_bytes(b.try_into().unwrap())),
                    "{name}: xid echoed"
                );
                assert_eq!(h.proc(), Proc::Error, "{name}");
                // The grant is what the header's credit word asked for
                // (clamped), the most the transport grants if it has none.
                let asked = bytes
                    .get(8..12)
                    .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
                let want_credits = asked.map_or(x.max_credits(), |a| x.credits_for(a));
                assert_eq!(h.credits(), want_credits, "{name}: credits granted");
                let err = if want == Want::Vers {
                    RdmaError::Vers { low: 1, high: 1 }
                } else {
                    RdmaError::Chunk
                };
                assert_eq!(h.rdma_error(), Some(err), "{name}");
                errors += 1;
            }
        }
        assert!(!x.flags().test(XprtFlags::CLOSE), "{name}: no close");
    }
    assert_eq!(counter(&x.counters().error_replies), errors);
    assert_eq!(counter(&x.counters().dropped), drops);
    assert_eq!(
        counter(&x.counters().calls),
        0,
        "nothing reached the service"
    );

    // Still serving: a well-formed call is echoed.
    let xid = 0x600d_0001;
    raw.send(&msg(xid, V1, MSG, &[0, 0, 0], &rpc_call(xid, b"alive!!!")));
    assert_eq!(serve(&x), 1);
    let got = raw.recv();
    assert_eq!(got.len(), 1);
    let h = decode_reply_header(&got[0], &Limits::DEFAULT).unwrap();
    assert_eq!((h.xid(), h.proc()), (xid, Proc::Msg));
    let body = &got[0][h.header_len()..];
    let r = oncrpc::decode_reply(body).unwrap();
    assert_eq!(r.stat, ReplyStat::Accepted(AcceptStat::Success));
    assert_eq!(&body[r.body_offset..], b"alive!!!");

    let report = x.free();
    assert_eq!(report.reclaimed_send, 0);
    drop(raw);
    dev.assert_clean();
}

#[test]
fn a_read_chunk_positioned_past_the_inline_message_is_err_chunk_without_a_pull() {
    let (dev, raw, x) = setup();
    let mr = dev.register(dev.alloc_buf(64).unwrap()).unwrap();
    let xid = 0xbad1_0001;
    let body = rpc_call(xid, b"args");
    // Position 1000 lies beyond the 44-byte inline message.
    let mut r = vec![1, 1000];
    r.extend(seg(mr.rkey(), 64, mr.addr()));
    r.extend([0, 0, 0]);
    raw.send(&msg(xid, V1, MSG, &r, &body));
    assert_eq!(serve(&x), 0);
    // The message is laid out before the Reads are posted, so a position
    // it cannot hold is answered at once, without pulling the chunk.
    assert_eq!(counter(&x.counters().read_calls), 0, "nothing pulled");
    let got = raw.recv();
    assert_eq!(got.len(), 1);
    let h = decode_reply_header(&got[0], &Limits::DEFAULT).unwrap();
    assert_eq!(h.xid(), xid);
    assert_eq!(h.rdma_error(), Some(RdmaError::Chunk));
    assert!(!x.flags().test(XprtFlags::CLOSE));
    let report = x.free();
    assert_eq!(report.reads_released, 0, "no read context left");
    assert_eq!(report.landings_freed, 0, "no landing buffer was needed");
    drop(raw);
    drop(mr);
    dev.assert_clean();
}

/// A tiny seeded xorshift for the mutation run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_headers_never_panic_and_get_at_most_one_answer_each() {
    let seeds = cases();
    let interesting = [0u32, 1, 2, 3, 4, 5, 16, 0x8000_0000, u32::MAX, 0xffff];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut answered, mut closes, mut sent) = (0, 0, 0u32);
    while sent < 3000 {
        // A fresh connection each time a mutation closed the last one.
        let (dev, raw, x) = setup();
        while sent < 3000 {
            let (_, base, _) = &seeds[(rng.next() % seeds.len() as u64) as usize];
            let mut m = base.clone();
            // Keep the xid unique so answers can be attributed.
            if m.len() >= 4 {
                m[..4].copy_from_slice(&(0x7000_0000 + sent).to_be_bytes());
            }
            for _ in 0..1 + rng.next() % 3 {
                match rng.next() % 3 {
                    0 if m.len() >= 8 => {
                        let w = 1 + (rng.next() as usize) % (m.len() / 4 - 1);
                        let v = interesting[(rng.next() % interesting.len() as u64) as usize];
                        m[w * 4..w * 4 + 4].copy_from_slice(&v.to_be_bytes());
                    }
                    1 if !m.is_empty() => {
                        let cut = (rng.next() as usize) % m.len();
                        m.truncate(cut);
                    }
                    _ if !m.is_empty() => {
                        let b = (rng.next() as usize) % m.len();
                        m[b] ^= 1 << (rng.next() % 8);
                    }
                    _ => {}
                }
            }
            raw.send(&m);
            sent += 1;
            serve(&x);
            let got = raw.recv();
            assert!(got.len() <= 1, "message {sent}: {} answers", got.len());
            answered += got.len();
            if x.flags().test(XprtFlags::CLOSE) {
                // A mutation can make a valid Read chunk naming memory the
                // client never registered: the Read fails and the
                // connection closes, as it must.
                closes += 1;
                break;
            }
        }
        let report = x.free();
        assert_eq!(report.reclaimed_send, 0, "{report:?}");
        assert_eq!(report.stuck_recvs, 0, "{report:?}");
        drop(raw);
        dev.assert_clean();
    }
    assert!(answered > 1000, "most mutations are answered ({answered})");
    assert!(closes < 300, "closes are rare ({closes})");
}
