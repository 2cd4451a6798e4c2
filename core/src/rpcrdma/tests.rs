//! Unit and property tests of the transport header codec.

extern crate std;

use std::vec::Vec;

use super::*;

pub(super) const fn seg(handle: u32, length: u32, offset: u64) -> Segment {
    Segment {
        handle,
        length,
        offset,
    }
}

pub(super) const fn rseg(position: u32, segment: Segment) -> ReadSegment {
    ReadSegment { position, segment }
}

const READS: [ReadSegment; 3] = [
    rseg(8, seg(1, 4096, 0x1000)),
    rseg(8, seg(2, 100, 0x9000)),
    rseg(16, seg(3, 512, 0x2_0000_0000)),
];
const W0: [Segment; 2] = [seg(10, 8192, 0x4000), seg(11, 4096, 0x8000)];
const W1: [Segment; 1] = [seg(12, 65536, 0x10_0000)];
const REPLY: [Segment; 1] = [seg(20, 2048, 0xdead_0000)];
pub(super) const BODY: &[u8] = b"RPC message body";

fn full_call() -> CallSpec<'static> {
    CallSpec {
        xid: 0x1234_5678,
        credits: 128,
        proc: MsgProc::Msg,
        read_list: &READS,
        write_list: &[&W0, &W1],
        reply_chunk: Some(&REPLY),
    }
}

/// Encodes `spec` followed by `body`; returns the buffer and total length.
pub(super) fn encode_with_body(spec: &CallSpec<'_>, body: &[u8]) -> ([u8; 1024], usize) {
    let mut buf = [0u8; 1024];
    let n = encode_call(&mut buf, spec).unwrap();
    assert_eq!(n, spec.encoded_len());
    buf[n..n + body.len()].copy_from_slice(body);
    (buf, n + body.len())
}

fn set_word(buf: &mut [u8], offset: usize, v: u32) {
    buf[offset..offset + 4].copy_from_slice(&v.to_be_bytes());
}

fn call_err(buf: &[u8], limits: &Limits) -> DecodeError {
    decode_header(buf, limits).unwrap_err()
}

pub(super) fn chunks_of(list: WriteList<'_>) -> Vec<Vec<Segment>> {
    list.iter().map(|c| c.iter().collect()).collect()
}

#[test]
fn call_round_trip() {
    let (buf, len) = encode_with_body(&full_call(), BODY);
    let hdr = decode_header(&buf[..len], &Limits::DEFAULT).unwrap();
    assert_eq!(
        (hdr.xid(), hdr.vers(), hdr.credits()),
        (0x1234_5678, 1, 128)
    );
    assert_eq!(hdr.proc(), Proc::Msg);
    assert!(hdr.read_list().iter().eq(READS));
    assert_eq!(hdr.read_list().len(), 3);
    assert!(hdr.read_list().chunk(8).eq(READS[..2].iter().copied()));
    assert_eq!(hdr.read_list().chunk_len(8), 4196);
    assert_eq!(hdr.read_list().chunk_len(4), 0);
    assert!(!hdr.read_list().has_position_zero());
    assert_eq!(hdr.write_list().len(), 2);
    assert_eq!(chunks_of(hdr.write_list()), [W0.to_vec(), W1.to_vec()]);
    assert_eq!(hdr.write_list().iter().next().unwrap().total_len(), 12288);
    let reply = hdr.reply_chunk().unwrap();
    assert!(reply.iter().eq(REPLY));
    let body = hdr.body_offset().unwrap();
    assert_eq!(body, full_call().encoded_len());
    assert_eq!(&buf[body..len], BODY);
    assert_eq!(hdr.rdma_error(), None);
    assert_eq!(peek_xid(&buf), Some(0x1234_5678));
}

#[test]
fn minimal_msg_header_is_28_bytes() {
    let spec = CallSpec {
        read_list: &[],
        write_list: &[],
        reply_chunk: None,
        ..full_call()
    };
    assert_eq!(spec.encoded_len(), HEADER_MIN_SIZE);
    let (buf, len) = encode_with_body(&spec, BODY);
    let hdr = decode_header(&buf[..len], &Limits::DEFAULT).unwrap();
    assert_eq!(hdr.body_offset(), Some(HEADER_MIN_SIZE));
    assert!(hdr.read_list().is_empty() && hdr.write_list().is_empty());
    assert_eq!(hdr.reply_chunk(), None);
    // Exact wire image: xid, vers, credits, RDMA_MSG, three empty lists.
    let words: Vec<u32> = buf[..28]
        .chunks(4)
        .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(words, [0x1234_5678, 1, 128, 0, 0, 0, 0]);
}

