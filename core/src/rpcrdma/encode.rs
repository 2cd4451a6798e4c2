//! Transport header encoders writing into a caller-provided buffer.

use crate::oncrpc::xdr::{Writer, WORD};

use super::view::SEGMENT_SIZE;
use super::{
    EncodeError, Proc, RdmaError, ReadSegment, Segment, ERR_CHUNK, ERR_VERS, FIXED_HEADER_SIZE,
    HEADER_MIN_SIZE, RPCRDMA_VERSION,
};

/// Message types that carry chunk lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgProc {
    /// `RDMA_MSG`: the RPC message follows the header inline.
    Msg,
    /// `RDMA_NOMSG`: the RPC message travels in a chunk.
    NoMsg,
}

impl From<MsgProc> for Proc {
    fn from(p: MsgProc) -> Self {
        match p {
            MsgProc::Msg => Self::Msg,
            MsgProc::NoMsg => Self::NoMsg,
        }
    }
}

/// A reply header to encode (server side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplySpec<'s> {
    /// xid of the call being answered.
    pub xid: u32,
    /// Credits granted.
    pub credits: u32,
    /// `Msg` for an inline reply, `NoMsg` when it went into the Reply chunk.
    pub proc: MsgProc,
    /// The call's Write chunks, each segment's length set to the bytes
    /// actually written (zero for unused).
    pub write_list: &'s [&'s [Segment]],
    /// The call's Reply chunk with the lengths written, if the reply used it.
    pub reply_chunk: Option<&'s [Segment]>,
}

impl ReplySpec<'_> {
    /// Exact number of bytes [`encode_reply`] writes.
    pub fn encoded_len(&self) -> usize {
        msg_len(&[], self.write_list, self.reply_chunk)
    }
}

/// A call header to encode (client side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSpec<'s> {
    /// Transaction id (the RPC xid).
    pub xid: u32,
    /// Credits requested.
    pub credits: u32,
    /// `Msg` for an inline call, `NoMsg` with a Position Zero Read chunk.
    pub proc: MsgProc,
    /// Read segments, chunks in position order.
    pub read_list: &'s [ReadSegment],
    /// Write chunks offered for results.
    pub write_list: &'s [&'s [Segment]],
    /// Reply chunk offered for a long reply.
    pub reply_chunk: Option<&'s [Segment]>,
}

impl CallSpec<'_> {
    /// Exact number of bytes [`encode_call`] writes.
    pub fn encoded_len(&self) -> usize {
        msg_len(self.read_list, self.write_list, self.reply_chunk)
    }
}

impl RdmaError {
    /// Exact number of bytes [`encode_error`] writes for this error.
    pub const fn encoded_len(&self) -> usize {
        match self {
            Self::Vers { .. } => FIXED_HEADER_SIZE + 3 * WORD,
            Self::Chunk => FIXED_HEADER_SIZE + WORD,
        }
    }
}

/// Encodes an `RDMA_MSG`/`RDMA_NOMSG` reply header into `buf`; returns
/// its length (for `RDMA_MSG`, where the RPC reply starts).
#[inline]
pub fn encode_reply(buf: &mut [u8], spec: &ReplySpec<'_>) -> Result<usize, EncodeError> {
    if spec.write_list.is_empty() && spec.reply_chunk.is_none() {
        return no_chunks(buf, spec.xid, spec.credits, spec.proc);
    }
    let mut w = Writer::new(buf, spec.encoded_len())?;
    fixed(&mut w, spec.xid, spec.credits, spec.proc.into());
    lists(&mut w, &[], spec.write_list, spec.reply_chunk);
    Ok(w.written())
}

/// Encodes a call header into `buf`; returns its length.
#[inline]
pub fn encode_call(buf: &mut [u8], spec: &CallSpec<'_>) -> Result<usize, EncodeError> {
    if spec.read_list.is_empty() && spec.write_list.is_empty() && spec.reply_chunk.is_none() {
        return no_chunks(buf, spec.xid, spec.credits, spec.proc);
    }
    encode_call_general(buf, spec)
}

