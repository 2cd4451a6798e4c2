//! The client against a hostile server: replies crafted by hand on a raw
//! mock QP. Every malformed or inconsistent reply is a typed error for the
//! call it names, never a panic, and the client stays usable.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig, ClientError, RpcClient};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt_core::oncrpc::{self, AcceptStat, AuthStat, RejectStat, ReplyStat};
use rdmaxprt_core::rpcrdma::{
    decode_header, encode_error, encode_reply, DecodeError, Limits, MsgProc, RdmaError, ReplySpec,
    Segment,
};
use rdmaxprt_core::transport::XprtConfig;
use std::time::Duration;

fn setup() -> (MockDevice, Client, RawClient) {
    setup_with(ClientConfig {
        timeout: Duration::from_millis(100),
        ..ClientConfig::default()
    })
}

fn setup_with(ccfg: ClientConfig) -> (MockDevice, Client, RawClient) {
    let dev = MockDevice::new();
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let c = RpcClient::new(cq, dev.clone(), ccfg).unwrap();
    let raw = RawClient::new(&dev, sq, 32, 1024);
    (dev, c, raw)
}

/// The call as the raw server received it: xid and offered Write chunk.
struct Seen {
    xid: u32,
    write: Vec<Segment>,
}

fn receive_call(raw: &RawClient) -> Seen {
    let got = raw.recv();
    assert_eq!(got.len(), 1, "one call");
    let h = decode_header(&got[0], &Limits::DEFAULT).unwrap();
    Seen {
        xid: h.xid(),
        write: h
            .write_list()
            .iter()
            .next()
            .map(|c| c.iter().collect())
            .unwrap_or_default(),
    }
}

fn rpc_reply(xid: u32, stat: ReplyStat, results: &[u8]) -> Vec<u8> {
    let mut b = vec![0; 64];
    let n = oncrpc::encode_reply(&mut b, xid, stat).unwrap();
    b.truncate(n);
    b.extend_from_slice(results);
    b
}

fn ok_body(xid: u32, results: &[u8]) -> Vec<u8> {
    rpc_reply(xid, ReplyStat::Accepted(AcceptStat::Success), results)
}

/// An RDMA_MSG reply header with `write` as its Write list, then `body`.
fn msg_reply(xid: u32, write: &[&[Segment]], reply: Option<&[Segment]>, body: &[u8]) -> Vec<u8> {
    let spec = ReplySpec {
        xid,
        credits: 8,
        proc: if reply.is_some() {
            MsgProc::NoMsg
        } else {
            MsgProc::Msg
        },
        write_list: write,
        reply_chunk: reply,
    };
    let mut b = vec![0; spec.encoded_len()];
    encode_reply(&mut b, &spec).unwrap();
    b.extend_from_slice(body);
    b
}

/// Starts a call with `opts`, answers it with `make(seen)`, returns the
/// outcome.
fn exchange(
    c: &mut Client,
    raw: &RawClient,
    opts: &CallOptions<'_>,
    make: impl FnOnce(&Seen) -> Vec<u8>,
) -> Result<rdmaxprt::client::ReplyBytes, ClientError> {
    let t = c.start_call(PROG, VERS, PROC_ECHO, b"hi", opts).unwrap();
    let seen = receive_call(raw);
    raw.send(&make(&seen));
    c.wait(t)
}

