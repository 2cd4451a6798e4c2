//! Property tests of the transport header codec: arbitrary input never
//! panics, and valid headers survive encode -> decode.

extern crate std;

use std::vec::Vec;

use proptest::prelude::*;

use super::decode::{decode_general, inline_msg};
use super::encode::encode_call_general;
use super::tests::{chunks_of, encode_with_body, rseg, seg, BODY};
use super::*;

fn segment() -> impl Strategy<Value = Segment> {
    (any::<u32>(), 1u32..=65536, any::<u64>()).prop_map(|(handle, length, offset)| {
        seg(handle, length, offset.min(u64::MAX - u64::from(length)))
    })
}

fn chunks(max: usize) -> impl Strategy<Value = Vec<Vec<Segment>>> {
    proptest::collection::vec(proptest::collection::vec(segment(), 1..6), 0..max)
}

/// Words near the inline `RDMA_MSG` shape: mostly what the fast path
/// takes, sometimes a neighbouring value or anything.
fn near_word(typical: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => Just(typical),
        1 => 0u32..6,
        1 => any::<u32>(),
    ]
}

/// A 28-byte header of the inline shape with words perturbed, then a body
/// of 0-12 bytes, cut anywhere near the fixed part's end.
fn near_inline() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u32>(),
        near_word(1),
        any::<u32>(),
        near_word(0),
        proptest::collection::vec(near_word(0), 3),
        proptest::collection::vec(any::<u8>(), 0..12),
        prop_oneof![3 => Just(usize::MAX), 1 => 0usize..40],
    )
        .prop_map(|(xid, vers, credits, proc, lists, body, cut)| {
            let mut b: Vec<u8> = [xid, vers, credits, proc]
                .iter()
                .chain(&lists)
                .flat_map(|w| w.to_be_bytes())
                .collect();
            b.extend_from_slice(&body);
            b.truncate(cut);
            b
        })
}

