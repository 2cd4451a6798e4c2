//! The fake NIC's data movement: a WR's local SGEs and the peer's memory
//! resolved to region pieces first (every check done before a byte moves),
//! then copied piece to piece, each byte once, with no bounce buffer in
//! between (a real NIC moves a Send's or RDMA's bytes once too).
#![allow(unsafe_code)]

use crate::device::MockDevice;
use crate::region::Region;
use alloc::sync::Arc;
use alloc::vec::Vec;
use rdmaxprt_core::backend::Sge;

/// `len` bytes of `region` from `off`.
#[derive(Clone)]
pub(crate) struct Piece {
    pub(crate) region: Arc<Region>,
    pub(crate) off: usize,
    pub(crate) len: usize,
}

impl core::fmt::Debug for Piece {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Piece")
            .field("base", &self.region.base())
            .field("off", &self.off)
            .field("len", &self.len)
            .finish()
    }
}

/// The source and destination pieces of the WR being executed, kept
/// between WRs (emptied: no region stays referenced) so executing one
/// allocates nothing once they are large enough.
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    pub(crate) src: Vec<Piece>,
    pub(crate) dst: Vec<Piece>,
}

impl Pieces {
    /// Forgets the regions of the last WR.
    #[inline]
    pub(crate) fn clear(&mut self) {
        if !self.src.is_empty() {
            self.src.clear();
        }
        if !self.dst.is_empty() {
            self.dst.clear();
        }
    }
}

/// Appends the regions behind `sges` (local memory of a posted WR) to
/// `out`; their total length, or `None` if one is not mapped (recorded by
/// the tracker).
pub(crate) fn resolve(dev: &MockDevice, sges: &[Sge], out: &mut Vec<Piece>) -> Option<usize> {
    let mut total = 0usize;
    for &sge in sges {
        let (region, off) = dev.shared.tracker.resolve(sge)?;
        let len = sge.length as usize;
        total = total.saturating_add(len);
        out.push(Piece { region, off, len });
    }
    Some(total)
}

/// Copies the first `len` bytes of `src` (pieces in order) into `dst`
/// (pieces in order), each byte once. `false` if either side holds fewer
/// than `len` bytes or a piece lies out of its region's bounds (then a
/// prefix may have been copied, as a real NIC's partial DMA before a
/// fault).
///
/// # Safety
/// Every `src` piece must be memory the NIC may read and every `dst` piece
/// memory it may write (named by a posted WR, or in a registered region:
/// region.rs, rule 2).
pub(crate) unsafe fn copy(src: &[Piece], dst: &[Piece], mut len: usize) -> bool {
    let (mut si, mut so) = (0, 0);
    let (mut di, mut d_off) = (0, 0);
    while len > 0 {
        let (Some(s), Some(d)) = (src.get(si), dst.get(di)) else {
            return false;
        };
        let n = len.min(s.len - so).min(d.len - d_off);
        // SAFETY: the caller's duty for both pieces; `nic_copy` checks the
        // bounds.
        if n > 0 && !unsafe { Region::nic_copy(&s.region, s.off + so, &d.region, d.off + d_off, n) }
        {
            return false;
        }
        len -= n;
        so += n;
        d_off += n;
        if so == s.len {
            (si, so) = (si + 1, 0);
        }
        if d_off == d.len {
            (di, d_off) = (di + 1, 0);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(bytes: &[u8]) -> Arc<Region> {
        let r = Arc::new(Region::new(bytes.len()));
        // SAFETY: fresh region, no NIC access, no other slice.
        unsafe { r.host_bytes_mut() }.copy_from_slice(bytes);
        r
    }

    fn piece(r: &Arc<Region>, off: usize, len: usize) -> Piece {
        Piece {
            region: Arc::clone(r),
            off,
            len,
        }
    }

    fn bytes(r: &Region) -> Vec<u8> {
        // SAFETY: no NIC operation runs in these tests.
        unsafe { r.host_bytes() }.to_vec()
    }

    #[test]
    fn copies_across_uneven_pieces_in_order() {
        let a = region(b"abcdefgh");
        let b = region(b"ijkl");
        let d1 = region(&[0; 5]);
        let d2 = region(&[0; 9]);
        let src = [piece(&a, 2, 5), piece(&b, 0, 0), piece(&b, 1, 3)];
        let dst = [piece(&d1, 1, 3), piece(&d2, 0, 9)];
        // SAFETY: no host slice is live.
        assert!(unsafe { copy(&src, &dst, 8) });
        assert_eq!(bytes(&d1), b"\0cde\0");
        assert_eq!(bytes(&d2), b"fgjkl\0\0\0\0");
    }

    #[test]
    fn short_side_or_out_of_bounds_piece_fails() {
        let a = region(b"abcd");
        let d = region(&[0; 8]);
        // SAFETY: as above.
        unsafe {
            assert!(!copy(&[piece(&a, 0, 4)], &[piece(&d, 0, 8)], 5));
            assert!(!copy(&[piece(&a, 0, 4)], &[piece(&d, 0, 2)], 4));
            assert!(!copy(&[piece(&a, 2, 4)], &[piece(&d, 0, 8)], 4));
            assert!(copy(&[piece(&a, 0, 4)], &[piece(&d, 0, 8)], 0));
        }
    }

    #[test]
    fn same_region_overlapping_copy_moves_like_memmove() {
        let a = region(b"abcdefgh");
        // SAFETY: as above.
        assert!(unsafe { copy(&[piece(&a, 0, 6)], &[piece(&a, 2, 6)], 6) });
        assert_eq!(bytes(&a), b"ababcdef");
    }
}
