//! Chunks the client offers: registered regions described as RPC-over-RDMA
//! segments, and reading back what the server wrote into them.

use super::backend::RemoteRegion;
use super::error::ClientError;
use rdmaxprt_core::rpcrdma::{Chunk, ReadSegment, Segment};

/// A registered region offered to the server as one chunk.
pub(super) struct Offered<R> {
    pub(super) mr: R,
    pub(super) segs: Vec<Segment>,
}

/// How many segments of at most `max_seg` bytes cover `len` bytes.
pub(super) fn segment_count(len: usize, max_seg: u32) -> usize {
    len.div_ceil(max_seg.max(1) as usize)
}

impl<R: RemoteRegion> Offered<R> {
    /// Describes the first `len` bytes of `mr` as segments of at most
    /// `max_seg` bytes, one after another.
    pub(super) fn new(mr: R, len: usize, max_seg: u32) -> Self {
        let max_seg = max_seg.max(1) as usize;
        let mut segs = Vec::with_capacity(segment_count(len, max_seg as u32));
        let mut off = 0usize;
        while off < len {
            let n = (len - off).min(max_seg);
            segs.push(Segment {
                handle: mr.rkey(),
                // `n <= max_seg`, a u32.
                length: n as u32,
                offset: mr.addr() + off as u64,
            });
            off += n;
        }
        Self { mr, segs }
    }

    /// The segments as Read list entries at `position`.
    pub(super) fn read_list(&self, position: u32) -> impl Iterator<Item = ReadSegment> + '_ {
        self.segs
            .iter()
            .map(move |&segment| ReadSegment { position, segment })
    }

    /// Reads back what the server reported writing into this chunk: each
    /// returned segment must be the offered one (same handle and offset)
    /// with a length no larger than offered; the data is the concatenation
    /// of each segment's first `length` bytes.
    pub(super) fn gather(&self, returned: Chunk<'_>) -> Result<Vec<u8>, ClientError> {
        if returned.len() != self.segs.len() {
            return Err(ClientError::ProtocolViolation(
                "returned chunk has a different number of segments than offered",
            ));
        }
        let total: u64 = returned.total_len();
        let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for (offered, got) in self.segs.iter().zip(returned.iter()) {
            if got.handle != offered.handle || got.offset != offered.offset {
                return Err(ClientError::ProtocolViolation(
                    "returned segment names memory the call did not offer",
                ));
            }
            if got.length > offered.length {
                return Err(ClientError::ProtocolViolation(
                    "returned segment is longer than offered",
                ));
            }
            // Offered segments lie inside the region by construction.
            let at = (offered.offset - self.mr.addr()) as usize;
            let start = out.len();
            out.resize(start + got.length as usize, 0);
            if !self.mr.read_at(at, &mut out[start..]) {
                return Err(ClientError::ProtocolViolation(
                    "returned segment lies outside its region",
                ));
            }
        }
        Ok(out)
    }
}
