//! Byte-exact echo through every RPC-over-RDMA path of the server
//! transport: inline calls and replies, Position Zero Read chunks,
//! positional Read chunks, Write chunks and the Reply chunk, at the sizes
//! around each path's boundary.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{
    Auth, AuthSysParams, CallOptions, CallPath, ClientConfig, ClientError, ReplyPath,
};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt_core::oncrpc::AcceptStat;
use rdmaxprt_core::transport::XprtConfig;

const MIB: usize = 1 << 20;

/// One echo call, served single-threaded (Inline delivery: the server's
/// worker pass runs between the client's post and its wait).
fn echo_once(
    c: &mut Client,
    x: &Server,
    args: &[u8],
    opts: &CallOptions<'_>,
) -> Result<rdmaxprt::client::ReplyBytes, ClientError> {
    let t = c.start_call(PROG, VERS, PROC_ECHO, args, opts)?;
    serve(x);
    c.wait(t)
}

fn setup(ccfg: ClientConfig) -> (MockDevice, Client, Server) {
    let dev = MockDevice::new();
    let (c, x, _hook) = pair(&dev, QpConfig::default(), XprtConfig::default(), ccfg);
    (dev, c, x)
}

#[test]
fn inline_limits_follow_the_1024_byte_threshold() {
    let (dev, c, x) = setup(ClientConfig::default());
    // 1024 - 28 (RDMA_MSG, three empty lists) - 40 (RPC call, AUTH_NONE).
    assert_eq!(c.inline_args_limit(&CallOptions::default()), 956);
    // A Reply chunk of one segment adds 4 + 16 bytes to the header.
    let rc = CallOptions {
        reply_chunk: Some(4096),
        ..Default::default()
    };
    assert_eq!(c.inline_args_limit(&rc), 936);
    // 1024 - 28 - 24 (accepted SUCCESS reply header).
    assert_eq!(c.inline_results_limit(&CallOptions::default()), 972);
    finish(dev, c, x);
}

#[test]
fn call_path_switches_to_position_zero_one_byte_past_the_inline_threshold() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let opts = CallOptions {
        reply_chunk: Some((MIB + 64) as u32),
        ..Default::default()
    };
    let t = c.inline_args_limit(&opts);
    let r = c.inline_results_limit(&opts);
    for (i, &n) in [0, 1, t - 1, t, t + 1, MIB].iter().enumerate() {
        let args = pattern(n, i as u8);
        let reads = counter(&x.counters().read_calls);
        let reply = echo_once(&mut c, &x, &args, &opts).unwrap();
        assert_eq!(reply.results, args, "size {n}: byte-exact echo");
        assert_eq!(reply.bulk, None);
        let (path, pulled) = if n <= t {
            (CallPath::Inline, 0)
        } else {
            (CallPath::PositionZero, 1)
        };
        assert_eq!(reply.call_path, path, "size {n}");
        assert_eq!(
            counter(&x.counters().read_calls) - reads,
            pulled,
            "size {n}: the server pulled a Read chunk iff the call was not inline"
        );
        let rpath = if n <= r {
            ReplyPath::Inline
        } else {
            ReplyPath::ReplyChunk
        };
        assert_eq!(reply.reply_path, rpath, "size {n}");
    }
    assert_eq!(counter(&x.counters().calls), 6);
    assert_eq!(counter(&x.counters().replies), 6);
    finish(dev, c, x);
}

#[test]
fn forced_position_zero_carries_empty_and_tiny_calls() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let opts = CallOptions {
        force_position_zero: true,
        ..Default::default()
    };
    for n in [0, 1, 3, 4] {
        let args = pattern(n, 9);
        let reply = echo_once(&mut c, &x, &args, &opts).unwrap();
        assert_eq!(reply.call_path, CallPath::PositionZero);
        assert_eq!(reply.results, args);
    }
    assert_eq!(counter(&x.counters().read_calls), 4);
    finish(dev, c, x);
}

#[test]
fn reply_path_switches_to_the_reply_chunk_one_byte_past_the_inline_threshold() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let opts = CallOptions {
        reply_chunk: Some(8192),
        ..Default::default()
    };
    let r = c.inline_results_limit(&opts);
    assert_eq!(r, 972);
    for n in [0, 1, r - 1, r, r + 1, 8192 - 24] {
        let args = pattern(n, 3);
        let reply = echo_once(&mut c, &x, &args, &opts).unwrap();
        assert_eq!(reply.results, args, "size {n}");
        let want = if n <= r {
            ReplyPath::Inline
        } else {
            ReplyPath::ReplyChunk
        };
        assert_eq!(reply.reply_path, want, "size {n}");
    }
    assert_eq!(c.stats().reply_chunk_replies, 2);
    finish(dev, c, x);
}

