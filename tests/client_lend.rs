//! The client's lending API on the mock NIC: arguments written in place
//! into a registered buffer ([`RpcClient::lend`], `start_lent`) and reply
//! chunks read in place (`wait_lent`). Each test is built to fail if the
//! lending is broken: a buffer given back to the pool while its call is
//! in flight, a reply guard that copies, or one whose region is reused
//! while the caller still holds it.
//!
//! [`RpcClient::lend`]: rdmaxprt::client::RpcClient::lend

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{
    Auth, AuthSysParams, CallOptions, CallPath, ClientConfig, ClientError, ReplyPath,
};
use rdmaxprt::mock::{MockDevice, QpConfig};

const BIG: usize = 64 << 10;

fn bulk(n: usize) -> CallOptions<'static> {
    CallOptions {
        write_chunk: Some(n as u32),
        ..Default::default()
    }
}

/// Whether two pointers lie in the same pooled region: the lent
/// arguments start a call header's room (at most 512 bytes) after the
/// region's start, a reply's bytes at it; regions are apart by far more.
fn near(a: *const u8, b: *const u8) -> bool {
    (a as usize).abs_diff(b as usize) < 512
}

#[test]
fn a_lent_64k_echo_round_trips_in_place() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    let want = pattern(BIG, 1);
    let mut a = c.lend(BIG).unwrap();
    assert_eq!(a.len(), BIG);
    assert!(a.capacity() >= BIG);
    a.copy_from_slice(&want);
    let args_at = a.as_ptr();
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &bulk(BIG)).unwrap();
    assert!(t.is_lent());
    serve(&x);
    let r = c.wait_lent(t).unwrap();
    assert_eq!(r.call_path, CallPath::PositionZero);
    assert_eq!(r.reply_path, ReplyPath::Inline);
    assert!(r.results().is_empty());
    assert_eq!(r.bulk(), Some(&want[..]));
    let bulk_at = r.bulk().unwrap().as_ptr();
    assert!(
        !near(bulk_at, args_at),
        "the reply landed in its own region"
    );
    let regions = c.stats().chunk_regions;
    assert_eq!(
        regions, 2,
        "one region for the arguments, one for the reply"
    );
    drop(r);

    // Both regions are back in the pool: the next lent call reuses them,
    // and the reply is read where the server wrote it (the region just
    // lent for the arguments, or the previous reply's; no copy).
    let mut a = c.lend(BIG).unwrap();
    let at = a.as_ptr();
    assert!(
        near(at, args_at) || near(at, bulk_at),
        "a pooled region is lent again"
    );
    let want2 = pattern(BIG, 2);
    a.copy_from_slice(&want2);
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &bulk(BIG)).unwrap();
    serve(&x);
    let r = c.wait_lent(t).unwrap();
    assert_eq!(r.bulk(), Some(&want2[..]));
    let b = r.bulk().unwrap().as_ptr();
    assert!(
        near(b, args_at) || near(b, bulk_at),
        "the bulk bytes are in a region"
    );
    assert!(!near(b, at));
    assert_eq!(c.stats().chunk_regions, regions, "no new registration");
    assert_eq!(c.stats().position_zero_calls, 2);
    drop(r);
    finish(dev, c, x);
}

#[test]
fn a_lent_buffer_belongs_to_its_call_until_the_reply() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    // Warm up the credit grant (1 until the first reply).
    let a = c.lend(8).unwrap();
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &CallOptions::default());
    serve(&x);
    c.wait_lent(t.unwrap()).unwrap();

    let want = pattern(BIG, 3);
    let mut a = c.lend(BIG).unwrap();
    a.copy_from_slice(&want);
    let a_at = a.as_ptr();
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &bulk(BIG)).unwrap();
    // The server has not read it yet. Another lent buffer must be other
    // memory; scribbling on it must not change what the call sends.
    let mut b = c.lend(BIG).unwrap();
    assert_ne!(b.as_ptr(), a_at, "a buffer in flight was lent again");
    b.fill(0xee);
    drop(b);
    let mut b = c.lend(BIG).unwrap();
    b.fill(0xdd);
    serve(&x);
    let r = c.wait_lent(t).unwrap();
    assert_eq!(r.bulk(), Some(&want[..]), "the server read what was lent");
    drop(r);
    drop(b);
    finish(dev, c, x);
}