#[test]
fn hostile_replies_are_typed_errors_and_the_client_stays_usable() {
    let (dev, mut c, raw) = setup();
    let none = CallOptions::default();
    let bulk = CallOptions {
        write_chunk: Some(64),
        ..Default::default()
    };
    let r = exchange(&mut c, &raw, &none, |s| {
        msg_reply(s.xid, &[], None, &ok_body(s.xid, b"fine"))
    });
    assert_eq!(r.unwrap().results, b"fine");
    assert_eq!(c.credits(), 8, "the grant of the reply");

    let e = exchange(&mut c, &raw, &none, |s| {
        let mut b = vec![0; 28];
        let n = encode_error(&mut b, s.xid, 8, RdmaError::Vers { low: 2, high: 3 }).unwrap();
        b.truncate(n);
        b
    });
    assert!(
        matches!(e, Err(ClientError::RdmaVers { low: 2, high: 3 })),
        "{e:?}"
    );

    let e = exchange(&mut c, &raw, &none, |s| {
        let mut b = vec![0; 28];
        let n = encode_error(&mut b, s.xid, 8, RdmaError::Chunk).unwrap();
        b.truncate(n);
        b
    });
    assert!(matches!(e, Err(ClientError::RdmaChunk)), "{e:?}");

    let e = exchange(&mut c, &raw, &none, |s| words(&[s.xid, 7, 8, 0, 0, 0, 0]));
    assert!(
        matches!(e, Err(ClientError::BadReplyHeader(_))),
        "bad version: {e:?}"
    );

    let e = exchange(&mut c, &raw, &none, |s| words(&[s.xid, 1]));
    assert!(
        matches!(e, Err(ClientError::BadReplyHeader(_))),
        "too short: {e:?}"
    );

    let e = exchange(&mut c, &raw, &none, |s| words(&[s.xid, 1, 8, 4, 77]));
    assert!(
        matches!(e, Err(ClientError::BadReplyHeader(_))),
        "bad error code: {e:?}"
    );

    let e = exchange(&mut c, &raw, &none, |s| words(&[s.xid, 1, 8, 3]));
    assert!(
        matches!(e, Err(ClientError::ProtocolViolation(_))),
        "RDMA_DONE: {e:?}"
    );

    let stray = [Segment {
        handle: 0x1234,
        length: 16,
        offset: 0x1000,
    }];
    let e = exchange(&mut c, &raw, &none, |s| {
        msg_reply(s.xid, &[], Some(&stray), &[])
    });
    assert!(
        matches!(e, Err(ClientError::ProtocolViolation(_))),
        "Reply chunk never offered: {e:?}"
    );

    let e = exchange(&mut c, &raw, &none, |s| {
        msg_reply(s.xid, &[&stray], None, &ok_body(s.xid, b""))
    });
    assert!(
        matches!(e, Err(ClientError::ProtocolViolation(_))),
        "Write chunk never offered: {e:?}"
    );

    let e = exchange(&mut c, &raw, &bulk, |s| {
        msg_reply(s.xid, &[], None, &ok_body(s.xid, b""))
    });
    assert!(
        matches!(e, Err(ClientError::ProtocolViolation(_))),
        "offered Write chunk missing: {e:?}"
    );

    let e = exchange(&mut c, &raw, &bulk, |s| {
        let mut w = s.write.clone();
        w[0].handle ^= 1;
        msg_reply(s.xid, &[&w], None, &ok_body(s.xid, b""))
    });
    assert!(
        matches!(e, Err(ClientError::ProtocolViolation(_))),
        "foreign handle: {e:?}"
    );

    let e = exchange(&mut c, &raw, &bulk, |s| {
        let mut w = s.write.clone();
        w[0].length += 1;
        msg_reply(s.xid, &[&w], None, &ok_body(s.xid, b""))
    });
    assert!(
        matches!(e, Err(ClientError::ProtocolViolation(_))),
        "overlong: {e:?}"
    );

    let e = exchange(&mut c, &raw, &bulk, |s| {
        let w = [s.write.clone(), s.write.clone()];
        let refs: Vec<&[Segment]> = w.iter().map(|v| v.as_slice()).collect();
        msg_reply(s.xid, &refs, None, &ok_body(s.xid, b""))
    });
    assert!(
        matches!(e, Err(ClientError::ProtocolViolation(_))),
        "two chunks: {e:?}"
    );

    let e = exchange(&mut c, &raw, &none, |s| {
        msg_reply(s.xid, &[], None, &ok_body(s.xid ^ 1, b""))
    });
    assert!(matches!(e, Err(ClientError::XidMismatch { .. })), "{e:?}");

    let e = exchange(&mut c, &raw, &none, |s| {
        msg_reply(s.xid, &[], None, &words(&[s.xid, 0, 0]))
    });
    assert!(
        matches!(e, Err(ClientError::BadRpcReply(_))),
        "a CALL as reply: {e:?}"
    );

    let e = exchange(&mut c, &raw, &none, |s| {
        let denied = ReplyStat::Denied(RejectStat::AuthError(AuthStat::TooWeak));
        msg_reply(s.xid, &[], None, &rpc_reply(s.xid, denied, b""))
    });
    assert!(
        matches!(
            e,
            Err(ClientError::Denied(RejectStat::AuthError(
                AuthStat::TooWeak
            )))
        ),
        "{e:?}"
    );

    // A reply for a call nobody made is dropped; the real one still lands.
    let t = c.start_call(PROG, VERS, PROC_ECHO, b"hi", &none).unwrap();
    let s = receive_call(&raw);
    raw.send(&msg_reply(
        0x0bad_f00d,
        &[],
        None,
        &ok_body(0x0bad_f00d, b""),
    ));
    raw.send(&words(&[0x0bad_f00e]));
    raw.send(&msg_reply(s.xid, &[], None, &ok_body(s.xid, b"late")));
    assert_eq!(c.wait(t).unwrap().results, b"late");
    assert_eq!(c.stats().unmatched_replies, 2);

    // Bulk done right, after all that.
    let r = exchange(&mut c, &raw, &bulk, |s| {
        let mut w = s.write.clone();
        w[0].length = 0;
        msg_reply(s.xid, &[&w], None, &ok_body(s.xid, b"ok"))
    });
    let r = r.unwrap();
    assert_eq!(
        (r.results.as_slice(), r.bulk.as_deref()),
        (&b"ok"[..], Some(&b""[..]))
    );
    assert!(!c.is_broken());
    drop(c);
    drop(raw);
    dev.assert_clean();
}