#[test]
fn a_reply_too_large_for_inline_without_a_reply_chunk_is_err_chunk() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let r = c.inline_results_limit(&CallOptions::default());
    let ok = echo_once(&mut c, &x, &pattern(r, 1), &CallOptions::default()).unwrap();
    assert_eq!(ok.results.len(), r);
    let err = echo_once(&mut c, &x, &pattern(r + 1, 1), &CallOptions::default()).unwrap_err();
    assert!(matches!(err, ClientError::RdmaChunk), "{err:?}");
    // The Reply chunk is also too small by one byte.
    let small = CallOptions {
        reply_chunk: Some((r + 24) as u32),
        ..Default::default()
    };
    let err = echo_once(&mut c, &x, &pattern(r + 1, 1), &small).unwrap_err();
    assert!(matches!(err, ClientError::RdmaChunk), "{err:?}");
    assert_eq!(counter(&x.counters().error_replies), 2);
    // The connection survives both.
    let again = echo_once(&mut c, &x, b"still here", &CallOptions::default()).unwrap();
    assert_eq!(again.results, b"still here");
    finish(dev, c, x);
}

#[test]
fn write_chunk_carries_the_bulk_payload_back_byte_exact_up_to_its_size() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let w = 4096usize;
    let opts = CallOptions {
        write_chunk: Some(w as u32),
        ..Default::default()
    };
    for n in [0, 1, w - 1, w] {
        let args = pattern(n, 5);
        let reply = echo_once(&mut c, &x, &args, &opts).unwrap();
        assert_eq!(
            reply.results, b"",
            "size {n}: results empty, data went bulk"
        );
        assert_eq!(reply.bulk.as_deref(), Some(&args[..]), "size {n}");
        assert_eq!(reply.reply_path, ReplyPath::Inline);
    }
    // One byte more than the chunk: the server answers ERR_CHUNK.
    let err = echo_once(&mut c, &x, &pattern(w + 1, 5), &opts).unwrap_err();
    assert!(matches!(err, ClientError::RdmaChunk), "{err:?}");
    finish(dev, c, x);
}

#[test]
fn one_mib_through_read_write_and_reply_chunks_in_one_and_many_segments() {
    for seg in [1u32 << 20, 64 << 10] {
        let (dev, mut c, x) = setup(ClientConfig {
            max_segment_len: seg,
            ..ClientConfig::default()
        });
        let args = pattern(MIB, 77);
        // PZ Read chunk in, Write chunk out.
        let bulk = CallOptions {
            write_chunk: Some(MIB as u32),
            ..Default::default()
        };
        let reply = echo_once(&mut c, &x, &args, &bulk).unwrap();
        assert_eq!(reply.call_path, CallPath::PositionZero);
        assert_eq!(reply.bulk.as_deref(), Some(&args[..]), "segments of {seg}");
        // PZ Read chunk in, Reply chunk out.
        let long = CallOptions {
            reply_chunk: Some((MIB + 64) as u32),
            ..Default::default()
        };
        let reply = echo_once(&mut c, &x, &args, &long).unwrap();
        assert_eq!(reply.reply_path, ReplyPath::ReplyChunk);
        assert_eq!(reply.results, args, "segments of {seg}");
        finish(dev, c, x);
    }
}

#[test]
fn a_call_whose_read_list_cannot_fit_inline_fails_in_the_client() {
    let (dev, mut c, x) = setup(ClientConfig {
        max_segment_len: 4096,
        ..ClientConfig::default()
    });
    // 257 Read segments of 24 bytes each: the header alone exceeds 1024.
    let err = c
        .start_call(
            PROG,
            VERS,
            PROC_ECHO,
            &pattern(MIB, 1),
            &CallOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, ClientError::HeaderTooLarge { .. }), "{err:?}");
    assert_eq!(c.in_flight(), 0);
    finish(dev, c, x);
}

#[test]
fn positional_read_chunk_is_inserted_after_the_inline_arguments() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let prefix = 8u32.to_be_bytes().repeat(2); // e.g. an offset and a count
    for n in [1usize, 3, 4, 4095, 4096, 4097, MIB] {
        let payload = pattern(n, 11);
        let opts = CallOptions {
            read_payload: Some(&payload),
            write_chunk: Some((n + 16) as u32),
            ..Default::default()
        };
        let reply = echo_once(&mut c, &x, &prefix, &opts).unwrap();
        assert_eq!(reply.call_path, CallPath::InlineWithReadChunk, "size {n}");
        let mut want = prefix.clone();
        want.extend_from_slice(&payload);
        want.resize(want.len().div_ceil(4) * 4, 0);
        assert_eq!(reply.bulk.as_deref(), Some(&want[..]), "size {n}");
    }
    assert_eq!(counter(&x.counters().read_calls), 7);
    assert_eq!(c.stats().read_chunk_calls, 7);
    finish(dev, c, x);
}

