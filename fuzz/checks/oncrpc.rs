//! Invariants of the ONC RPC v2 codec (RFC 5531) for arbitrary bytes:
//! accepted CALL and REPLY headers re-encode to what was decoded, and every
//! rejection maps to the answer the error says it deserves.

use rdmaxprt_core::oncrpc::{
    decode_call, decode_reply, encode_call, encode_reply, peek_xid, AcceptStat, AuthSysSpec,
    CallDecodeError, CallHeader, CallSpec, Credential, OpaqueAuth, RejectStat, Reply,
    ReplyDecodeError, ReplyStat, AUTH_NONE, MAX_AUTH_BYTES, MAX_GIDS, MAX_MACHINENAME, MSG_CALL,
    MSG_REPLY, RPC_VERSION,
};

use super::rpcrdma::word;

/// Bytes of the fixed CALL words (xid, msg_type, rpcvers, prog, vers, proc).
const CALL_FIXED: usize = 24;

/// Checks an accepted CALL header and its re-encoding.
pub fn check_call(data: &[u8], c: &CallHeader<'_>) {
    assert!(c.args_offset <= data.len());
    assert!(
        c.args_offset >= CALL_FIXED + 16,
        "args_offset {}",
        c.args_offset
    );
    assert_eq!(c.args_offset % 4, 0);
    assert_eq!(Some(c.xid), peek_xid(data));
    assert_eq!(word(data, 4), Some(MSG_CALL));
    assert_eq!(word(data, 8), Some(RPC_VERSION));
    assert_eq!(
        [word(data, 12), word(data, 16), word(data, 20)],
        [Some(c.prog), Some(c.vers), Some(c.proc)]
    );
    let gids: Vec<u32>;
    let cred = match c.cred {
        Credential::None => None,
        Credential::Sys(sys) => {
            assert!(sys.machinename.len() <= MAX_MACHINENAME);
            gids = sys.gids.iter().collect();
            assert_eq!(gids.len(), sys.gids.len());
            assert_eq!(gids.is_empty(), sys.gids.is_empty());
            assert_eq!(sys.gids.into_iter().count(), gids.len());
            assert!(gids.len() <= MAX_GIDS);
            Some(AuthSysSpec {
                stamp: sys.stamp,
                machinename: sys.machinename,
                uid: sys.uid,
                gid: sys.gid,
                gids: &gids,
            })
        }
    };
    let spec = CallSpec {
        xid: c.xid,
        prog: c.prog,
        vers: c.vers,
        proc: c.proc,
        cred,
    };
    assert_eq!(spec.encoded_len(), c.args_offset);
    let mut buf = vec![0u8; spec.encoded_len()];
    assert_eq!(encode_call(&mut buf, &spec), Ok(c.args_offset));
    // Same bytes, except the machinename's XDR padding, which the decoder
    // does not check and the encoder zeroes.
    let mut expect = data[..c.args_offset].to_vec();
    if let Some(sys) = &spec.cred {
        let name_end = 40 + sys.machinename.len();
        for b in &mut expect[name_end..(name_end + 3) & !3] {
            *b = 0;
        }
    }
    assert_eq!(
        buf, expect,
        "encode_call does not reproduce the decoded header"
    );
    assert_eq!(
        decode_call(&buf).as_ref(),
        Ok(c),
        "re-encoded CALL decodes differently"
    );
    let mut short = vec![0u8; buf.len() - 1];
    assert!(encode_call(&mut short, &spec).is_err());
    // The success reply a server would send decodes on the client.
    check_answer(c.xid, ReplyStat::Accepted(AcceptStat::Success));
}

/// Encodes the reply `stat` to `xid` and checks that a client decodes it.
fn check_answer(xid: u32, stat: ReplyStat) {
    let mut buf = vec![0u8; stat.encoded_len()];
    assert_eq!(encode_reply(&mut buf, xid, stat), Ok(stat.encoded_len()));
    let r = decode_reply(&buf).expect("our own reply rejected");
    assert_eq!((r.xid, r.stat, r.body_offset), (xid, stat, buf.len()));
    let none = OpaqueAuth {
        flavor: AUTH_NONE,
        body: &[],
    };
    let verifier = matches!(stat, ReplyStat::Accepted(_)).then_some(none);
    assert_eq!(r.verifier, verifier);
}