#[test]
fn mutated_replies_never_panic_the_client() {
    let (dev, mut c, raw) = setup();
    let bulk = CallOptions {
        write_chunk: Some(64),
        reply_chunk: Some(256),
        ..Default::default()
    };
    let mut rng: u64 = 0x0123_4567_89ab_cdef;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut ok, mut err) = (0, 0);
    for i in 0..1500 {
        let r = exchange(&mut c, &raw, &bulk, |s| {
            let w = s.write.clone();
            let mut m = msg_reply(s.xid, &[&w], None, &ok_body(s.xid, b"results"));
            // Keep the xid: every mutant is attributed to its call.
            for _ in 0..1 + next() % 3 {
                if m.len() <= 4 {
                    break;
                }
                let at = 4 + (next() as usize) % (m.len() - 4);
                match next() % 3 {
                    0 => m[at] ^= 1 << (next() % 8),
                    1 => m.truncate(at.max(4)),
                    _ => m[at] = [0, 1, 0xff, 0x80][(next() % 4) as usize],
                }
            }
            m
        });
        match r {
            Ok(_) => ok += 1,
            Err(ClientError::Timeout { .. } | ClientError::NoCredit) => {
                panic!("mutant {i} left its call unresolved")
            }
            Err(_) => err += 1,
        }
    }
    assert!(err > 500 && ok > 0, "ok {ok}, errors {err}");
    assert!(!c.is_broken());
    drop(c);
    drop(raw);
    dev.assert_clean();
}

