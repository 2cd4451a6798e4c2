//! Reply buffers the caller handed back ([`RpcClient::recycle`]): the next
//! replies fill them instead of fresh allocations. A 64 KiB Write chunk
//! gathered into a fresh `Vec` per call costs page faults as well as the
//! allocation (the allocator gives freed memory of that size back to the
//! kernel and faults it in again), more than the copy itself.
//!
//! [`RpcClient::recycle`]: super::RpcClient::recycle

/// A bounded stack of emptied buffers.
#[derive(Debug, Default)]
pub(super) struct SpareBufs {
    bufs: Vec<Vec<u8>>,
    /// Most buffers kept.
    cap: usize,
    /// Buffers handed out again.
    reused: u64,
}

impl SpareBufs {
    /// Keeps at most `cap` buffers.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            bufs: Vec::with_capacity(cap),
            cap,
            reused: 0,
        }
    }

    /// An empty buffer: a kept one if any, else a new (unallocated) one.
    pub(super) fn take(&mut self) -> Vec<u8> {
        match self.bufs.pop() {
            Some(b) => {
                self.reused += 1;
                b
            }
            None => Vec::new(),
        }
    }

    /// Keeps `b` (emptied) if it has memory and there is room; else drops it.
    pub(super) fn give(&mut self, mut b: Vec<u8>) {
        if b.capacity() > 0 && self.bufs.len() < self.cap {
            b.clear();
            self.bufs.push(b);
        }
    }

    /// Buffers handed out again so far.
    pub(super) fn reused(&self) -> u64 {
        self.reused
    }
}

/// The spare buffers of one client: results and Write chunk bytes kept
/// apart (their sizes differ: a small results buffer handed a 64 KiB
/// Write chunk would have to grow).
#[derive(Debug, Default)]
pub(super) struct ReplySpares {
    /// For [`ReplyBytes::results`](super::ReplyBytes::results) (and a
    /// gathered Reply chunk).
    pub(super) results: SpareBufs,
    /// For [`ReplyBytes::bulk`](super::ReplyBytes::bulk).
    pub(super) bulk: SpareBufs,
}

impl ReplySpares {
    /// Keeps at most `cap` buffers of each kind.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            results: SpareBufs::new(cap),
            bulk: SpareBufs::new(cap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_cap_emptied_buffers_and_counts_reuse() {
        let mut s = SpareBufs::new(2);
        assert_eq!(s.take().capacity(), 0);
        assert_eq!(s.reused(), 0);
        let a = vec![1u8; 100];
        let pa = a.as_ptr();
        s.give(a);
        s.give(vec![2u8; 10]);
        s.give(vec![3u8; 10]); // over the cap: dropped
        s.give(Vec::new()); // no memory: dropped
        let b = s.take();
        assert!(b.is_empty());
        let c = s.take();
        assert!(c.is_empty() && c.capacity() >= 100);
        assert_eq!(c.as_ptr(), pa);
        assert_eq!(s.reused(), 2);
        assert_eq!(s.take().capacity(), 0);
        assert_eq!(s.reused(), 2);
    }
}
