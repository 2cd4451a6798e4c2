//! Unit and property tests of the ONC RPC codec.

use super::*;
use proptest::prelude::*;

extern crate std;
use std::{vec, vec::Vec};

const SYS: AuthSysSpec<'static> = AuthSysSpec {
    stamp: 0x5eed,
    machinename: b"client.example",
    uid: 1000,
    gid: 100,
    gids: &[4, 24, 27],
};

const NULL_CALL: CallSpec<'static> = CallSpec {
    xid: 0xabcd_0001,
    prog: 100_003,
    vers: 3,
    proc: 6,
    cred: None,
};

fn call(cred: Option<AuthSysSpec<'_>>) -> ([u8; 512], usize) {
    let mut buf = [0u8; 512];
    let spec = CallSpec { cred, ..NULL_CALL };
    let n = encode_call(&mut buf, &spec).unwrap();
    assert_eq!(n, spec.encoded_len());
    (buf, n)
}

fn set_word(buf: &mut [u8], offset: usize, v: u32) {
    buf[offset..offset + 4].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn auth_none_call_round_trip() {
    let (buf, n) = call(None);
    assert_eq!(n, 40);
    let hdr = decode_call(&buf[..n]).unwrap();
    assert_eq!(
        (hdr.xid, hdr.prog, hdr.vers, hdr.proc),
        (0xabcd_0001, 100_003, 3, 6)
    );
    assert_eq!(hdr.cred, Credential::None);
    assert_eq!(hdr.args_offset, 40);
    assert_eq!(peek_xid(&buf), Some(0xabcd_0001));
}

#[test]
fn auth_sys_call_round_trip() {
    let (buf, n) = call(Some(SYS));
    // Arguments after the header are not part of it.
    let hdr = decode_call(&buf[..n + 8]).unwrap();
    assert_eq!(hdr.args_offset, n);
    let Credential::Sys(sys) = hdr.cred else {
        panic!("expected AUTH_SYS, got {:?}", hdr.cred)
    };
    assert_eq!(sys.stamp, SYS.stamp);
    assert_eq!(sys.machinename, SYS.machinename);
    assert_eq!((sys.uid, sys.gid), (1000, 100));
    assert_eq!(sys.gids.len(), 3);
    assert!(sys.gids.iter().eq(SYS.gids.iter().copied()));
}

#[test]
fn auth_sys_at_limits() {
    let name = [b'n'; MAX_MACHINENAME];
    let gids = [7u32; MAX_GIDS];
    let spec = AuthSysSpec {
        machinename: &name,
        gids: &gids,
        ..SYS
    };
    let (buf, n) = call(Some(spec));
    let Credential::Sys(sys) = decode_call(&buf[..n]).unwrap().cred else {
        panic!("expected AUTH_SYS")
    };
    assert_eq!(sys.machinename.len(), MAX_MACHINENAME);
    assert_eq!(sys.gids.len(), MAX_GIDS);
}

#[test]
fn encode_call_rejects_oversized_auth_sys() {
    let name = [b'n'; MAX_MACHINENAME + 1];
    let gids = [0u32; MAX_GIDS + 1];
    let mut buf = [0u8; 1024];
    for (machinename, gids) in [(&name[..], &gids[..1]), (&b"x"[..], &gids[..])] {
        let spec = CallSpec {
            cred: Some(AuthSysSpec {
                machinename,
                gids,
                ..SYS
            }),
            ..NULL_CALL
        };
        assert!(matches!(
            encode_call(&mut buf, &spec),
            Err(EncodeError::LimitExceeded { .. })
        ));
    }
}

#[test]
fn call_truncated_anywhere_is_an_error() {
    let (buf, n) = call(Some(SYS));
    for len in 0..n {
        let err = decode_call(&buf[..len]).unwrap_err();
        let expected_drop = len < 24;
        assert_eq!(err.reply().is_none(), expected_drop, "len {len}: {err:?}");
    }
}

#[test]
fn call_errors_map_to_replies() {
    let (good, n) = call(Some(SYS));
    let case = |offset: usize, v: u32| {
        let mut buf = good;
        set_word(&mut buf, offset, v);
        decode_call(&buf[..n]).unwrap_err()
    };
    assert_eq!(case(4, 1), CallDecodeError::NotACall { msg_type: 1 });
    assert_eq!(case(4, 1).reply(), None);
    assert_eq!(case(8, 3), CallDecodeError::RpcVersion { vers: 3 });
    assert_eq!(case(8, 3).reply(), Some(ReplyStat::RPC_MISMATCH));
    let badcred = Some(ReplyStat::Denied(RejectStat::AuthError(AuthStat::BadCred)));
    assert_eq!(
        case(24, 6),
        CallDecodeError::UnsupportedFlavor { flavor: 6 }
    );
    assert_eq!(case(24, 6).reply(), badcred);
    // Credential length past 400.
    assert_eq!(case(28, 404), CallDecodeError::BadCredential);
    // Machinename length longer than the credential body.
    assert_eq!(case(36, 255), CallDecodeError::BadCredential);
    // Machinename over 255.
    assert_eq!(case(36, 256).reply(), badcred);
    // Verifier flavor not AUTH_NONE.
    let verf = n - 8;
    assert_eq!(case(verf, AUTH_SYS), CallDecodeError::BadVerifier);
    assert_eq!(
        case(verf, AUTH_SYS).reply(),
        Some(ReplyStat::Denied(RejectStat::AuthError(AuthStat::BadVerf)))
    );
    // Verifier body longer than the message: garbage.
    assert_eq!(case(verf + 4, 8), CallDecodeError::AuthTruncated);
    assert_eq!(
        case(verf + 4, 8).reply(),
        Some(ReplyStat::Accepted(AcceptStat::GarbageArgs))
    );
}

#[test]
fn auth_sys_gid_count_and_trailing_bytes() {
    let (good, n) = call(Some(SYS));
    // Offset of the gid count: 24 (fixed) + 8 (flavor, len) + stamp +
    // name length + padded name (16) + uid + gid.
    let ngids = 24 + 8 + 4 + 4 + 16 + 4 + 4;
    let mut buf = good;
    set_word(&mut buf, ngids, 17);
    assert_eq!(
        decode_call(&buf[..n]).unwrap_err(),
        CallDecodeError::BadCredential
    );
    // Fewer gids than the body holds: trailing bytes in the credential.
    let mut buf = good;
    set_word(&mut buf, ngids, 2);
    assert_eq!(
        decode_call(&buf[..n]).unwrap_err(),
        CallDecodeError::BadCredential
    );
}

#[test]
fn auth_none_with_body_is_bad_credential() {
    let (mut buf, _) = call(None);
    // cred length 4, followed by 4 body bytes, then the verifier.
    set_word(&mut buf, 28, 4);
    set_word(&mut buf, 36, AUTH_NONE);
    set_word(&mut buf, 40, 0);
    assert_eq!(
        decode_call(&buf[..44]).unwrap_err(),
        CallDecodeError::BadCredential
    );
}

const ALL_STATS: [ReplyStat; 10] = [
    ReplyStat::Accepted(AcceptStat::Success),
    ReplyStat::Accepted(AcceptStat::ProgUnavail),
    ReplyStat::Accepted(AcceptStat::ProgMismatch { low: 2, high: 4 }),
    ReplyStat::Accepted(AcceptStat::ProcUnavail),
    ReplyStat::Accepted(AcceptStat::GarbageArgs),
    ReplyStat::Accepted(AcceptStat::SystemErr),
    ReplyStat::RPC_MISMATCH,
    ReplyStat::Denied(RejectStat::AuthError(AuthStat::BadCred)),
    ReplyStat::Denied(RejectStat::AuthError(AuthStat::BadVerf)),
    ReplyStat::Denied(RejectStat::AuthError(AuthStat::GssCtxProblem)),
];

#[test]
fn every_reply_round_trips() {
    for stat in ALL_STATS {
        let mut buf = [0u8; 64];
        let n = encode_reply(&mut buf, 77, stat).unwrap();
        assert_eq!(n, stat.encoded_len());
        let reply = decode_reply(&buf[..n]).unwrap();
        assert_eq!((reply.xid, reply.stat, reply.body_offset), (77, stat, n));
        let accepted = matches!(stat, ReplyStat::Accepted(_));
        assert_eq!(reply.verifier.is_some(), accepted);
        for len in 0..n {
            assert_eq!(
                decode_reply(&buf[..len]).unwrap_err(),
                ReplyDecodeError::Truncated
            );
        }
    }
}

#[test]
fn success_reply_wire_format() {
    let mut buf = [0u8; 24];
    let n = encode_reply(&mut buf, 9, ReplyStat::Accepted(AcceptStat::Success)).unwrap();
    assert_eq!(n, 24);
    let expect: [u32; 6] = [9, MSG_REPLY, MSG_ACCEPTED, AUTH_NONE, 0, 0];
    for (i, w) in expect.iter().enumerate() {
        assert_eq!(buf[i * 4..i * 4 + 4], w.to_be_bytes());
    }
}

#[test]
fn reply_encode_needs_room() {
    let mut buf = [0u8; 23];
    assert_eq!(
        encode_reply(&mut buf, 1, ReplyStat::Accepted(AcceptStat::Success)),
        Err(EncodeError::BufferTooSmall {
            needed: 24,
            available: 23
        })
    );
    let mut buf = [0u8; 39];
    assert!(matches!(
        encode_call(&mut buf, &NULL_CALL),
        Err(EncodeError::BufferTooSmall { needed: 40, .. })
    ));
}

#[test]
fn reply_decode_rejects_bad_discriminants() {
    let mut buf = [0u8; 32];
    let n = encode_reply(&mut buf, 1, ReplyStat::RPC_MISMATCH).unwrap();
    let mut bad = buf;
    set_word(&mut bad, 4, MSG_CALL);
    assert_eq!(
        decode_reply(&bad[..n]),
        Err(ReplyDecodeError::NotAReply { msg_type: 0 })
    );
    let mut bad = buf;
    set_word(&mut bad, 8, 2);
    assert_eq!(
        decode_reply(&bad[..n]),
        Err(ReplyDecodeError::BadDiscriminant { value: 2 })
    );
    let n = encode_reply(
        &mut buf,
        1,
        ReplyStat::Denied(RejectStat::AuthError(AuthStat::Failed)),
    )
    .unwrap();
    set_word(&mut buf, 16, 99);
    assert_eq!(
        decode_reply(&buf[..n]),
        Err(ReplyDecodeError::BadDiscriminant { value: 99 })
    );
}

/// A word of the fast paths' shapes: usually the expected value,
/// sometimes a neighbour or anything.
fn near(typical: u32) -> impl Strategy<Value = u32> {
    prop_oneof![6 => Just(typical), 1 => 0u32..4, 1 => any::<u32>()]
}

/// Ten words shaped like an `AUTH_NONE` CALL (or, with `reply`, six like
/// an accepted SUCCESS reply), perturbed, plus some bytes, cut anywhere.
fn near_shape(reply: bool) -> impl Strategy<Value = Vec<u8>> {
    let typical: Vec<u32> = if reply {
        vec![0, MSG_REPLY, MSG_ACCEPTED, AUTH_NONE, 0, 0]
    } else {
        vec![
            0,
            MSG_CALL,
            RPC_VERSION,
            0,
            0,
            0,
            AUTH_NONE,
            0,
            AUTH_NONE,
            0,
        ]
    };
    let n = typical.len();
    (
        typical.into_iter().map(near).collect::<Vec<_>>(),
        proptest::collection::vec(any::<u8>(), 0..12),
        prop_oneof![3 => Just(usize::MAX), 1 => 0..n * 4 + 8],
    )
        .prop_map(|(words, tail, cut)| {
            let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            b.extend_from_slice(&tail);
            b.truncate(cut);
            b
        })
}

proptest! {
    #[test]
    fn call_fast_path_decodes_what_the_general_decoder_does(bytes in near_shape(false)) {
        let general = call::decode_call_general(&bytes);
        prop_assert_eq!(decode_call(&bytes), general);
        if let Some(h) = call::auth_none_call(&bytes) {
            prop_assert_eq!(Ok(h), general);
        }
    }

    #[test]
    fn reply_fast_path_decodes_what_the_general_decoder_does(bytes in near_shape(true)) {
        let general = reply::decode_reply_general(&bytes);
        prop_assert_eq!(decode_reply(&bytes), general);
        if let Some(r) = reply::success_reply(&bytes) {
            prop_assert_eq!(Ok(r), general);
        }
    }

    #[test]
    fn malformed_near_the_fast_paths_is_refused_as_before(
        word in 1usize..10, value in 1u32..=u32::MAX, xid in any::<u32>(),
    ) {
        // One fixed word of the AUTH_NONE CALL wrong (prog, vers and proc
        // are free): never the fast path, the general decoder's verdict.
        let mut words = [xid, MSG_CALL, RPC_VERSION, 7, 1, 2, AUTH_NONE, 0, AUTH_NONE, 0];
        if !(3..6).contains(&word) {
            words[word] = words[word].wrapping_add(value);
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            prop_assert!(call::auth_none_call(&bytes).is_none());
            prop_assert_eq!(decode_call(&bytes), call::decode_call_general(&bytes));
        }
        // The same for a SUCCESS reply's six words.
        let mut r = [xid, MSG_REPLY, MSG_ACCEPTED, AUTH_NONE, 0, 0];
        let at = 1 + word % 5;
        r[at] = r[at].wrapping_add(value);
        let bytes: Vec<u8> = r.iter().flat_map(|w| w.to_be_bytes()).collect();
        prop_assert!(reply::success_reply(&bytes).is_none());
        prop_assert_eq!(decode_reply(&bytes), reply::decode_reply_general(&bytes));
    }

    #[test]
    fn auth_none_call_encoding_matches_the_general_encoder(
        xid in any::<u32>(), prog in any::<u32>(), vers in any::<u32>(), proc in any::<u32>(),
        room in 0usize..48,
    ) {
        let spec = CallSpec { xid, prog, vers, proc, cred: None };
        let (mut fast, mut general) = ([0xa5u8; 48], [0xa5u8; 48]);
        prop_assert_eq!(
            encode_call(&mut fast[..room], &spec),
            call::encode_call_general(&mut general[..room], &spec)
        );
        prop_assert_eq!(fast, general);
    }

    #[test]
    fn success_encoding_matches_the_general_encoder(xid in any::<u32>(), room in 0usize..32) {
        let stat = ReplyStat::Accepted(AcceptStat::Success);
        let (mut fast, mut general) = ([0xa5u8; 32], [0xa5u8; 32]);
        prop_assert_eq!(
            encode_reply(&mut fast[..room], xid, stat),
            reply::encode_reply_general(&mut general[..room], xid, stat)
        );
        prop_assert_eq!(fast, general);
    }

    #[test]
    fn decode_call_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_call(&bytes);
        let _ = decode_reply(&bytes);
    }

    #[test]
    fn decode_call_never_panics_on_plausible_headers(
        words in proptest::collection::vec(prop_oneof![0u32..20, 250u32..420, any::<u32>()], 0..64)
    ) {
        let mut bytes = [0u8; 256];
        for (i, w) in words.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        let n = words.len() * 4;
        if let Ok(hdr) = decode_call(&bytes[..n]) {
            prop_assert!(hdr.args_offset <= n);
        }
        if let Ok(reply) = decode_reply(&bytes[..n]) {
            prop_assert!(reply.body_offset <= n);
        }
    }

    #[test]
    fn auth_sys_calls_round_trip(
        xid in any::<u32>(), prog in any::<u32>(), vers in any::<u32>(), proc in any::<u32>(),
        stamp in any::<u32>(), uid in any::<u32>(), gid in any::<u32>(),
        name in proptest::collection::vec(any::<u8>(), 0..=MAX_MACHINENAME),
        gids in proptest::collection::vec(any::<u32>(), 0..=MAX_GIDS),
    ) {
        let sys = AuthSysSpec { stamp, machinename: &name, uid, gid, gids: &gids };
        let spec = CallSpec { xid, prog, vers, proc, cred: Some(sys) };
        let mut buf = [0u8; 512];
        let n = encode_call(&mut buf, &spec).unwrap();
        let hdr = decode_call(&buf[..n]).unwrap();
        prop_assert_eq!((hdr.xid, hdr.prog, hdr.vers, hdr.proc, hdr.args_offset), (xid, prog, vers, proc, n));
        let Credential::Sys(got) = hdr.cred else { panic!("expected AUTH_SYS") };
        prop_assert_eq!((got.stamp, got.machinename, got.uid, got.gid), (stamp, &name[..], uid, gid));
        prop_assert!(got.gids.iter().eq(gids.iter().copied()));
    }
}