/// Transport version 2 (the test-only `ClientConfig::transport_version`),
/// answered the way the Linux kernel's svcrdma answers it: RDMA_ERROR /
/// ERR_VERS 1..1 in a header that echoes version 2 (measured:
/// `52000bad 00000002 00000040 00000004 00000001 00000001 00000001`).
#[test]
fn err_vers_echoing_the_callers_version_is_the_typed_error() {
    let (dev, mut c, raw) = setup_with(ClientConfig {
        timeout: Duration::from_millis(100),
        transport_version: 2,
        ..ClientConfig::default()
    });
    let none = CallOptions::default();
    // Starts a call, checks it went out as version 2, answers `make(xid)`.
    let mut v2_exchange = |make: &dyn Fn(u32) -> Vec<u8>| {
        let t = c.start_call(PROG, VERS, PROC_ECHO, b"hi", &none).unwrap();
        let got = raw.recv();
        assert_eq!(got.len(), 1, "one call");
        let call = &got[0];
        assert_eq!(call[4..8], 2u32.to_be_bytes(), "version word of the call");
        assert!(matches!(
            decode_header(call, &Limits::DEFAULT),
            Err(DecodeError::BadVersion { vers: 2 })
        ));
        let xid = u32::from_be_bytes(call[..4].try_into().unwrap());
        raw.send(&make(xid));
        c.wait(t)
    };
    let e = v2_exchange(&|xid| words(&[xid, 2, 0x40, 4, 1, 1, 1]));
    assert!(
        matches!(e, Err(ClientError::RdmaVers { low: 1, high: 1 })),
        "kernel's ERR_VERS: {e:?}"
    );
    // A version-1 ERR_VERS is the same typed error.
    let e = v2_exchange(&|xid| words(&[xid, 1, 0x40, 4, 1, 1, 1]));
    assert!(
        matches!(e, Err(ClientError::RdmaVers { low: 1, high: 1 })),
        "{e:?}"
    );
    // Anything else in a version-2 header is still a bad version.
    let bad_v2 = |e: &Result<_, ClientError>| {
        matches!(
            e,
            Err(ClientError::BadReplyHeader(DecodeError::BadVersion {
                vers: 2
            }))
        )
    };
    let e = v2_exchange(&|xid| words(&[xid, 2, 8, 4, 2]));
    assert!(bad_v2(&e), "ERR_CHUNK in version 2: {e:?}");
    let e = v2_exchange(&|xid| words(&[xid, 2, 8, 4, 1, 1]));
    assert!(bad_v2(&e), "truncated ERR_VERS in version 2: {e:?}");
    let e = v2_exchange(&|xid| {
        let mut b = words(&[xid, 2, 8, 0, 0, 0, 0]);
        b.extend_from_slice(&ok_body(xid, b"fine"));
        b
    });
    assert!(bad_v2(&e), "RDMA_MSG in version 2: {e:?}");
    // The client is still usable: a plain version-1 reply works.
    let r = v2_exchange(&|xid| msg_reply(xid, &[], None, &ok_body(xid, b"fine")));
    assert_eq!(r.unwrap().results, b"fine");
    drop(raw);
    drop(c);
    drop(dev);
}

/// The same knob against this project's own server: it answers a
/// version-2 call with ERR_VERS 1..1, which the client returns typed, and
/// a version-1 client on the same server still works.
#[test]
fn own_server_answers_version_two_with_err_vers() {
    let dev = MockDevice::new();
    let ccfg = ClientConfig {
        timeout: Duration::from_millis(500),
        transport_version: 2,
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, QpConfig::default(), XprtConfig::default(), ccfg);
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, b"hi", &CallOptions::default())
        .unwrap();
    serve(&x);
    let e = c.wait(t);
    assert!(
        matches!(e, Err(ClientError::RdmaVers { low: 1, high: 1 })),
        "{e:?}"
    );
    assert_eq!(c.stats().replies, 1);
    finish(dev, c, x);
}