#[test]
fn nomsg_call_with_position_zero() {
    let reads = [rseg(0, seg(7, 300, 0x100)), rseg(0, seg(8, 200, 0x900))];
    let spec = CallSpec {
        proc: MsgProc::NoMsg,
        read_list: &reads,
        ..full_call()
    };
    let (buf, len) = encode_with_body(&spec, &[]);
    let hdr = decode_header(&buf[..len], &Limits::DEFAULT).unwrap();
    assert_eq!(hdr.proc(), Proc::NoMsg);
    assert!(hdr.read_list().has_position_zero());
    assert_eq!(hdr.read_list().chunk_len(0), 500);
    assert_eq!(hdr.body_offset(), None);
    assert_eq!(hdr.header_len(), len);
}

#[test]
fn reply_round_trip_with_unused_chunks() {
    let written = [seg(10, 8000, 0x4000), seg(11, 0, 0x8000)];
    let unused: [Segment; 0] = [];
    let spec = ReplySpec {
        xid: 9,
        credits: 32,
        proc: MsgProc::NoMsg,
        write_list: &[&written, &unused],
        reply_chunk: Some(&REPLY),
    };
    let mut buf = [0u8; 256];
    let n = encode_reply(&mut buf, &spec).unwrap();
    assert_eq!(n, spec.encoded_len());
    let hdr = decode_reply_header(&buf[..n], &Limits::DEFAULT).unwrap();
    assert_eq!((hdr.xid(), hdr.credits(), hdr.proc()), (9, 32, Proc::NoMsg));
    assert_eq!(chunks_of(hdr.write_list()), [written.to_vec(), Vec::new()]);
    assert!(hdr.reply_chunk().unwrap().iter().eq(REPLY));
    // The same bytes as a call break the call-only rules.
    assert_eq!(
        call_err(&buf[..n], &Limits::DEFAULT),
        DecodeError::ZeroLengthSegment { offset: 44 }
    );
}

#[test]
fn reply_rules() {
    // A reply may not carry a Read list.
    let (buf, len) = encode_with_body(&full_call(), BODY);
    let err = decode_reply_header(&buf[..len], &Limits::DEFAULT).unwrap_err();
    assert_eq!(err, DecodeError::ReadListInReply);
    // RDMA_NOMSG reply without a Reply chunk has nowhere to carry the RPC.
    let spec = ReplySpec {
        xid: 1,
        credits: 1,
        proc: MsgProc::NoMsg,
        write_list: &[],
        reply_chunk: None,
    };
    let mut buf = [0u8; 64];
    let n = encode_reply(&mut buf, &spec).unwrap();
    let err = decode_reply_header(&buf[..n], &Limits::DEFAULT).unwrap_err();
    assert_eq!(err, DecodeError::MissingMessageChunk);
    // RDMA_MSG reply needs an inline body.
    let spec = ReplySpec {
        proc: MsgProc::Msg,
        ..spec
    };
    let n = encode_reply(&mut buf, &spec).unwrap();
    assert_eq!(
        decode_reply_header(&buf[..n], &Limits::DEFAULT).unwrap_err(),
        DecodeError::MissingBody
    );
    assert!(decode_reply_header(&buf[..n + 4], &Limits::DEFAULT).is_ok());
}

