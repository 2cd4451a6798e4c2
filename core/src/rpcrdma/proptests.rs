//! Property tests of the transport header codec: arbitrary input never
//! panics, and valid headers survive encode -> decode.

extern crate std;

use std::vec::Vec;

use proptest::prelude::*;

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

proptest! {
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
