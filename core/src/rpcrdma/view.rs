//! Borrowed, already-validated views of a decoded transport header.
//!
//! Only the decoder constructs these, after it has checked every byte they
//! cover, so iterating them cannot fail. Their readers still use the
//! bounds-checked XDR reader: a bug would end an iteration early, never
//! index out of bounds.

use crate::oncrpc::xdr::Reader;

use super::{Proc, RdmaError, ReadSegment, Segment};

/// Bytes of one segment on the wire (handle, length, 64-bit offset).
pub(super) const SEGMENT_SIZE: usize = 16;

/// Reads one segment (handle, length, offset).
pub(super) fn read_segment(r: &mut Reader<'_>) -> Option<Segment> {
    Some(Segment {
        handle: r.u32()?,
        length: r.u32()?,
        offset: r.u64()?,
    })
}

/// A validated RPC-over-RDMA header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub(super) xid: u32,
    pub(super) vers: u32,
    pub(super) credits: u32,
    pub(super) proc: Proc,
    pub(super) read_list: ReadList<'a>,
    pub(super) write_list: WriteList<'a>,
    pub(super) reply_chunk: Option<Chunk<'a>>,
    pub(super) header_len: usize,
    pub(super) error: Option<RdmaError>,
}

impl<'a> Header<'a> {
    /// Transaction id (the RPC xid of the message carried).
    pub const fn xid(&self) -> u32 {
        self.xid
    }

    /// Protocol version: always 1, except in an `RDMA_ERROR` / `ERR_VERS`
    /// reply, which keeps the version it carried (a responder may echo the
    /// caller's).
    pub const fn vers(&self) -> u32 {
        self.vers
    }

    /// Credit value: requested (call) or granted (reply).
    pub const fn credits(&self) -> u32 {
        self.credits
    }

    /// Message type.
    pub const fn proc(&self) -> Proc {
        self.proc
    }

    /// The Read list (empty unless a call's `RDMA_MSG`/`RDMA_NOMSG`).
    pub const fn read_list(&self) -> ReadList<'a> {
        self.read_list
    }

    /// The Write list (empty for `RDMA_DONE` and `RDMA_ERROR`).
    pub const fn write_list(&self) -> WriteList<'a> {
        self.write_list
    }

    /// The Reply chunk, if one was provided.
    pub const fn reply_chunk(&self) -> Option<Chunk<'a>> {
        self.reply_chunk
    }

    /// Length of the transport header itself.
    pub const fn header_len(&self) -> usize {
        self.header_len
    }

    /// Where the inline RPC message starts, for `RDMA_MSG` only.
    pub fn body_offset(&self) -> Option<usize> {
        (self.proc == Proc::Msg).then_some(self.header_len)
    }

    /// The error reported by an `RDMA_ERROR` message.
    pub const fn rdma_error(&self) -> Option<RdmaError> {
        self.error
    }
}

/// The Read list: Read segments, grouped into chunks by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReadList<'a> {
    // From the first discriminator through the terminating zero.
    pub(super) bytes: &'a [u8],
    pub(super) count: u32,
}

impl<'a> ReadList<'a> {
    /// Number of Read segments (over all chunks).
    pub const fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the list is empty.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// All segments in wire order.
    pub fn iter(&self) -> ReadSegments<'a> {
        ReadSegments {
            r: Reader::new(self.bytes),
            position: None,
        }
    }

    /// The segments of the Read chunk at `position` (those sharing it), in
    /// wire order.
    pub fn chunk(&self, position: u32) -> ReadSegments<'a> {
        ReadSegments {
            r: Reader::new(self.bytes),
            position: Some(position),
        }
    }

    /// Bytes of the Read chunk at `position` (0 if there is none).
    pub fn chunk_len(&self, position: u32) -> u64 {
        self.chunk(position)
            .map(|s| u64::from(s.segment.length))
            .sum()
    }

    /// Whether there is a Position Zero Read chunk (the whole RPC call).
    pub fn has_position_zero(&self) -> bool {
        self.chunk(0).next().is_some()
    }
}

impl<'a> IntoIterator for ReadList<'a> {
    type Item = ReadSegment;
    type IntoIter = ReadSegments<'a>;
    fn into_iter(self) -> ReadSegments<'a> {
        self.iter()
    }
}

/// Iterator over Read segments, optionally only those at one position.
#[derive(Clone, Debug)]
pub struct ReadSegments<'a> {
    r: Reader<'a>,
    position: Option<u32>,
}

impl Iterator for ReadSegments<'_> {
    type Item = ReadSegment;
    fn next(&mut self) -> Option<ReadSegment> {
        loop {
            if self.r.u32()? == 0 {
                return None;
            }
            let position = self.r.u32()?;
            let segment = read_segment(&mut self.r)?;
            if self.position.unwrap_or(position) == position {
                return Some(ReadSegment { position, segment });
            }
        }
    }
}

/// The Write list: chunks the responder may write results into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WriteList<'a> {
    // From the first discriminator through the terminating zero.
    pub(super) bytes: &'a [u8],
    pub(super) count: u32,
}

impl<'a> WriteList<'a> {
    /// Number of Write chunks.
    pub const fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the list is empty.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The chunks in wire order.
    pub fn iter(&self) -> WriteChunks<'a> {
        WriteChunks {
            r: Reader::new(self.bytes),
            left: self.count,
        }
    }
}

impl<'a> IntoIterator for WriteList<'a> {
    type Item = Chunk<'a>;
    type IntoIter = WriteChunks<'a>;
    fn into_iter(self) -> WriteChunks<'a> {
        self.iter()
    }
}

/// Iterator over the chunks of a [`WriteList`].
#[derive(Clone, Debug)]
pub struct WriteChunks<'a> {
    r: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for WriteChunks<'a> {
    type Item = Chunk<'a>;
    fn next(&mut self) -> Option<Chunk<'a>> {
        if self.r.u32()? == 0 {
            return None;
        }
        let count = self.r.u32()?;
        let segments = self.r.bytes(count as usize * SEGMENT_SIZE)?;
        self.left = self.left.saturating_sub(1);
        Some(Chunk { segments, count })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for WriteChunks<'_> {}

/// A Write chunk or the Reply chunk: an array of segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Chunk<'a> {
    // Exactly count * SEGMENT_SIZE bytes.
    pub(super) segments: &'a [u8],
    pub(super) count: u32,
}

impl<'a> Chunk<'a> {
    /// Number of segments.
    pub const fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the chunk has no segments (only possible in a reply).
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The segments in wire order.
    pub fn iter(&self) -> ChunkSegments<'a> {
        ChunkSegments {
            r: Reader::new(self.segments),
        }
    }

    /// Sum of the segment lengths (validated against the limit on decode).
    pub fn total_len(&self) -> u64 {
        self.iter().map(|s| u64::from(s.length)).sum()
    }
}

impl<'a> IntoIterator for Chunk<'a> {
    type Item = Segment;
    type IntoIter = ChunkSegments<'a>;
    fn into_iter(self) -> ChunkSegments<'a> {
        self.iter()
    }
}

/// Iterator over the segments of a [`Chunk`].
#[derive(Clone, Debug)]
pub struct ChunkSegments<'a> {
    r: Reader<'a>,
}

impl Iterator for ChunkSegments<'_> {
    type Item = Segment;
    fn next(&mut self) -> Option<Segment> {
        read_segment(&mut self.r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.r.remaining() / SEGMENT_SIZE;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ChunkSegments<'_> {}
