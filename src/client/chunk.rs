//! Chunks the client offers: registered regions described as RPC-over-RDMA
//! segments, reading back what the server wrote into them, and the pool
//! that keeps those regions registered for the life of the connection.

use super::backend::{RemoteMemory, RemoteRegion};
use super::error::ClientError;
use super::lend::Returns;
use rdmaxprt_core::rpcrdma::{Chunk, ReadSegment, Segment};
use smallvec::SmallVec;
use std::sync::Arc;

/// A registered region offered to the server as one chunk.
pub(super) struct Offered<R> {
    pub(super) mr: R,
    /// One segment for a chunk up to `max_segment_len` (1 MiB by
    /// default): no allocation per call.
    pub(super) segs: SmallVec<[Segment; 1]>,
}

/// How many segments of at most `max_seg` bytes cover `len` bytes.
pub(super) fn segment_count(len: usize, max_seg: u32) -> usize {
    len.div_ceil(max_seg.max(1) as usize)
}

impl<R: RemoteRegion> Offered<R> {
    /// Describes the first `len` bytes of `mr` as segments of at most
    /// `max_seg` bytes, one after another.
    pub(super) fn new(mr: R, len: usize, max_seg: u32) -> Self {
        Self::at(mr, 0, len, max_seg)
    }

    /// Describes `len` bytes of `mr` from byte `start` as segments of at
    /// most `max_seg` bytes, one after another (`start + len` must not
    /// pass the region's end).
    pub(super) fn at(mr: R, start: usize, len: usize, max_seg: u32) -> Self {
        debug_assert!(start + len <= mr.len());
        let max_seg = max_seg.max(1) as usize;
        let mut segs = SmallVec::with_capacity(segment_count(len, max_seg as u32));
        let mut off = 0usize;
        while off < len {
            let n = (len - off).min(max_seg);
            segs.push(Segment {
                handle: mr.rkey(),
                // `n <= max_seg`, a u32.
                length: n as u32,
                offset: mr.addr() + (start + off) as u64,
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

    /// Checks what the server reported writing into this chunk: each
    /// returned segment must be the offered one (same handle and offset)
    /// with a length no larger than offered. Yields each segment's region
    /// offset and written length.
    fn written<'a>(
        &'a self,
        returned: Chunk<'a>,
    ) -> Result<impl Iterator<Item = (usize, usize)> + 'a, ClientError> {
        if returned.len() != self.segs.len() {
            return Err(ClientError::ProtocolViolation(
                "returned chunk has a different number of segments than offered",
            ));
        }
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
        }
        let base = self.mr.addr();
        // Offered segments lie inside the region by construction.
        Ok(self
            .segs
            .iter()
            .zip(returned.iter())
            .map(move |(o, got)| ((o.offset - base) as usize, got.length as usize)))
    }

    /// Reads back what the server reported writing into this chunk
    /// ([`written`](Self::written)'s checks): the concatenation of each
    /// segment's first `length` bytes, put in `out` (emptied first; a
    /// recycled buffer keeps its memory).
    pub(super) fn gather(
        &self,
        returned: Chunk<'_>,
        mut out: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let parts = self.written(returned)?;
        out.clear();
        out.reserve(usize::try_from(returned.total_len()).unwrap_or(0));
        for (at, len) in parts {
            if !self.mr.read_append(at, len, &mut out) {
                return Err(ClientError::ProtocolViolation(
                    "returned segment lies outside its region",
                ));
            }
        }
        Ok(out)
    }

    /// How many bytes from the region's start the server reported writing
    /// into this chunk, read in place ([`written`](Self::written)'s checks):
    /// they must be contiguous, every segment but the last written full
    /// (an XDR stream fills its segments in order).
    pub(super) fn written_len(&self, returned: Chunk<'_>) -> Result<usize, ClientError> {
        let mut end = 0usize;
        for (at, len) in self.written(returned)? {
            if len == 0 {
                continue;
            }
            if at != end {
                return Err(ClientError::ProtocolViolation(
                    "returned chunk has a gap: a short segment before a written one",
                ));
            }
            end = at + len;
        }
        Ok(end)
    }
}

/// Smallest pooled region: 4 KiB (a page, like the kernel's chunk pages)
/// plus [`HEADROOM`].
const MIN_CLASS: u32 = 12;

/// Bytes every pooled region has beyond its power of two: room for the
/// RPC call header in front of arguments lent in it (the longest, an
/// AUTH_SYS call header with a 255-byte machine name and 16 groups, is 380
/// bytes), so a lent region is sent whole as a Position Zero Read chunk
/// without moving to the next class (a 64 KiB payload plus its header is
/// a 64.5 KiB region, not 128 KiB).
pub(super) const HEADROOM: usize = 512;

/// The size class of a `len`-byte request: regions of `(1 << class) +
/// HEADROOM` bytes.
fn class_of(len: usize) -> u32 {
    len.saturating_sub(HEADROOM)
        .max(1 << MIN_CLASS)
        .checked_next_power_of_two()
        .map_or(usize::BITS, |n| n.trailing_zeros())
}

/// Registered regions of this connection not lent to a call, by size
/// class (powers of two from 4 KiB, plus [`HEADROOM`]). A call borrows one per chunk it
/// offers (Read chunk source, Write chunk, Reply chunk) and gives it back
/// once its reply is in (the server is done with it then) or the QP was
/// drained; a region is registered once, when no free one of its class is
/// left, and never zero-filled again: the client reads back only the bytes
/// the server reports writing, and offers only the bytes it wrote.
///
/// Free regions are never more than the most the connection had lent at
/// once. Unlike the kernel's FRWR mode, an rkey stays valid between calls
/// (like its "all physical" registration mode): a server that wrote
/// after its reply would land in a later call's buffer.
///
/// Regions lent to the caller ([`LentBuf`](super::LentBuf),
/// [`LentBytes`](super::LentBytes)) come back through `returns` when their
/// guard drops, taken in before each [`take`](Self::take).
pub(super) struct ChunkPool<R> {
    free: Vec<Vec<R>>,
    registered: u64,
    returns: Arc<Returns<R>>,
}

impl<R: RemoteRegion> ChunkPool<R> {
    pub(super) fn new() -> Self {
        Self {
            free: Vec::new(),
            registered: 0,
            returns: Arc::new(Returns::new()),
        }
    }