/// Calls are found by xid in a table indexed by the xid's low bits; a
/// reply whose xid shares a slot with a call in flight but is not that
/// call's (a stale duplicate of an answered call, or an xid never used)
/// is an unmatched reply, never the answer of the call in the slot. A
/// duplicate reply for an answered call not yet waited for leaves its
/// result alone.
#[test]
fn stale_and_unknown_xids_in_a_live_calls_slot_resolve_nothing() {
    let (dev, mut c, raw) = setup_with(ClientConfig {
        credits: 4,
        first_xid: 0x100,
        timeout: Duration::from_millis(100),
        ..ClientConfig::default()
    });
    let none = CallOptions::default();
    let r = exchange(&mut c, &raw, &none, |s| {
        msg_reply(s.xid, &[], None, &ok_body(s.xid, b"first"))
    });
    let first = r.unwrap().xid;
    assert_eq!(first, 0x100);
    // Walk the xids on, one call at a time, until the next call's xid
    // lands in the first call's slot for any table of up to 64 slots.
    for _ in 0..63 {
        let r = exchange(&mut c, &raw, &none, |s| {
            msg_reply(s.xid, &[], None, &ok_body(s.xid, b"x"))
        });
        r.unwrap();
    }
    let t = c.start_call(PROG, VERS, PROC_ECHO, b"hi", &none).unwrap();
    let live = receive_call(&raw).xid;
    assert_eq!(live, first + 64);
    let before = c.stats().unmatched_replies;
    // A stale duplicate of the first call's reply, and an xid never used,
    // both in the live call's slot.
    raw.send(&msg_reply(first, &[], None, &ok_body(first, b"stale")));
    raw.send(&msg_reply(
        first + 128,
        &[],
        None,
        &ok_body(first + 128, b"never"),
    ));
    assert!(c.try_wait(&t).is_none(), "the live call is still in flight");
    assert_eq!(c.stats().unmatched_replies, before + 2);
    assert_eq!(c.in_flight(), 1);
    // Its own reply lands; a duplicate before `wait` changes nothing.
    raw.send(&msg_reply(live, &[], None, &ok_body(live, b"mine")));
    raw.send(&msg_reply(live, &[], None, &ok_body(live, b"dup")));
    c.poll().unwrap();
    assert_eq!(c.stats().unmatched_replies, before + 3);
    let r = c.wait(t).unwrap();
    assert_eq!((r.xid, r.results.as_slice()), (live, &b"mine"[..]));
    assert_eq!(c.in_flight(), 0);
    drop(c);
    drop(raw);
    dev.assert_clean();
}

/// The send-buffer ring and the chunk pool are reused call after call:
/// 200 sequential calls offering a Write chunk register one chunk region
/// and map a handful of send buffers, and nothing is left mapped after.
#[test]
fn send_buffers_and_chunk_regions_are_reused_across_calls() {
    // The client maps on a device of its own: its tracker counts only the
    // client's mappings.
    let dev = MockDevice::new();
    let sdev = MockDevice::new();
    let (cq, sq) = MockDevice::connect_pair(&dev, &sdev, QpConfig::default()).unwrap();
    let mut c = RpcClient::new(cq, dev.clone(), ClientConfig::default()).unwrap();
    let raw = RawClient::new(&sdev, sq, 32, 1024);
    let bulk = CallOptions {
        write_chunk: Some(100),
        ..Default::default()
    };
    let maps0 = dev.tracker().maps();
    for i in 0..200u32 {
        let r = exchange(&mut c, &raw, &bulk, |s| {
            let mut w = s.write.clone();
            w[0].length = 0;
            msg_reply(s.xid, &[&w], None, &ok_body(s.xid, &i.to_be_bytes()))
        });
        assert_eq!(r.unwrap().results, i.to_be_bytes());
    }
    let st = c.stats();
    assert_eq!(st.chunk_regions, 1, "{st:?}");
    assert!(st.send_buffers <= 2, "{st:?}");
    // Receives were mapped at setup; each send buffer once.
    assert_eq!(dev.tracker().maps() - maps0, st.send_buffers);
    drop(c);
    drop(raw);
    dev.assert_clean();
    sdev.assert_clean();
}

/// `close` returns the final counters, the pool's and the ring's included
/// (they are counted over the client's life, not read off structures that
/// teardown empties).
#[test]
fn close_reports_the_chunk_regions_and_send_buffers_used() {
    let (dev, mut c, raw) = setup();
    let bulk = CallOptions {
        write_chunk: Some(100),
        ..Default::default()
    };
    let r = exchange(&mut c, &raw, &bulk, |s| {
        let mut w = s.write.clone();
        w[0].length = 0;
        msg_reply(s.xid, &[&w], None, &ok_body(s.xid, b"ok"))
    });
    r.unwrap();
    let live = c.stats();
    assert_eq!((live.chunk_regions, live.send_buffers), (1, 1), "{live:?}");
    let last = c.close();
    assert_eq!(last, live, "teardown changes no counter");
    drop(raw);
    dev.assert_clean();
}
