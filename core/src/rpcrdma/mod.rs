//! RPC-over-RDMA version 1 transport header (RFC 8166), zero-copy and
//! allocation-free.
//!
//! # Receive side
//! [`decode_header`] validates a received call's transport header in one
//! pass, the way the kernel's `svc_rdma_xdr_decode_req` does before any
//! chunk is used: version, procedure, every list discriminator, segment
//! counts against [`Limits`], per-chunk byte totals, `offset + length`
//! overflow, Read position alignment, and the consistency of the procedure
//! with its chunks. Only then does it return a [`Header`] whose lazy views
//! ([`ReadList`], [`WriteList`], [`Chunk`]) re-read the same bytes and
//! cannot fail. Each [`DecodeError`] says which answer it deserves
//! ([`DecodeError::reply_with`]): an `RDMA_ERROR` with `ERR_VERS` or
//! `ERR_CHUNK` (RFC 8166 section 4.5.3), or a silent drop.
//!
//! The client side uses [`decode_reply_header`], which applies the rules
//! for replies (no Read list; Write chunk segments carry the lengths
//! actually written, which may be zero) and also decodes `RDMA_ERROR`.
//!
//! # Send side
//! [`encode_reply`], [`encode_error`] and [`encode_call`] write straight
//! into a caller-provided buffer (the send context's persistent, DMA-mapped
//! header buffer) and return the number of bytes written; each spec type
//! has an `encoded_len` so callers can size buffers.
//!
//! # Not supported
//! `RDMA_MSGP` (deprecated by RFC 8166) is rejected with `ERR_CHUNK`, as
//! the kernel does.

#![deny(unsafe_code)]

pub mod connect_private;
mod decode;
mod encode;
mod error;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
mod view;

pub use crate::oncrpc::EncodeError;
pub use connect_private::{ConnectPrivate, ConnectPrivateError, Negotiated};
pub use decode::{decode_header, decode_reply_header};
pub use encode::{encode_call, encode_error, encode_reply, CallSpec, MsgProc, ReplySpec};
pub use error::{DecodeError, ReplyWith};
pub use view::{Chunk, ChunkSegments, Header, ReadList, ReadSegments, WriteChunks, WriteList};

/// The protocol version this module speaks.
pub const RPCRDMA_VERSION: u32 = 1;
/// Inline threshold both peers assume until negotiated (RFC 8166 3.3.3).
pub const DEFAULT_INLINE_THRESHOLD: usize = 1024;
/// Smallest `RDMA_MSG`/`RDMA_NOMSG` header: xid, vers, credits, proc and
/// three empty lists.
pub const HEADER_MIN_SIZE: usize = 28;
/// Size of the fixed part every header starts with (xid, vers, credits,
/// proc); shorter messages are dropped.
pub const FIXED_HEADER_SIZE: usize = 16;
/// `rdma_err` value: the version is not supported.
pub const ERR_VERS: u32 = 1;
/// `rdma_err` value: a chunk or header could not be parsed.
pub const ERR_CHUNK: u32 = 2;

/// Page size the default limits are derived from.
pub const PAGE_SIZE: u32 = 4096;
/// Largest RPC payload the default limits admit (the kernel's
/// `RPCSVC_MAXPAYLOAD`, 1 MiB).
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;
/// Pages one request may touch: payload pages, plus one for a payload that
/// is not page aligned, plus head and tail (the kernel's `RPCSVC_MAXPAGES`).
pub const DEFAULT_MAX_PAGES: u32 = DEFAULT_MAX_PAYLOAD / PAGE_SIZE + 3;

/// Reads the transaction id of a transport header, so a caller can still
/// send `RDMA_ERROR` for a header that failed to decode.
pub fn peek_xid(buf: &[u8]) -> Option<u32> {
    crate::oncrpc::xdr::first_word(buf)
}

/// The transport header's message type (`rdma_proc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proc {
    /// An RPC message follows the header inline.
    Msg = 0,
    /// The RPC message is in a Position Zero Read chunk (call) or the Reply
    /// chunk (reply).
    NoMsg = 1,
    /// Padded inline message; deprecated, never accepted.
    MsgP = 2,
    /// Deprecated completion notice; carries nothing.
    Done = 3,
    /// Transport error report ([`RdmaError`]).
    Error = 4,
}

impl Proc {
    /// The procedure for a wire value, if defined.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Msg,
            1 => Self::NoMsg,
            2 => Self::MsgP,
            3 => Self::Done,
            4 => Self::Error,
            _ => return None,
        })
    }
}

/// One RDMA segment: a registered memory region of the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Segment {
    /// Steering tag (R_key).
    pub handle: u32,
    /// Length in bytes. In a reply's Write list: the bytes actually written.
    pub length: u32,
    /// Remote address of the region.
    pub offset: u64,
}

/// One Read list entry: a segment plus its XDR position in the RPC message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReadSegment {
    /// Byte offset in the RPC message where this chunk's data belongs;
    /// zero means the whole RPC message is in the chunk.
    pub position: u32,
    /// The memory to read.
    pub segment: Segment,
}

/// Body of an `RDMA_ERROR` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdmaError {
    /// `ERR_VERS`: the sender supports versions `low..=high`.
    Vers {
        /// Lowest supported version.
        low: u32,
        /// Highest supported version.
        high: u32,
    },
    /// `ERR_CHUNK`: the header could not be parsed.
    Chunk,
}

impl RdmaError {
    /// The `ERR_VERS` this implementation sends (low = high = 1).
    pub const VERS: Self = Self::Vers {
        low: RPCRDMA_VERSION,
        high: RPCRDMA_VERSION,
    };
}

/// Bounds the decoder enforces before anything is iterated.
///
/// The defaults follow the kernel's sizing: one request moves at most
/// [`DEFAULT_MAX_PAYLOAD`] (1 MiB), which spans at most
/// [`DEFAULT_MAX_PAGES`] (259) 4 KiB pages, so no chunk needs more
/// segments than that (a client registers at least a page per segment) or
/// more bytes than those pages hold (1,060,864).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most entries in the Read list, over all Read chunks (default 259).
    pub max_read_segments: u32,
    /// Most chunks in the Write list (default 8: an NFSv4 COMPOUND with a
    /// few READs; the kernel handled one until 5.11).
    pub max_write_chunks: u32,
    /// Most segments in one Write chunk or the Reply chunk (default 259).
    pub max_segments_per_chunk: u32,
    /// Most bytes in one chunk, summed over its segments (for Read chunks,
    /// over the segments sharing a position). Default 259 pages, 1,060,864.
    pub max_chunk_bytes: u64,
}

impl Limits {
    /// The defaults described on [`Limits`].
    pub const DEFAULT: Self = Self {
        max_read_segments: DEFAULT_MAX_PAGES,
        max_write_chunks: 8,
        max_segments_per_chunk: DEFAULT_MAX_PAGES,
        max_chunk_bytes: DEFAULT_MAX_PAGES as u64 * PAGE_SIZE as u64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
