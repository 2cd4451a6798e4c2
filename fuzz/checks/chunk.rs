//! Chunk validation against an independent model: a call header is built
//! with `encode_call` from random segments and random limits, decoded with
//! `decode_header`, and the verdict (accepted, or the exact error) must be
//! what a simple walk over RFC 8166's rules and the documented [`Limits`]
//! predicts. The same lists are also sent as a reply and checked against
//! the reply rules.
//!
//! The structured input comes either from the fuzz target's `arbitrary`
//! derive, or from [`ChunkCase::from_bytes`], a small fixed byte format
//! that needs no other crate, so `core/tests/fuzz_corpus.rs` can replay the
//! committed corpus (the fuzz target checks both readings of every input).

use rdmaxprt_core::rpcrdma::{
    decode_header, decode_reply_header, encode_call, encode_reply, CallSpec, DecodeError, Limits,
    MsgProc, ReadSegment, ReplySpec, Segment,
};

use super::rpcrdma::{check_accepted, check_call_bytes, check_reply_bytes, Role};

/// Most Read segments, Write chunks and segments per chunk a case holds
/// (keeps headers small; the limits are drawn below these).
pub const MAX_READS: usize = 12;
/// See [`MAX_READS`].
pub const MAX_WRITES: usize = 6;
/// See [`MAX_READS`].
pub const MAX_SEGS: usize = 6;

/// One structured test case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkCase {
    /// Transaction id.
    pub xid: u32,
    /// Credits.
    pub credits: u32,
    /// `RDMA_MSG` or `RDMA_NOMSG`.
    pub proc: MsgProc,
    /// Read list, in wire order.
    pub reads: Vec<ReadSegment>,
    /// Write chunks.
    pub writes: Vec<Vec<Segment>>,
    /// Reply chunk.
    pub reply: Option<Vec<Segment>>,
    /// Bytes of inline RPC message after the header.
    pub body_len: usize,
    /// Limits to decode with.
    pub limits: Limits,
}

/// Chunk byte limits the byte format picks from.
pub const CHUNK_BYTES: [u64; 8] = [
    0,
    1,
    4096,
    8192,
    65536,
    Limits::DEFAULT.max_chunk_bytes,
    u32::MAX as u64,
    u64::MAX,
];

/// Reads the byte format; a missing byte reads as zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) << 32 | u64::from(self.u32())
    }
    /// A small limit: 0xff is the default, anything else `b % 8`.
    fn limit(&mut self, default: u32) -> u32 {
        match self.u8() {
            0xff => default,
            b => u32::from(b % 8),
        }
    }
    fn segment(&mut self) -> Segment {
        let kind = self.u8();
        let handle = self.u32();
        let raw_len = self.u32();
        let raw_off = self.u64();
        let length = match kind & 3 {
            0 => 0,
            1 => raw_len % 4097,
            2 => 4096,
            _ => raw_len,
        };
        let offset = match (kind >> 2) & 3 {
            0 => raw_off,
            1 => u64::MAX - (raw_off & 0xffff),
            2 => raw_off & 0xffff_ffff,
            _ => u64::MAX - u64::from(length),
        };
        Segment {
            handle,
            length,
            offset,
        }
    }
    fn segments(&mut self) -> Vec<Segment> {
        let n = usize::from(self.u8()) % (MAX_SEGS + 1);
        (0..n).map(|_| self.segment()).collect()
    }
}