#[test]
fn a_held_reply_keeps_its_region_out_of_later_calls() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    let mut held = Vec::new();
    for seed in 0..4u8 {
        let want = pattern(BIG, 10 + seed);
        let mut a = c.lend(BIG).unwrap();
        a.copy_from_slice(&want);
        let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &bulk(BIG)).unwrap();
        serve(&x);
        let mut r = c.wait_lent(t).unwrap();
        held.push((want, r.take_bulk().unwrap()));
        assert!(r.bulk().is_none());
    }
    // Every reply still reads what its own call brought.
    for (want, got) in &held {
        assert_eq!(&got[..], &want[..]);
    }
    let regions = c.stats().chunk_regions;
    drop(held);
    // Given back: later calls take them instead of registering more.
    for seed in 0..4u8 {
        let mut a = c.lend(BIG).unwrap();
        a.copy_from_slice(&pattern(BIG, seed));
        let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &bulk(BIG)).unwrap();
        serve(&x);
        let r = c.wait_lent(t).unwrap();
        assert_eq!(r.bulk(), Some(&pattern(BIG, seed)[..]));
    }
    assert_eq!(c.stats().chunk_regions, regions);
    finish(dev, c, x);
}

#[test]
fn small_lent_arguments_go_inline_and_a_reply_chunk_is_read_in_place() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    let mut a = c.lend(100).unwrap();
    a.copy_from_slice(&pattern(100, 4));
    let t = c
        .start_lent(PROG, VERS, PROC_ECHO, a, &CallOptions::default())
        .unwrap();
    serve(&x);
    let r = c.wait_lent(t).unwrap();
    assert_eq!(r.call_path, CallPath::Inline);
    assert_eq!(r.results(), &pattern(100, 4)[..]);
    assert!(r.bulk().is_none());

    // 6000 bytes of results do not fit inline: the server uses the
    // offered Reply chunk, whose results the reply lends in place.
    let mut a = c.lend(6000).unwrap();
    a.copy_from_slice(&pattern(6000, 5));
    let o = CallOptions {
        reply_chunk: Some(8192),
        ..Default::default()
    };
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &o).unwrap();
    serve(&x);
    let r = c.wait_lent(t).unwrap();
    assert_eq!(r.call_path, CallPath::PositionZero);
    assert_eq!(r.reply_path, ReplyPath::ReplyChunk);
    assert_eq!(r.results(), &pattern(6000, 5)[..]);
    assert_eq!(c.stats().reply_chunk_replies, 1);
    // Copied on request: the same bytes.
    let owned = r.to_owned_reply();
    assert_eq!(owned.results, pattern(6000, 5));
    drop(r);
    finish(dev, c, x);
}

#[test]
fn a_header_longer_than_the_room_goes_inline_before_a_positional_chunk() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    // The room in front is sized for the client's credential (AUTH_NONE);
    // this call's AUTH_SYS header is longer.
    let auth = Auth::Sys(AuthSysParams {
        stamp: 1,
        machinename: b"a-rather-long-client-host-name".to_vec(),
        uid: 1000,
        gid: 1000,
        gids: vec![1, 2, 3],
    });
    let want = pattern(BIG, 8);
    let mut a = c.lend(BIG).unwrap();
    a.copy_from_slice(&want);
    let o = CallOptions {
        auth: Some(&auth),
        ..bulk(BIG)
    };
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &o).unwrap();
    serve(&x);
    let r = c.wait_lent(t).unwrap();
    assert_eq!(r.call_path, CallPath::InlineWithReadChunk);
    assert_eq!(r.bulk(), Some(&want[..]));
    drop(r);
    // Small arguments forced through the Read chunk.
    let mut a = c.lend(64).unwrap();
    a.copy_from_slice(&pattern(64, 9));
    let o = CallOptions {
        force_position_zero: true,
        ..Default::default()
    };
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &o).unwrap();
    serve(&x);
    let r = c.wait_lent(t).unwrap();
    assert_eq!(r.call_path, CallPath::PositionZero);
    assert_eq!(r.results(), &pattern(64, 9)[..]);
    drop(r);
    finish(dev, c, x);
}

