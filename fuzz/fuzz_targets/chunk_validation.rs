//! Structured call headers built with `encode_call` from random segments
//! and limits; `decode_header`'s verdict must match the model in
//! `checks/chunk.rs`.
//!
//! Every input is read twice: through the `arbitrary` derive below, and
//! through `ChunkCase::from_bytes`, the dependency-free format that
//! `core/tests/fuzz_corpus.rs` replays.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rdmaxprt_core::rpcrdma::{Limits, MsgProc, ReadSegment, Segment};
use rdmaxprt_fuzz::checks::chunk::{
    check_bytes, check_case, ChunkCase, MAX_READS, MAX_SEGS, MAX_WRITES,
};

#[derive(Arbitrary, Debug)]
enum Small {
    Default,
    N(u8),
}

impl Small {
    fn get(&self, default: u32) -> u32 {
        match self {
            Self::Default => default,
            Self::N(n) => u32::from(n % 8),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Bytes {
    Zero,
    Page,
    Pages(u8),
    Default,
    Max,
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Len {
    Zero,
    Small(u16),
    Page,
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum Off {
    Raw(u64),
    NearMax(u16),
    /// offset + length == u64::MAX exactly.
    Exact,
    /// offset + length == u64::MAX + 1.
    OneOver,
}

#[derive(Arbitrary, Debug)]
struct Seg {
    handle: u32,
    len: Len,
    off: Off,
}

impl Seg {
    fn get(&self) -> Segment {
        let length = match self.len {
            Len::Zero => 0,
            Len::Small(n) => u32::from(n),
            Len::Page => 4096,
            Len::Raw(n) => n,
        };
        let offset = match self.off {
            Off::Raw(o) => o,
            Off::NearMax(d) => u64::MAX - u64::from(d),
            Off::Exact => u64::MAX - u64::from(length),
            Off::OneOver => (u64::MAX - u64::from(length)).wrapping_add(1),
        };
        Segment {
            handle: self.handle,
            length,
            offset,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Pos {
    Zero,
    Aligned(u8),
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
struct Read {
    pos: Pos,
    seg: Seg,
}

#[derive(Arbitrary, Debug)]
struct Input {
    xid: u32,
    credits: u32,
    nomsg: bool,
    max_read: Small,
    max_write: Small,
    max_segs: Small,
    max_bytes: Bytes,
    body_len: u8,
    reads: Vec<Read>,
    writes: Vec<Vec<Seg>>,
    reply: Option<Vec<Seg>>,
}

fn segs(v: &[Seg]) -> Vec<Segment> {
    v.iter().take(MAX_SEGS).map(Seg::get).collect()
}

impl From<&Input> for ChunkCase {
    fn from(i: &Input) -> Self {
        let d = Limits::DEFAULT;
        Self {
            xid: i.xid,
            credits: i.credits,
            proc: if i.nomsg {
                MsgProc::NoMsg
            } else {
                MsgProc::Msg
            },
            reads: i
                .reads
                .iter()
                .take(MAX_READS)
                .map(|r| ReadSegment {
                    position: match r.pos {
                        Pos::Zero => 0,
                        Pos::Aligned(p) => u32::from(p) * 4,
                        Pos::Raw(p) => p,
                    },
                    segment: r.seg.get(),
                })
                .collect(),
            writes: i.writes.iter().take(MAX_WRITES).map(|c| segs(c)).collect(),
            reply: i.reply.as_deref().map(segs),
            body_len: usize::from(i.body_len % 8),
            limits: Limits {
                max_read_segments: i.max_read.get(d.max_read_segments),
                max_write_chunks: i.max_write.get(d.max_write_chunks),
                max_segments_per_chunk: i.max_segs.get(d.max_segments_per_chunk),
                max_chunk_bytes: match i.max_bytes {
                    Bytes::Zero => 0,
                    Bytes::Page => 4096,
                    Bytes::Pages(n) => u64::from(n) * 4096,
                    Bytes::Default => d.max_chunk_bytes,
                    Bytes::Max => u64::MAX,
                    Bytes::Raw(n) => n,
                },
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_bytes(data);
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check_case(&ChunkCase::from(&input));
    }
});