#[test]
fn rdma_error_and_done_messages() {
    let mut buf = [0u8; 64];
    for (err, len) in [(RdmaError::VERS, 28), (RdmaError::Chunk, 20)] {
        let n = encode_error(&mut buf, 5, 16, err).unwrap();
        assert_eq!((n, err.encoded_len()), (len, len));
        for decode in [decode_header, decode_reply_header] {
            let hdr = decode(&buf[..n], &Limits::DEFAULT).unwrap();
            assert_eq!(
                (hdr.xid(), hdr.proc(), hdr.rdma_error()),
                (5, Proc::Error, Some(err))
            );
            assert!(hdr.write_list().is_empty());
        }
        for short in FIXED_HEADER_SIZE..n {
            let e = decode_reply_header(&buf[..short], &Limits::DEFAULT).unwrap_err();
            assert_eq!(
                (e, e.reply_with()),
                (DecodeError::MalformedError, ReplyWith::Drop)
            );
        }
    }
    set_word(&mut buf, 16, 3);
    assert_eq!(
        decode_reply_header(&buf[..20], &Limits::DEFAULT).unwrap_err(),
        DecodeError::MalformedError
    );
    // RDMA_DONE is the bare fixed part.
    set_word(&mut buf, 12, Proc::Done as u32);
    let hdr = decode_header(&buf[..16], &Limits::DEFAULT).unwrap();
    assert_eq!((hdr.proc(), hdr.header_len()), (Proc::Done, 16));
}

#[test]
fn bad_version_gets_err_vers() {
    let (mut buf, len) = encode_with_body(&full_call(), BODY);
    set_word(&mut buf, 4, 2);
    let err = call_err(&buf[..len], &Limits::DEFAULT);
    assert_eq!(err, DecodeError::BadVersion { vers: 2 });
    assert_eq!(err.reply_with(), ReplyWith::ErrVers);
    assert_eq!(
        err.reply_with().rdma_error(),
        Some(RdmaError::Vers { low: 1, high: 1 })
    );
}

/// The kernel's answer to a version-2 call, word for word (svcrdma echoes
/// the caller's version): RDMA_ERROR / ERR_VERS 1..1.
const KERNEL_ERR_VERS_V2: [u32; 7] = [0x5200_0bad, 2, 0x40, 4, 1, 1, 1];

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|w| w.to_be_bytes()).collect()
}

#[test]
fn reply_err_vers_echoing_another_version_decodes() {
    let buf = words(&KERNEL_ERR_VERS_V2);
    let hdr = decode_reply_header(&buf, &Limits::DEFAULT).unwrap();
    assert_eq!(
        (hdr.xid(), hdr.vers(), hdr.credits(), hdr.proc()),
        (0x5200_0bad, 2, 0x40, Proc::Error)
    );
    assert_eq!(hdr.rdma_error(), Some(RdmaError::Vers { low: 1, high: 1 }));
    assert_eq!(hdr.header_len(), 28);
    assert_eq!(hdr.write_list().iter().count(), 0);
    assert!(hdr.reply_chunk().is_none());
    // Any version word, as long as the body is ERR_VERS.
    let mut other = KERNEL_ERR_VERS_V2;
    other[1] = 0xffff_ffff;
    let buf = words(&other);
    let hdr = decode_reply_header(&buf, &Limits::DEFAULT).unwrap();
    assert_eq!(hdr.vers(), 0xffff_ffff);
}

#[test]
fn other_version_garbage_is_still_bad_version() {
    let bad = DecodeError::BadVersion { vers: 2 };
    let reject = |w: &[u32]| decode_reply_header(&words(w), &Limits::DEFAULT).unwrap_err();
    // ERR_CHUNK, unknown error codes, ERR_VERS cut short.
    assert_eq!(reject(&[1, 2, 1, 4, 2]), bad);
    assert_eq!(reject(&[1, 2, 1, 4, 3, 1, 1]), bad);
    assert_eq!(reject(&[1, 2, 1, 4, 1, 1]), bad);
    assert_eq!(reject(&[1, 2, 1, 4]), bad);
    // Every other procedure, even a well-formed one.
    for proc in [0, 1, 2, 3, 5] {
        assert_eq!(reject(&[1, 2, 1, proc, 0, 0, 0, 9]), bad);
    }
    // Too short for the fixed part: that error wins.
    assert_eq!(reject(&[1, 2, 1]), DecodeError::TooShort { len: 12 });
    // A server never accepts a call of another version, ERR_VERS-shaped or not.
    assert_eq!(
        decode_header(&words(&KERNEL_ERR_VERS_V2), &Limits::DEFAULT).unwrap_err(),
        bad
    );
}