#[test]
fn copying_and_lending_tickets_do_not_mix() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    // A lent call waited for with `wait`: copied out.
    let mut a = c.lend(BIG).unwrap();
    a.copy_from_slice(&pattern(BIG, 6));
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &bulk(BIG)).unwrap();
    serve(&x);
    let r = c.wait(t).unwrap();
    assert_eq!(r.bulk, Some(pattern(BIG, 6)));
    // A copying call's ticket is refused by `wait_lent` and given back.
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, b"abcd", &CallOptions::default())
        .unwrap();
    assert!(!t.is_lent());
    assert!(matches!(
        c.try_wait_lent(&t),
        Some(Err(ClientError::NotLentTicket))
    ));
    let t = match c.wait_lent(t) {
        Err(ClientError::NotLent { ticket }) => ticket,
        other => panic!("{other:?}"),
    };
    serve(&x);
    assert_eq!(c.wait(t).unwrap().results, b"abcd");
    finish(dev, c, x);
}

#[test]
fn bad_lending_is_a_typed_error_and_the_buffer_goes_home() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    assert!(matches!(c.lend(0), Err(ClientError::InvalidOptions(_))));
    // Another client's buffer.
    let dev2 = MockDevice::new();
    let (mut c2, x2, _hook2) = default_pair(&dev2);
    let foreign = c2.lend(BIG).unwrap();
    let e = c.start_lent(PROG, VERS, PROC_ECHO, foreign, &bulk(BIG));
    assert!(matches!(e, Err(ClientError::InvalidOptions(_))), "{e:?}");
    // Options a lent call cannot honour.
    let payload = [0u8; 8];
    for o in [
        CallOptions {
            read_payload: Some(&payload),
            ..Default::default()
        },
        CallOptions {
            write_chunk: Some(0),
            ..Default::default()
        },
    ] {
        let a = c.lend(BIG).unwrap();
        let e = c.start_lent(PROG, VERS, PROC_ECHO, a, &o);
        assert!(matches!(e, Err(ClientError::InvalidOptions(_))), "{e:?}");
    }
    // Every refused buffer is back in its pool: no new registration.
    let mut a = c.lend(BIG).unwrap();
    assert_eq!(c.stats().chunk_regions, 1);
    let mut b = c2.lend(BIG).unwrap();
    assert_eq!(c2.stats().chunk_regions, 1);
    assert!(!a.set_len(a.capacity() + 1));
    assert!(a.set_len(10));
    a.copy_from_slice(b"0123456789");
    let t = c
        .start_lent(PROG, VERS, PROC_ECHO, a, &CallOptions::default())
        .unwrap();
    serve(&x);
    assert_eq!(c.wait_lent(t).unwrap().results(), b"0123456789");
    b.fill(1);
    drop(b);
    finish(dev2, c2, x2);
    finish(dev, c, x);
}