#[test]
fn positional_read_chunk_falls_back_to_position_zero_past_the_threshold() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let payload = pattern(5000, 2);
    let opts = CallOptions {
        read_payload: Some(&payload),
        write_chunk: Some(8192),
        ..Default::default()
    };
    let t = c.inline_args_limit(&opts) / 4 * 4;
    for (n, path) in [
        (t, CallPath::InlineWithReadChunk),
        (t + 4, CallPath::PositionZero),
    ] {
        let args = pattern(n, 4);
        let reply = echo_once(&mut c, &x, &args, &opts).unwrap();
        assert_eq!(reply.call_path, path, "args {n}");
        let mut want = args.clone();
        want.extend_from_slice(&payload);
        assert_eq!(reply.bulk.as_deref(), Some(&want[..]));
    }
    // Unaligned inline arguments cannot precede a Read chunk.
    let err = c
        .start_call(PROG, VERS, PROC_ECHO, b"abc", &opts)
        .unwrap_err();
    assert!(matches!(err, ClientError::InvalidOptions(_)), "{err:?}");
    finish(dev, c, x);
}

#[test]
fn auth_sys_calls_echo_and_shrink_the_inline_budget() {
    let sys = Auth::Sys(AuthSysParams {
        stamp: 7,
        machinename: b"client.example".to_vec(),
        uid: 1000,
        gid: 100,
        gids: vec![4, 24, 27],
    });
    let (dev, mut c, x) = setup(ClientConfig {
        auth: sys.clone(),
        ..ClientConfig::default()
    });
    // Credential body: 5 words + 16 (name, padded) + 3 gids = 48 bytes.
    assert_eq!(c.inline_args_limit(&CallOptions::default()), 956 - 48);
    let none = Auth::None;
    let anon = CallOptions {
        auth: Some(&none),
        ..Default::default()
    };
    assert_eq!(c.inline_args_limit(&anon), 956);
    for n in [0, 956 - 48, 956 - 47] {
        let args = pattern(n, 8);
        let reply = echo_once(&mut c, &x, &args, &CallOptions::default()).unwrap();
        assert_eq!(reply.results, args);
        let inline = n <= 956 - 48;
        assert_eq!(reply.call_path == CallPath::Inline, inline, "size {n}");
    }
    finish(dev, c, x);
}

#[test]
fn unknown_procedures_and_programs_are_typed_rpc_errors() {
    let (dev, mut c, x) = setup(ClientConfig::default());
    let t = c
        .start_call(PROG, VERS, 99, b"", &CallOptions::default())
        .unwrap();
    serve(&x);
    let err = c.wait(t).unwrap_err();
    assert!(
        matches!(err, ClientError::NotSuccess(AcceptStat::ProcUnavail)),
        "{err:?}"
    );
    let t = c
        .start_call(PROG + 1, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    serve(&x);
    let err = c.wait(t).unwrap_err();
    assert!(
        matches!(err, ClientError::NotSuccess(AcceptStat::ProgUnavail)),
        "{err:?}"
    );
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    serve(&x);
    let null = c.wait(t).unwrap();
    assert_eq!(null.results, b"");
    finish(dev, c, x);
}

#[test]
fn send_with_invalidate_only_when_the_client_said_it_can_take_it() {
    let opts = CallOptions {
        write_chunk: Some(64),
        ..Default::default()
    };
    for allowed in [false, true] {
        let dev = MockDevice::new();
        let xcfg = XprtConfig {
            send_with_invalidate: allowed,
            ..XprtConfig::default()
        };
        let (mut c, x, _hook) = pair(&dev, QpConfig::default(), xcfg, ClientConfig::default());
        // One chunk, one rkey: the call qualifies for Send-with-Invalidate.
        let r = echo_once(&mut c, &x, b"abcd", &opts).unwrap();
        assert_eq!(r.bulk.as_deref(), Some(&b"abcd"[..]));
        assert_eq!(
            c.stats().remote_invalidations,
            u64::from(allowed),
            "allowed = {allowed}"
        );
        finish(dev, c, x);
    }
}
