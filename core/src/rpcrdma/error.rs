//! Typed decode errors of the transport header and the answer each deserves.

use core::fmt;

use super::RdmaError;

#[cfg(feature = "std")]
extern crate std;

/// What a receiver should send back for a header it could not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyWith {
    /// `RDMA_ERROR` / `ERR_VERS` (low = high = 1).
    ErrVers,
    /// `RDMA_ERROR` / `ERR_CHUNK`.
    ErrChunk,
    /// Nothing: drop the message (it is too short to answer, or is itself
    /// an error report).
    Drop,
}

impl ReplyWith {
    /// The `RDMA_ERROR` body to encode, or `None` for [`ReplyWith::Drop`].
    pub const fn rdma_error(self) -> Option<RdmaError> {
        match self {
            Self::ErrVers => Some(RdmaError::VERS),
            Self::ErrChunk => Some(RdmaError::Chunk),
            Self::Drop => None,
        }
    }
}

/// A transport header failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the 16-byte fixed part; there is no trustworthy
    /// procedure to act on.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// `rdma_vers` is not 1.
    BadVersion {
        /// The version found.
        vers: u32,
    },
    /// `rdma_proc` is not defined by RFC 8166.
    UnknownProc {
        /// The procedure found.
        proc: u32,
    },
    /// A defined procedure this implementation does not accept (`RDMA_MSGP`).
    UnsupportedProc {
        /// The procedure found.
        proc: u32,
    },
    /// The header ends inside a list, chunk or segment.
    Truncated {
        /// Offset at which more bytes were needed.
        offset: usize,
    },
    /// A list discriminator (XDR optional-data bool) is neither 0 nor 1.
    BadDiscriminator {
        /// Offset of the discriminator.
        offset: usize,
        /// The value found.
        value: u32,
    },
    /// More Read list entries than [`Limits::max_read_segments`](super::Limits).
    TooManyReadSegments {
        /// The limit.
        limit: u32,
    },
    /// More Write chunks than [`Limits::max_write_chunks`](super::Limits).
    TooManyWriteChunks {
        /// The limit.
        limit: u32,
    },
    /// A Write or Reply chunk with more segments than allowed.
    TooManySegments {
        /// Segment count claimed.
        count: u32,
        /// The limit.
        limit: u32,
    },
    /// A chunk's segments add up to more bytes than allowed.
    ChunkTooLong {
        /// The limit.
        limit: u64,
    },
    /// A segment's `offset + length` does not fit in 64 bits.
    SegmentOverflow {
        /// Offset of the segment in the header.
        offset: usize,
    },
    /// A call offers a segment of zero bytes.
    ZeroLengthSegment {
        /// Offset of the segment in the header.
        offset: usize,
    },
    /// A call offers a Write or Reply chunk with no segments.
    EmptyChunk {
        /// Offset of the chunk's segment count.
        offset: usize,
    },
    /// A Read segment's position is not a multiple of 4 (not an XDR
    /// position).
    MisalignedPosition {
        /// The position found.
        position: u32,
    },
    /// A reply carries a Read list (RFC 8166 allows Read chunks only in
    /// calls).
    ReadListInReply,
    /// `RDMA_MSG` with no RPC message after the header.
    MissingBody,
    /// `RDMA_MSG` call with a Position Zero Read chunk, which belongs only
    /// to `RDMA_NOMSG`.
    UnexpectedPositionZero,
    /// `RDMA_NOMSG` without the chunk that carries the RPC message (a
    /// Position Zero Read chunk in a call, the Reply chunk in a reply).
    MissingMessageChunk,
    /// An `RDMA_ERROR` message that is truncated or has an unknown code.
    MalformedError,
}

impl DecodeError {
    /// The answer this error deserves, following the kernel: messages too
    /// short to trust and malformed error reports are dropped, a bad
    /// version gets `ERR_VERS`, everything else `ERR_CHUNK`.
    pub const fn reply_with(self) -> ReplyWith {
        match self {
            Self::TooShort { .. } | Self::MalformedError => ReplyWith::Drop,
            Self::BadVersion { .. } => ReplyWith::ErrVers,
            _ => ReplyWith::ErrChunk,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => write!(f, "transport header too short ({len} bytes)"),
            Self::BadVersion { vers } => write!(f, "RPC-over-RDMA version {vers}, expected 1"),
            Self::UnknownProc { proc } => write!(f, "unknown rdma_proc {proc}"),
            Self::UnsupportedProc { proc } => write!(f, "unsupported rdma_proc {proc}"),
            Self::Truncated { offset } => write!(f, "transport header truncated at byte {offset}"),
            Self::BadDiscriminator { offset, value } => {
                write!(f, "list discriminator {value} at byte {offset}")
            }
            Self::TooManyReadSegments { limit } => write!(f, "more than {limit} Read segments"),
            Self::TooManyWriteChunks { limit } => write!(f, "more than {limit} Write chunks"),
            Self::TooManySegments { count, limit } => {
                write!(f, "chunk of {count} segments, limit {limit}")
            }
            Self::ChunkTooLong { limit } => write!(f, "chunk longer than {limit} bytes"),
            Self::SegmentOverflow { offset } => {
                write!(f, "segment at byte {offset}: offset + length overflows")
            }
            Self::ZeroLengthSegment { offset } => write!(f, "zero-length segment at byte {offset}"),
            Self::EmptyChunk { offset } => write!(f, "chunk without segments at byte {offset}"),
            Self::MisalignedPosition { position } => {
                write!(f, "Read position {position} is not XDR aligned")
            }
            Self::ReadListInReply => f.write_str("Read list in a reply"),
            Self::MissingBody => f.write_str("RDMA_MSG without an RPC message"),
            Self::UnexpectedPositionZero => f.write_str("Position Zero Read chunk in RDMA_MSG"),
            Self::MissingMessageChunk => f.write_str("RDMA_NOMSG without a message chunk"),
            Self::MalformedError => f.write_str("malformed RDMA_ERROR"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}
