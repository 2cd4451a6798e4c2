//! Buffer storage shared by the host (through `MockBuf`/`MockMr`) and the
//! fake NIC (through the DMA tracker and the MR table), and the fake device
//! address space.
//!
//! # Discipline
//! The bytes live in `UnsafeCell`s because both sides need them at once
//! without a guard: [`DmaBuf::as_slice`](rdmaxprt_core::backend::DmaBuf)
//! hands out a bare `&[u8]`. Soundness rests on three rules:
//! 1. NIC accesses ([`Region::nic_copy`]) always hold the `access` lock of
//!    each region they touch, so two NIC operations never overlap.
//! 2. The NIC only touches memory named by a posted WR (the poster promised,
//!    in `QueuePair::post_send`/`post_recv`'s `# Safety`, that the host
//!    leaves it alone until the completion is polled or the QP drained) or
//!    memory of a registered region, whose host accessors (`MockMr::read`,
//!    `MockMr::write`) take the same `access` lock, or whose unlocked host
//!    slices (`unsafe MockMr::host_bytes`/`host_bytes_mut`) come with the
//!    caller's promise that no peer WR targets the region meanwhile.
//! 3. A region is kept alive by an `Arc` in every live mapping and MR, so a
//!    buffer dropped while mapped is a recorded violation, never a
//!    use-after-free.
#![allow(unsafe_code)]

use crate::lock::Mutex;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

/// Fake IOVA layout: buffer `n` (counting from 1, process-wide) owns the
/// 4 GiB window `n << 32 .. (n + 1) << 32`, its bytes from the window's
/// start. A buffer holds at most `u32::MAX` bytes (`alloc_buf` refuses
/// more), so the rest of its window is an unused guard and an address
/// names one buffer; the buffer is `addr >> 32`, found without a search
/// (the tracker's lookup per NIC access).
pub(crate) const WINDOW_SHIFT: u32 = 32;

/// Next free buffer number. Starts at 1 so address 0 (and small garbage
/// values) never resolve.
static NEXT_WINDOW: AtomicU64 = AtomicU64::new(1);

fn alloc_addr_range() -> u64 {
    // Relaxed: the counter only has to hand out distinct windows.
    NEXT_WINDOW.fetch_add(1, Ordering::Relaxed) << WINDOW_SHIFT
}

/// The buffer number (window) an address lies in.
pub(crate) fn window_of(addr: u64) -> u64 {
    addr >> WINDOW_SHIFT
}

/// The bytes of one buffer plus its fake device address.
pub(crate) struct Region {
    base: u64,
    access: Mutex<()>,
    /// `lead + len` bytes: the region is `bytes[lead..lead + len]`.
    bytes: Box<[UnsafeCell<u8>]>,
    len: usize,
    /// Bytes skipped so that byte 0 sits at a [`HOST_ALIGN`]-aligned host
    /// address.
    lead: usize,
}

/// Host alignment of a region's first byte: a cache line, as the device
/// address of its first byte is (the window's start). Registered memory
/// is pinned pages; with the bytes at a heap allocator's 16-byte alignment
/// instead, the NIC's copies (memcpy) would see an alignment the device
/// addresses do not show, and an offset a transport chooses for alignment
/// would mean nothing to them.
const HOST_ALIGN: usize = 64;

// SAFETY: 1. NIC-side access holds `access` (rule 1 of the module docs);
// 2. host-side access is either through `&`/`&mut` of the single owning
// `MockBuf`, which the post contract keeps apart from NIC access (rule 2),
// or through `MockMr`, which holds `access` too. So shared references to a
// `Region` from several threads never produce a data race that the unsafe
// post contract does not already forbid.
unsafe impl Sync for Region {}

impl Region {
    /// A zeroed region of `len` bytes with a fresh address range.
    pub(crate) fn new(len: usize) -> Self {
        let bytes: Vec<UnsafeCell<u8>> = (0..len + HOST_ALIGN - 1)
            .map(|_| UnsafeCell::new(0))
            .collect();
        let lead = bytes.as_ptr().align_offset(HOST_ALIGN).min(HOST_ALIGN - 1);
        Self {
            base: alloc_addr_range(),
            access: Mutex::new(()),
            bytes: bytes.into_boxed_slice(),
            len,
            lead,
        }
    }