/// Checks that a CALL rejection is justified by the bytes and answerable.
pub fn check_call_error(data: &[u8], e: CallDecodeError) {
    match e {
        CallDecodeError::Truncated { len } => {
            assert_eq!(len, data.len());
            assert!(len < CALL_FIXED);
        }
        CallDecodeError::NotACall { msg_type } => {
            assert_eq!(word(data, 4), Some(msg_type));
            assert_ne!(msg_type, MSG_CALL);
        }
        CallDecodeError::RpcVersion { vers } => {
            assert_eq!(word(data, 8), Some(vers));
            assert_ne!(vers, RPC_VERSION);
        }
        _ => {
            assert!(data.len() >= CALL_FIXED, "{e:?} for {} bytes", data.len());
            assert_eq!(word(data, 4), Some(MSG_CALL));
            assert_eq!(word(data, 8), Some(RPC_VERSION));
        }
    }
    if matches!(
        e,
        CallDecodeError::Truncated { .. } | CallDecodeError::AuthTruncated
    ) {
        // Zeros complete any field the message ended in.
        let mut longer = data.to_vec();
        longer.resize(data.len() + 1024, 0);
        let again = decode_call(&longer);
        assert!(!matches!(
            again,
            Err(CallDecodeError::Truncated { .. } | CallDecodeError::AuthTruncated)
        ));
    }
    if let CallDecodeError::UnsupportedFlavor { flavor } = e {
        assert_eq!(word(data, 24), Some(flavor));
        assert!(flavor > 1);
    }
    match e.reply() {
        None => assert!(matches!(
            e,
            CallDecodeError::Truncated { .. } | CallDecodeError::NotACall { .. }
        )),
        Some(stat) => check_answer(peek_xid(data).expect("answerable without xid"), stat),
    }
}

/// Checks an accepted REPLY header and its re-encoding.
pub fn check_reply(data: &[u8], r: &Reply<'_>) {
    assert!(r.body_offset <= data.len());
    assert_eq!(r.body_offset % 4, 0);
    assert_eq!(Some(r.xid), peek_xid(data));
    assert_eq!(word(data, 4), Some(MSG_REPLY));
    assert_eq!(
        r.verifier.is_some(),
        matches!(r.stat, ReplyStat::Accepted(_))
    );
    if let Some(v) = r.verifier {
        assert!(v.body.len() <= MAX_AUTH_BYTES);
        assert_eq!(word(data, 12), Some(v.flavor));
    }
    if let ReplyStat::Denied(RejectStat::AuthError(stat)) = r.stat {
        assert_eq!(word(data, 16), Some(stat as u32));
    }
    let mut buf = vec![0u8; r.stat.encoded_len()];
    assert_eq!(
        encode_reply(&mut buf, r.xid, r.stat),
        Ok(r.stat.encoded_len())
    );
    let plain = match r.verifier {
        None => true,
        Some(v) => v.flavor == AUTH_NONE && v.body.is_empty(),
    };
    if plain {
        // Nothing the encoder cannot express: the bytes must be identical.
        assert_eq!(r.body_offset, buf.len());
        assert_eq!(
            buf,
            &data[..r.body_offset],
            "encode_reply differs from the decoded reply"
        );
    } else {
        // A verifier the encoder does not write: same length apart from it.
        let v = r.verifier.expect("not plain");
        let padded = (v.body.len() + 3) & !3;
        assert_eq!(r.body_offset, buf.len() + padded);
    }
    check_answer(r.xid, r.stat);
    if !buf.is_empty() {
        let mut short = vec![0u8; buf.len() - 1];
        assert!(encode_reply(&mut short, r.xid, r.stat).is_err());
    }
}

/// Checks that a REPLY rejection is justified by the bytes.
pub fn check_reply_error(data: &[u8], e: ReplyDecodeError) {
    match e {
        ReplyDecodeError::Truncated => {
            // Zeros complete any field the message ended in.
            let mut longer = data.to_vec();
            longer.resize(data.len() + 1024, 0);
            assert_ne!(decode_reply(&longer), Err(ReplyDecodeError::Truncated));
        }
        ReplyDecodeError::NotAReply { msg_type } => {
            assert_eq!(word(data, 4), Some(msg_type));
            assert_ne!(msg_type, MSG_REPLY);
        }
        ReplyDecodeError::BadDiscriminant { value } => {
            assert_eq!(word(data, 4), Some(MSG_REPLY));
            assert!(value > 1, "{e:?}");
        }
        ReplyDecodeError::BadVerifier => {
            assert_eq!(word(data, 8), Some(0), "verifier in a denied reply");
            let len = word(data, 16).expect("verifier length") as usize;
            assert!(len > MAX_AUTH_BYTES);
        }
        _ => {}
    }
}

/// Everything for arbitrary bytes (`oncrpc_decode`).
pub fn check_bytes(data: &[u8]) {
    let call = decode_call(data);
    let reply = decode_reply(data);
    assert_eq!(call, decode_call(data), "decode_call is not deterministic");
    assert!(!(call.is_ok() && reply.is_ok()), "both a CALL and a REPLY");
    match call {
        Ok(c) => check_call(data, &c),
        Err(e) => check_call_error(data, e),
    }
    match reply {
        Ok(r) => check_reply(data, &r),
        Err(e) => check_reply_error(data, e),
    }
}