#[test]
fn connection_loss_gives_lent_buffers_back_and_leaks_nothing() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    let a = c.lend(8).unwrap();
    let t = c.start_lent(PROG, VERS, PROC_ECHO, a, &CallOptions::default());
    serve(&x);
    c.wait_lent(t.unwrap()).unwrap();
    let mut tickets = Vec::new();
    for seed in 0..3u8 {
        let mut a = c.lend(BIG).unwrap();
        a.copy_from_slice(&pattern(BIG, seed));
        tickets.push(c.start_lent(PROG, VERS, PROC_ECHO, a, &bulk(BIG)).unwrap());
    }
    let regions = c.stats().chunk_regions;
    assert!(regions >= 6, "{regions}");
    x.qp().disconnect();
    serve(&x);
    for t in tickets {
        assert!(matches!(c.wait_lent(t), Err(ClientError::Disconnected)));
    }
    assert!(c.is_broken());
    // The six 64 KiB regions the calls held are back in the pool.
    let again: Vec<_> = (0..6).map(|_| c.lend(BIG).unwrap()).collect();
    assert_eq!(c.stats().chunk_regions, regions);
    let a = c.lend(BIG).unwrap();
    let e = c.start_lent(PROG, VERS, PROC_ECHO, a, &CallOptions::default());
    assert!(matches!(e, Err(ClientError::Disconnected)), "{e:?}");
    // Guards that outlive their client deregister on drop.
    let report = x.free();
    assert_eq!(report.reclaimed_send, 0, "{report:?}");
    drop(c);
    drop(again);
    dev.assert_clean();
}

#[test]
fn hostile_write_chunk_lengths_are_typed_errors_never_truncation() {
    let dev = MockDevice::new();
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let cfg = ClientConfig {
        max_segment_len: 4096,
        timeout: std::time::Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let mut c = rdmaxprt::client::RpcClient::new(cq, dev.clone(), cfg).unwrap();
    let raw = RawClient::new(&dev, sq, 32, 1024);
    let exchange = |c: &mut Client, edit: &dyn Fn(&mut Vec<rdmaxprt_core::rpcrdma::Segment>)| {
        let mut a = c.lend(16).unwrap();
        a.fill(7);
        let t = c
            .start_lent(PROG, VERS, PROC_ECHO, a, &bulk(3 * 4096))
            .unwrap();
        let got = raw.recv();
        assert_eq!(got.len(), 1);
        let h = rdmaxprt_core::rpcrdma::decode_header(&got[0], &Default::default()).unwrap();
        let mut w: Vec<_> = h.write_list().iter().next().unwrap().iter().collect();
        assert_eq!(w.len(), 3, "4 KiB segments");
        edit(&mut w);
        let spec = rdmaxprt_core::rpcrdma::ReplySpec {
            xid: h.xid(),
            credits: 8,
            proc: rdmaxprt_core::rpcrdma::MsgProc::Msg,
            write_list: &[&w],
            reply_chunk: None,
        };
        let mut b = vec![0; spec.encoded_len()];
        rdmaxprt_core::rpcrdma::encode_reply(&mut b, &spec).unwrap();
        let mut rpc = vec![0; 64];
        let n = rdmaxprt_core::oncrpc::encode_reply(
            &mut rpc,
            h.xid(),
            rdmaxprt_core::oncrpc::ReplyStat::Accepted(rdmaxprt_core::oncrpc::AcceptStat::Success),
        )
        .unwrap();
        b.extend_from_slice(&rpc[..n]);
        raw.send(&b);
        c.wait_lent(t)
    };
    let regions_before = c.stats().chunk_regions;
    // Longer than offered.
    let e = exchange(&mut c, &|w| w[2].length += 1);
    assert!(matches!(e, Err(ClientError::ProtocolViolation(_))), "{e:?}");
    // A short segment before a written one: not one run of bytes.
    let e = exchange(&mut c, &|w| w[0].length -= 4);
    assert!(matches!(e, Err(ClientError::ProtocolViolation(_))), "{e:?}");
    // Shorter than offered, in order: exactly the bytes reported.
    let r = exchange(&mut c, &|w| {
        w[1].length = 100;
        w[2].length = 0;
    })
    .unwrap();
    assert_eq!(r.bulk().map(<[u8]>::len), Some(4096 + 100));
    drop(r);
    // A foreign handle.
    let e = exchange(&mut c, &|w| w[1].handle ^= 1);
    assert!(matches!(e, Err(ClientError::ProtocolViolation(_))), "{e:?}");
    // Nothing lost on the error paths: the same two regions served all.
    assert_eq!(c.stats().chunk_regions - regions_before, 2);
    drop(c);
    drop(raw);
    dev.assert_clean();
}