#[test]
fn unknown_and_unsupported_procs() {
    let (mut buf, len) = encode_with_body(&full_call(), BODY);
    set_word(&mut buf, 12, 5);
    let err = call_err(&buf[..len], &Limits::DEFAULT);
    assert_eq!(err, DecodeError::UnknownProc { proc: 5 });
    assert_eq!(err.reply_with(), ReplyWith::ErrChunk);
    set_word(&mut buf, 12, Proc::MsgP as u32);
    let err = call_err(&buf[..len], &Limits::DEFAULT);
    assert_eq!(err, DecodeError::UnsupportedProc { proc: 2 });
    assert_eq!(err.reply_with().rdma_error(), Some(RdmaError::Chunk));
}

#[test]
fn truncated_at_every_offset() {
    let (buf, len) = encode_with_body(&full_call(), BODY);
    let header_len = full_call().encoded_len();
    for cut in 0..=header_len {
        let err = call_err(&buf[..cut], &Limits::DEFAULT);
        let expect = if cut < FIXED_HEADER_SIZE {
            ReplyWith::Drop
        } else {
            ReplyWith::ErrChunk
        };
        assert_eq!(err.reply_with(), expect, "cut at {cut}: {err:?}");
    }
    assert_eq!(
        call_err(&buf[..header_len], &Limits::DEFAULT),
        DecodeError::MissingBody
    );
    assert!(decode_header(&buf[..len], &Limits::DEFAULT).is_ok());
}

const TIGHT: Limits = Limits {
    max_read_segments: 3,
    max_write_chunks: 2,
    max_segments_per_chunk: 2,
    max_chunk_bytes: 65536,
};

#[test]
fn limits_are_inclusive() {
    let (buf, len) = encode_with_body(&full_call(), BODY);
    assert!(decode_header(&buf[..len], &TIGHT).is_ok());
}

#[test]
fn too_many_of_each() {
    let (buf, len) = encode_with_body(&full_call(), BODY);
    let tighter = |f: fn(&mut Limits)| {
        let mut l = TIGHT;
        f(&mut l);
        call_err(&buf[..len], &l)
    };
    assert_eq!(
        tighter(|l| l.max_read_segments = 2),
        DecodeError::TooManyReadSegments { limit: 2 }
    );
    assert_eq!(
        tighter(|l| l.max_write_chunks = 1),
        DecodeError::TooManyWriteChunks { limit: 1 }
    );
    assert_eq!(
        tighter(|l| l.max_segments_per_chunk = 1),
        DecodeError::TooManySegments { count: 2, limit: 1 }
    );
    assert_eq!(
        tighter(|l| l.max_chunk_bytes = 65535),
        DecodeError::ChunkTooLong { limit: 65535 }
    );
    for l in [
        |l: &mut Limits| l.max_read_segments = 0,
        |l: &mut Limits| l.max_write_chunks = 0,
    ] {
        assert_eq!(tighter(l).reply_with(), ReplyWith::ErrChunk);
    }
}

#[test]
fn read_chunk_length_counts_scattered_segments() {
    // Two segments at position 8 separated by one at 16: still one chunk.
    let reads = [READS[0], READS[2], READS[1]];
    let spec = CallSpec {
        read_list: &reads,
        ..full_call()
    };
    let (buf, len) = encode_with_body(&spec, BODY);
    let limits = Limits {
        max_chunk_bytes: 4195,
        ..Limits::DEFAULT
    };
    assert_eq!(
        call_err(&buf[..len], &limits),
        DecodeError::ChunkTooLong { limit: 4195 }
    );
    let hdr = decode_header(&buf[..len], &Limits::DEFAULT).unwrap();
    assert_eq!(hdr.read_list().chunk_len(8), 4196);
}

#[test]
fn segment_offset_overflow() {
    for (offset, length, ok) in [
        (u64::MAX - 1, 1, true),
        (u64::MAX - 1, 2, false),
        (u64::MAX, 1, false),
    ] {
        let w = [seg(1, length, offset)];
        let spec = CallSpec {
            read_list: &[],
            write_list: &[&w],
            reply_chunk: None,
            ..full_call()
        };
        let (buf, len) = encode_with_body(&spec, BODY);
        let got = decode_header(&buf[..len], &Limits::DEFAULT);
        match ok {
            true => assert!(got.is_ok()),
            false => assert_eq!(
                got.unwrap_err(),
                DecodeError::SegmentOverflow { offset: 28 }
            ),
        }
    }
}