impl ChunkCase {
    /// Builds a case from bytes (all words big-endian; missing bytes are 0):
    ///
    /// ```text
    /// xid u32, credits u32,
    /// flags u8            bit 0: RDMA_NOMSG, bit 1: Reply chunk present
    /// max_read_segments u8, max_write_chunks u8, max_segments_per_chunk u8
    ///                     0xff: the default, else value % 8
    /// chunk_bytes u8      CHUNK_BYTES[value % 8]
    /// body_len u8         value % 8
    /// n_reads u8 (% 13), then per entry: pos_kind u8, position u32, segment
    ///     pos_kind % 4: 0 -> 0, 1 -> (position & 0xff) << 2,
    ///                   2 -> position & 0xfff, 3 -> position
    /// n_writes u8 (% 7), then per chunk: n u8 (% 7), n segments
    /// [flags bit 1] n u8 (% 7), n segments
    /// segment: kind u8, handle u32, length u32, offset u64
    ///     length by kind & 3: 0 -> 0, 1 -> length % 4097, 2 -> 4096,
    ///                         3 -> length
    ///     offset by (kind >> 2) & 3: 0 -> offset,
    ///         1 -> u64::MAX - (offset & 0xffff), 2 -> offset & 0xffffffff,
    ///         3 -> u64::MAX - length
    /// ```
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut b = Bytes(data);
        let xid = b.u32();
        let credits = b.u32();
        let flags = b.u8();
        let d = Limits::DEFAULT;
        let limits = Limits {
            max_read_segments: b.limit(d.max_read_segments),
            max_write_chunks: b.limit(d.max_write_chunks),
            max_segments_per_chunk: b.limit(d.max_segments_per_chunk),
            max_chunk_bytes: CHUNK_BYTES[usize::from(b.u8() % 8)],
        };
        let body_len = usize::from(b.u8() % 8);
        let n_reads = usize::from(b.u8()) % (MAX_READS + 1);
        let reads = (0..n_reads)
            .map(|_| {
                let kind = b.u8();
                let raw = b.u32();
                let position = match kind % 4 {
                    0 => 0,
                    1 => (raw & 0xff) << 2,
                    2 => raw & 0xfff,
                    _ => raw,
                };
                ReadSegment {
                    position,
                    segment: b.segment(),
                }
            })
            .collect();
        let n_writes = usize::from(b.u8()) % (MAX_WRITES + 1);
        let writes = (0..n_writes).map(|_| b.segments()).collect();
        let reply = (flags & 2 != 0).then(|| b.segments());
        Self {
            xid,
            credits,
            proc: if flags & 1 != 0 {
                MsgProc::NoMsg
            } else {
                MsgProc::Msg
            },
            reads,
            writes,
            reply,
            body_len,
            limits,
        }
    }
}

/// Offset of the first byte after the fixed header.
const FIXED: usize = 16;

/// The model's rules for one segment at wire offset `at`.
fn model_segment(s: &Segment, at: usize, role: Role) -> Result<(), DecodeError> {
    if u128::from(s.offset) + u128::from(s.length) > u128::from(u64::MAX) {
        return Err(DecodeError::SegmentOverflow { offset: at });
    }
    if role == Role::Call && s.length == 0 {
        return Err(DecodeError::ZeroLengthSegment { offset: at });
    }
    Ok(())
}

/// The model's rules for a counted chunk whose count word is at `at`;
/// returns the offset after it.
fn model_chunk(c: &[Segment], at: usize, l: &Limits, role: Role) -> Result<usize, DecodeError> {
    let count = c.len() as u32;
    if count > l.max_segments_per_chunk {
        return Err(DecodeError::TooManySegments {
            count,
            limit: l.max_segments_per_chunk,
        });
    }
    if role == Role::Call && c.is_empty() {
        return Err(DecodeError::EmptyChunk { offset: at });
    }
    let mut off = at + 4;
    let mut total = 0u128;
    for s in c {
        model_segment(s, off, role)?;
        total += u128::from(s.length);
        off += 16;
    }
    if total > u128::from(l.max_chunk_bytes) {
        return Err(DecodeError::ChunkTooLong {
            limit: l.max_chunk_bytes,
        });
    }
    Ok(off)
}