/// [`encode_call`] without its chunkless shortcut (the tests compare the
/// two).
pub(super) fn encode_call_general(
    buf: &mut [u8],
    spec: &CallSpec<'_>,
) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf, spec.encoded_len())?;
    fixed(&mut w, spec.xid, spec.credits, spec.proc.into());
    lists(&mut w, spec.read_list, spec.write_list, spec.reply_chunk);
    Ok(w.written())
}

/// Encodes an `RDMA_ERROR` message answering `xid`; returns its length.
pub fn encode_error(
    buf: &mut [u8],
    xid: u32,
    credits: u32,
    error: RdmaError,
) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf, error.encoded_len())?;
    fixed(&mut w, xid, credits, Proc::Error);
    match error {
        RdmaError::Vers { low, high } => {
            w.u32(ERR_VERS);
            w.u32(low);
            w.u32(high);
        }
        RdmaError::Chunk => w.u32(ERR_CHUNK),
    }
    Ok(w.written())
}

/// The header without chunks (the inline call and reply): the fixed
/// 28 bytes ([`HEADER_MIN_SIZE`]) in one store, as [`lists`] would write
/// them with every list empty.
#[inline]
fn no_chunks(buf: &mut [u8], xid: u32, credits: u32, proc: MsgProc) -> Result<usize, EncodeError> {
    let available = buf.len();
    let Some(dst) = buf.get_mut(..HEADER_MIN_SIZE) else {
        return Err(EncodeError::BufferTooSmall {
            needed: HEADER_MIN_SIZE,
            available,
        });
    };
    let mut head = [0u8; HEADER_MIN_SIZE];
    head[0..4].copy_from_slice(&xid.to_be_bytes());
    head[4..8].copy_from_slice(&RPCRDMA_VERSION.to_be_bytes());
    head[8..12].copy_from_slice(&credits.to_be_bytes());
    head[12..16].copy_from_slice(&(Proc::from(proc) as u32).to_be_bytes());
    dst.copy_from_slice(&head);
    Ok(HEADER_MIN_SIZE)
}

fn chunk_len(segments: &[Segment]) -> usize {
    // segment count, segments
    WORD.saturating_add(segments.len().saturating_mul(SEGMENT_SIZE))
}

fn msg_len(read: &[ReadSegment], write: &[&[Segment]], reply: Option<&[Segment]>) -> usize {
    // Each Read entry: discriminator, position, segment.
    let read_len = read.len().saturating_mul(2 * WORD + SEGMENT_SIZE);
    // Each Write chunk: discriminator, chunk.
    let write_len = write
        .iter()
        .fold(0usize, |n, c| n.saturating_add(WORD + chunk_len(c)));
    // Three list terminators / absent-Reply-chunk words are always there.
    let reply_len = reply.map_or(0, chunk_len);
    [FIXED_HEADER_SIZE, 3 * WORD, read_len, write_len, reply_len]
        .into_iter()
        .fold(0, usize::saturating_add)
}

fn fixed(w: &mut Writer<'_>, xid: u32, credits: u32, proc: Proc) {
    w.u32(xid);
    w.u32(RPCRDMA_VERSION);
    w.u32(credits);
    w.u32(proc as u32);
}

fn segment(w: &mut Writer<'_>, s: &Segment) {
    w.u32(s.handle);
    w.u32(s.length);
    w.u64(s.offset);
}

fn chunk(w: &mut Writer<'_>, segments: &[Segment]) {
    // A slice of 2^32 segments would need 64 GiB of header buffer; the
    // size check in Writer::new has already refused it.
    w.u32(u32::try_from(segments.len()).unwrap_or(u32::MAX));
    for s in segments {
        segment(w, s);
    }
}

fn lists(
    w: &mut Writer<'_>,
    read: &[ReadSegment],
    write: &[&[Segment]],
    reply: Option<&[Segment]>,
) {
    for r in read {
        w.u32(1);
        w.u32(r.position);
        segment(w, &r.segment);
    }
    w.u32(0);
    for c in write {
        w.u32(1);
        chunk(w, c);
    }
    w.u32(0);
    match reply {
        Some(c) => {
            w.u32(1);
            chunk(w, c);
        }
        None => w.u32(0),
    }
}