    /// Device address of byte 0.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn ptr(&self) -> *mut u8 {
        // `UnsafeCell<u8>` is `repr(transparent)`, and a pointer derived
        // from the whole slice may write to every element; `lead + len`
        // bytes are allocated, so `lead..lead + len` lies inside.
        UnsafeCell::raw_get(self.bytes.as_ptr().wrapping_add(self.lead))
    }

    /// The bytes, for the host.
    ///
    /// # Safety
    /// 1. No NIC operation may write this region while the returned slice
    ///    lives (the post contract: not posted, or its completion polled).
    /// 2. No `host_bytes_mut` slice may be live at the same time.
    pub(crate) unsafe fn host_bytes(&self) -> &[u8] {
        // SAFETY: `ptr()` is valid for `len()` initialized bytes for as long
        // as `self`; the caller rules out concurrent writers (duties 1, 2).
        unsafe { core::slice::from_raw_parts(self.ptr(), self.len()) }
    }

    /// The bytes, writable, for the host.
    ///
    /// # Safety
    /// 1. No NIC operation may touch this region while the slice lives.
    /// 2. No other host slice of this region may be live at the same time
    ///    (callers derive it from `&mut MockBuf` or hold `access`).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn host_bytes_mut(&self) -> &mut [u8] {
        // SAFETY: valid for `len()` bytes; exclusive by duties 1 and 2.
        unsafe { core::slice::from_raw_parts_mut(self.ptr(), self.len()) }
    }

    /// Runs `f` with the bytes while holding the NIC lock (MR host access).
    pub(crate) fn with_locked<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let _g = self.access.lock();
        // SAFETY: 1. NIC operations hold `access`, which we hold, so none
        // runs; 2. only `MockMr` calls this, and an MR owns its buffer, so
        // no `MockBuf` slice of this region can exist.
        f(unsafe { self.host_bytes_mut() })
    }

    /// The NIC copies `len` bytes from `src` at `src_off` to `dst` at
    /// `dst_off`, once, holding both regions' `access` locks (one lock if
    /// they are the same region; else taken in address order, the only
    /// place two are held, so two copies never wait on each other in a
    /// cycle). Returns `false` (copying nothing) if a range is out of
    /// bounds.
    ///
    /// # Safety
    /// Both ranges must be named by a posted WR or lie in a registered
    /// region (module docs, rule 2), so the host is not writing the source
    /// nor reading or writing the destination.
    pub(crate) unsafe fn nic_copy(
        src: &Region,
        src_off: usize,
        dst: &Region,
        dst_off: usize,
        len: usize,
    ) -> bool {
        let in_bounds = |r: &Region, off: usize| off.checked_add(len).is_some_and(|e| e <= r.len());
        if !in_bounds(src, src_off) || !in_bounds(dst, dst_off) {
            return false;
        }
        if core::ptr::eq(src, dst) {
            let _g = src.access.lock();
            // SAFETY: both ranges in bounds (checked); other NIC operations
            // are excluded by `access`, the host by the caller's duty; the
            // ranges may overlap, so `copy` (memmove).
            unsafe { core::ptr::copy(src.ptr().add(src_off), dst.ptr().add(dst_off), len) };
            return true;
        }
        let (first, second) = if src.base < dst.base {
            (src, dst)
        } else {
            (dst, src)
        };
        let _g1 = first.access.lock();
        let _g2 = second.access.lock();
        // SAFETY: in bounds (checked); two regions never share bytes; NIC
        // operations on either are excluded by the locks held, the host by
        // the caller's duty.
        unsafe {
            core::ptr::copy_nonoverlapping(src.ptr().add(src_off), dst.ptr().add(dst_off), len);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{Region, HOST_ALIGN};

    #[test]
    fn a_region_starts_line_aligned_like_its_device_address() {
        for len in [0, 1, 63, 64, 4096, 65536 + 512] {
            let r = Region::new(len);
            assert_eq!(r.len(), len);
            assert_eq!(r.ptr() as usize % HOST_ALIGN, 0, "len {len}");
            assert_eq!(r.base() % HOST_ALIGN as u64, 0);
            // SAFETY: fresh region, no NIC access, no other slice.
            let b = unsafe { r.host_bytes_mut() };
            assert!(b.iter().all(|&x| x == 0), "zeroed");
            b.fill(0xab);
        }
    }
}