/// What the decoder must answer for `case` encoded as a `role` message:
/// RFC 8166's rules and the documented limits, walked in wire order (the
/// first violation on the wire is the error reported).
pub fn model(case: &ChunkCase, role: Role) -> Result<(), DecodeError> {
    let l = &case.limits;
    let mut off = FIXED;
    for (i, r) in case.reads.iter().enumerate() {
        if role == Role::Reply {
            return Err(DecodeError::ReadListInReply);
        }
        if i as u64 >= u64::from(l.max_read_segments) {
            return Err(DecodeError::TooManyReadSegments {
                limit: l.max_read_segments,
            });
        }
        if r.position % 4 != 0 {
            return Err(DecodeError::MisalignedPosition {
                position: r.position,
            });
        }
        model_segment(&r.segment, off + 8, role)?;
        off += 24;
    }
    // A Read chunk is all the segments sharing a position.
    for r in &case.reads {
        let total: u128 = case
            .reads
            .iter()
            .filter(|o| o.position == r.position)
            .map(|o| u128::from(o.segment.length))
            .sum();
        if total > u128::from(l.max_chunk_bytes) {
            return Err(DecodeError::ChunkTooLong {
                limit: l.max_chunk_bytes,
            });
        }
    }
    off += 4;
    for (i, c) in case.writes.iter().enumerate() {
        if i as u64 >= u64::from(l.max_write_chunks) {
            return Err(DecodeError::TooManyWriteChunks {
                limit: l.max_write_chunks,
            });
        }
        off = model_chunk(c, off + 4, l, role)?;
    }
    off += 4;
    if let Some(c) = &case.reply {
        model_chunk(c, off + 4, l, role)?;
    }
    let position_zero = case.reads.iter().any(|r| r.position == 0);
    match (case.proc, role) {
        (MsgProc::Msg, Role::Call) if position_zero => Err(DecodeError::UnexpectedPositionZero),
        (MsgProc::Msg, _) if case.body_len == 0 => Err(DecodeError::MissingBody),
        (MsgProc::NoMsg, Role::Call) if !position_zero => Err(DecodeError::MissingMessageChunk),
        (MsgProc::NoMsg, Role::Reply) if case.reply.is_none() => {
            Err(DecodeError::MissingMessageChunk)
        }
        _ => Ok(()),
    }
}

/// Encodes `case` as a call (and its lists as a reply), decodes it, and
/// compares with the model.
pub fn check_case(case: &ChunkCase) {
    let writes: Vec<&[Segment]> = case.writes.iter().map(Vec::as_slice).collect();
    let spec = CallSpec {
        xid: case.xid,
        credits: case.credits,
        proc: case.proc,
        read_list: &case.reads,
        write_list: &writes,
        reply_chunk: case.reply.as_deref(),
    };
    let len = spec.encoded_len();
    let mut buf = vec![0u8; len];
    assert_eq!(encode_call(&mut buf, &spec), Ok(len));
    let mut short = vec![0u8; len - 1];
    assert!(encode_call(&mut short, &spec).is_err());
    buf.resize(len + case.body_len, 0x5a);

    let got = decode_header(&buf, &case.limits);
    let want = model(case, Role::Call);
    assert_eq!(
        got.map(|_| ()),
        want,
        "call verdict differs from the model: {case:?}"
    );
    if let Ok(h) = got {
        assert_eq!(h.header_len(), len);
        let lists = check_accepted(&buf, &h, &case.limits, Role::Call);
        assert_eq!(lists.reads, case.reads);
        assert_eq!(lists.writes, case.writes);
        assert_eq!(lists.reply, case.reply);
    }
    check_call_bytes(&buf);

    // The same Write list and Reply chunk in a reply.
    let rs = ReplySpec {
        xid: case.xid,
        credits: case.credits,
        proc: case.proc,
        write_list: &writes,
        reply_chunk: case.reply.as_deref(),
    };
    let rlen = rs.encoded_len();
    let mut rbuf = vec![0u8; rlen];
    assert_eq!(encode_reply(&mut rbuf, &rs), Ok(rlen));
    rbuf.resize(rlen + case.body_len, 0xa5);
    let reply_case = ChunkCase {
        reads: Vec::new(),
        ..case.clone()
    };
    let got = decode_reply_header(&rbuf, &case.limits);
    let want = model(&reply_case, Role::Reply);
    assert_eq!(
        got.map(|_| ()),
        want,
        "reply verdict differs from the model: {case:?}"
    );
    if let Ok(h) = got {
        let lists = check_accepted(&rbuf, &h, &case.limits, Role::Reply);
        assert_eq!(lists.writes, case.writes);
        assert_eq!(lists.reply, case.reply);
    }
    check_reply_bytes(&rbuf);
}

/// The byte-format reading of an input (what the corpus test replays).
pub fn check_bytes(data: &[u8]) {
    check_case(&ChunkCase::from_bytes(data));
}