    /// Where this pool's lent regions come back.
    pub(super) fn returns(&self) -> &Arc<Returns<R>> {
        &self.returns
    }

    /// Teardown: regions lent out and given back later are dropped
    /// (deregistered) at once.
    pub(super) fn close(&mut self) {
        self.returns.close();
    }

    /// Regions registered so far (pool misses).
    pub(super) fn registered(&self) -> u64 {
        self.registered
    }

    /// A region of at least `len` bytes: a free one of its class, else a
    /// newly registered one.
    pub(super) fn take<D>(&mut self, dev: &D, len: usize) -> Result<R, ClientError>
    where
        D: RemoteMemory<Region = R>,
        D::Error: std::error::Error + Send + Sync + 'static,
    {
        let class = class_of(len);
        self.returns.take_all(|r| put_free(&mut self.free, r));
        if let Some(r) = self.free.get_mut(class as usize).and_then(Vec::pop) {
            return Ok(r);
        }
        let size = 1usize
            .checked_shl(class)
            .and_then(|n| n.checked_add(HEADROOM))
            .ok_or(ClientError::InvalidOptions("chunk too long"))?;
        let r = dev
            .register_remote(size)
            .map_err(|e| ClientError::backend("register", e))?;
        self.registered += 1;
        Ok(r)
    }

    /// Gives a region back (one [`take`](Self::take) returned).
    pub(super) fn put(&mut self, r: R) {
        put_free(&mut self.free, r);
    }

    /// Gives back an offered chunk's region.
    pub(super) fn put_offered(&mut self, o: Offered<R>) {
        self.put(o.mr);
    }
}

/// Files `r` under its size class in `free`.
fn put_free<R: RemoteRegion>(free: &mut Vec<Vec<R>>, r: R) {
    let class = class_of(r.len()) as usize;
    if free.len() <= class {
        free.resize_with(class + 1, Vec::new);
    }
    free[class].push(r);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_powers_of_two_plus_the_headroom() {
        assert_eq!(class_of(1), MIN_CLASS);
        assert_eq!(class_of(4096 + HEADROOM), MIN_CLASS);
        assert_eq!(class_of(4096 + HEADROOM + 1), MIN_CLASS + 1);
        assert_eq!(class_of(64 << 10), 16);
        assert_eq!(class_of((64 << 10) + 40), 16, "64 KiB lent with its header");
        assert_eq!(class_of((64 << 10) + HEADROOM), 16);
        assert_eq!(class_of((64 << 10) + HEADROOM + 1), 17);
        // A region's own length files it under the class it came from.
        for k in MIN_CLASS..24 {
            assert_eq!(class_of((1 << k) + HEADROOM), k);
        }
    }
}