proptest! {
    #[test]
    fn fast_path_decodes_what_the_general_decoder_does(bytes in near_inline()) {
        for (decode, reply) in [(decode_header as fn(_, _) -> _, false), (decode_reply_header, true)] {
            let general = decode_general(&bytes, &Limits::DEFAULT, reply);
            prop_assert_eq!(decode(&bytes, &Limits::DEFAULT), general);
            // Whatever the fast path takes, the general decoder accepts
            // with the same header.
            if let Some(h) = inline_msg(&bytes) {
                prop_assert_eq!(Ok(h), general);
            }
        }
    }

    #[test]
    fn malformed_near_the_fast_path_is_refused_as_before(
        xid in any::<u32>(),
        word in prop_oneof![Just(1usize), 3usize..7],
        value in 1u32..=u32::MAX,
        body in 0usize..8,
    ) {
        // One word of the inline shape wrong (version, procedure or a list
        // discriminator), or no body at all: never the fast path, and the
        // same verdict as the general decoder.
        let mut words = [xid, 1, 64, 0, 0, 0, 0];
        words[word] = if word == 1 { value.wrapping_add(1) } else { value };
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        bytes.resize(bytes.len() + body * 4, 0xee);
        prop_assert_eq!(inline_msg(&bytes), None);
        for (decode, reply) in [(decode_header as fn(_, _) -> _, false), (decode_reply_header, true)] {
            prop_assert_eq!(decode(&bytes, &Limits::DEFAULT), decode_general(&bytes, &Limits::DEFAULT, reply));
        }
        let bare: Vec<u8> = [xid, 1, 64, 0, 0, 0, 0].iter().flat_map(|w| w.to_be_bytes()).collect();
        prop_assert_eq!(inline_msg(&bare), None);
        prop_assert_eq!(decode_header(&bare, &Limits::DEFAULT), Err(DecodeError::MissingBody));
    }

    #[test]
    fn chunkless_encoding_matches_the_general_encoder(
        xid in any::<u32>(), credits in any::<u32>(), nomsg in any::<bool>(), room in 0usize..40,
    ) {
        let spec = CallSpec {
            xid, credits,
            proc: if nomsg { MsgProc::NoMsg } else { MsgProc::Msg },
            read_list: &[], write_list: &[], reply_chunk: None,
        };
        let (mut fast, mut general) = ([0xa5u8; 40], [0xa5u8; 40]);
        let a = encode_call(&mut fast[..room], &spec);
        let b = encode_call_general(&mut general[..room], &spec);
        prop_assert_eq!(a, b);
        prop_assert_eq!(fast, general);
        let reply = ReplySpec { xid, credits, proc: spec.proc, write_list: &[], reply_chunk: None };
        let mut r = [0xa5u8; 40];
        prop_assert_eq!(encode_reply(&mut r[..room], &reply), b);
        prop_assert_eq!(r, general);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for decode in [decode_header, decode_reply_header] {
            if let Ok(hdr) = decode(&bytes, &Limits::DEFAULT) {
                prop_assert!(hdr.header_len() <= bytes.len());
            }
        }
    }

    #[test]
    fn plausible_words_never_panic(words in proptest::collection::vec(
        prop_oneof![Just(0u32), Just(1u32), 2u32..8, any::<u32>()], 0..96)
    ) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        let mut bytes = bytes;
        if bytes.len() >= 8 {
            bytes[4..8].copy_from_slice(&1u32.to_be_bytes());
        }
        for decode in [decode_header, decode_reply_header] {
            if let Ok(hdr) = decode(&bytes, &Limits::DEFAULT) {
                // Iterating a validated header visits exactly what was counted.
                prop_assert_eq!(hdr.read_list().iter().count(), hdr.read_list().len());
                prop_assert_eq!(hdr.write_list().iter().count(), hdr.write_list().len());
                for c in hdr.write_list() {
                    prop_assert_eq!(c.iter().count(), c.len());
                }
            }
        }
    }

    #[test]
    fn calls_round_trip(
        xid in any::<u32>(), credits in any::<u32>(),
        reads in proptest::collection::vec((1u32..64, segment()), 0..6),
        nomsg in any::<bool>(),
        write in chunks(4),
        reply in proptest::option::of(proptest::collection::vec(segment(), 1..6)),
    ) {
        let mut read_list: Vec<ReadSegment> =
            reads.iter().map(|&(p, s)| rseg(p * 4, s)).collect();
        if nomsg {
            read_list.push(rseg(0, seg(1, 1, 0)));
        }
        let refs: Vec<&[Segment]> = write.iter().map(Vec::as_slice).collect();
        let spec = CallSpec {
            xid, credits,
            proc: if nomsg { MsgProc::NoMsg } else { MsgProc::Msg },
            read_list: &read_list,
            write_list: &refs,
            reply_chunk: reply.as_deref(),
        };
        let (buf, len) = encode_with_body(&spec, BODY);
        let hdr = decode_header(&buf[..len], &Limits::DEFAULT).unwrap();
        prop_assert_eq!((hdr.xid(), hdr.credits(), hdr.proc()), (xid, credits, spec.proc.into()));
        prop_assert!(hdr.read_list().iter().eq(read_list.iter().copied()));
        prop_assert_eq!(&chunks_of(hdr.write_list()), &write);
        prop_assert_eq!(&hdr.reply_chunk().map(|c| c.iter().collect::<Vec<_>>()), &reply);
        prop_assert_eq!(hdr.header_len(), spec.encoded_len());
    }

    #[test]
    fn replies_round_trip(
        xid in any::<u32>(),
        write in proptest::collection::vec(
            proptest::collection::vec((any::<u32>(), 0u32..=65536, 0u64..1 << 40), 0..4), 0..4),
        reply in proptest::option::of(proptest::collection::vec(segment(), 0..4)),
    ) {
        let write: Vec<Vec<Segment>> = write.iter()
            .map(|c| c.iter().map(|&(h, l, o)| seg(h, l, o)).collect()).collect();
        let refs: Vec<&[Segment]> = write.iter().map(Vec::as_slice).collect();
        let spec = ReplySpec {
            xid, credits: 1,
            proc: if reply.is_some() { MsgProc::NoMsg } else { MsgProc::Msg },
            write_list: &refs,
            reply_chunk: reply.as_deref(),
        };
        let mut buf = [0u8; 1024];
        let n = encode_reply(&mut buf, &spec).unwrap();
        let hdr = decode_reply_header(&buf[..n + 4], &Limits::DEFAULT).unwrap();
        prop_assert_eq!(&chunks_of(hdr.write_list()), &write);
        prop_assert_eq!(&hdr.reply_chunk().map(|c| c.iter().collect::<Vec<_>>()), &reply);
        prop_assert_eq!(hdr.header_len(), n);
    }
}