#[test]
fn misaligned_read_position() {
    let reads = [rseg(6, seg(1, 10, 0))];
    let spec = CallSpec {
        read_list: &reads,
        ..full_call()
    };
    let (buf, len) = encode_with_body(&spec, BODY);
    let err = call_err(&buf[..len], &Limits::DEFAULT);
    assert_eq!(err, DecodeError::MisalignedPosition { position: 6 });
    assert_eq!(err.reply_with(), ReplyWith::ErrChunk);
}

#[test]
fn call_chunk_rules() {
    let base = full_call();
    let (good, len) = encode_with_body(&base, BODY);
    let read_list_end = 16 + 3 * 24;
    // Bad discriminator on the read list terminator.
    let mut buf = good;
    set_word(&mut buf, read_list_end, 2);
    assert_eq!(
        call_err(&buf[..len], &Limits::DEFAULT),
        DecodeError::BadDiscriminator {
            offset: read_list_end,
            value: 2
        }
    );
    // Zero-length read segment (length word of the first segment).
    let mut buf = good;
    set_word(&mut buf, 16 + 4 + 4 + 4, 0);
    assert_eq!(
        call_err(&buf[..len], &Limits::DEFAULT),
        DecodeError::ZeroLengthSegment { offset: 24 }
    );
    // An empty Write chunk offers nothing.
    let empty: [Segment; 0] = [];
    let spec = CallSpec {
        write_list: &[&empty],
        ..base
    };
    let (buf, len) = encode_with_body(&spec, BODY);
    assert_eq!(
        call_err(&buf[..len], &Limits::DEFAULT),
        DecodeError::EmptyChunk {
            offset: read_list_end + 8
        }
    );
    // RDMA_NOMSG without a Position Zero chunk, RDMA_MSG with one.
    let spec = CallSpec {
        proc: MsgProc::NoMsg,
        ..base
    };
    let (buf, len) = encode_with_body(&spec, &[]);
    assert_eq!(
        call_err(&buf[..len], &Limits::DEFAULT),
        DecodeError::MissingMessageChunk
    );
    let reads = [rseg(0, seg(1, 10, 0))];
    let spec = CallSpec {
        read_list: &reads,
        ..base
    };
    let (buf, len) = encode_with_body(&spec, BODY);
    assert_eq!(
        call_err(&buf[..len], &Limits::DEFAULT),
        DecodeError::UnexpectedPositionZero
    );
}

#[test]
fn huge_segment_count_is_refused_before_reading() {
    let mut buf = [0u8; 64];
    for (i, w) in [1, 1, 1, 0, 0, 1, u32::MAX].iter().enumerate() {
        set_word(&mut buf, i * 4, *w);
    }
    assert_eq!(
        call_err(&buf[..28], &Limits::DEFAULT),
        DecodeError::TooManySegments {
            count: u32::MAX,
            limit: DEFAULT_MAX_PAGES
        }
    );
    set_word(&mut buf, 24, 2);
    assert_eq!(
        call_err(&buf[..40], &Limits::DEFAULT),
        DecodeError::Truncated { offset: 28 }
    );
}

#[test]
fn encoders_report_needed_size() {
    let spec = full_call();
    let needed = spec.encoded_len();
    let mut buf = [0u8; 512];
    for available in [0, 1, 27, needed - 1] {
        assert_eq!(
            encode_call(&mut buf[..available], &spec),
            Err(EncodeError::BufferTooSmall { needed, available })
        );
    }
    assert_eq!(
        encode_error(&mut buf[..27], 1, 1, RdmaError::VERS),
        Err(EncodeError::BufferTooSmall {
            needed: 28,
            available: 27
        })
    );
}

#[test]
fn default_limits_follow_the_kernel() {
    assert_eq!(DEFAULT_MAX_PAGES, 259);
    assert_eq!(Limits::default().max_chunk_bytes, 259 * 4096);
    assert_eq!(Limits::default().max_write_chunks, 8);
}
