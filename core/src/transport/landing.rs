//! Landing buffers: where a call's Read chunks are pulled, pooled per
//! transport and mapped once (the kernel pulls into the svc_rqst's pages,
//! which it keeps across requests).
//!
//! A buffer is allocated on first need (so a connection that never sends
//! Read chunks holds none), grown by reallocation when a larger message
//! comes, and otherwise reused as it is: never zero-filled per call (the
//! Reads overwrite what the message uses, and only that is lent out). At
//! most [`XprtConfig::read_bufs`](super::XprtConfig::read_bufs) exist; when
//! all are busy a call with Read chunks waits (see `read.rs`). Between
//! calls at most [`XprtConfig::keep_bufs`](super::XprtConfig::keep_bufs)
//! idle ones stay mapped; `release_ctxt` frees the rest (a device whose
//! registered memory is scarce, like the verbs listener's whole-chunk
//! pools, keeps none). The same pool type holds `sendto`'s staging
//! buffers.
//!
//! A buffer that a reply's chunk Write gathers from carries a fence: the
//! count of signaled Send Queue work requests that must have completed
//! (in order, so the Write did too) before it is written again.

use crate::backend::{DmaBuf, DmaDevice, Sge};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The smallest buffer allocated, and the unit sizes are rounded to.
const MIN_LANDING: usize = 4096;

/// One mapped landing buffer.
pub(crate) struct Landing<B> {
    pub(crate) buf: B,
    /// The mapping of the whole buffer.
    pub(crate) sge: Sge,
}

/// The landing slots. Who owns a slot is recorded in [`LandingState`]
/// (under the transport's reads lock): free, or held by one read context
/// and then by the one call it became.
pub(crate) struct Landings<B> {
    slots: Box<[UnsafeCell<Option<Landing<B>>>]>,
    /// Slots holding a buffer (busy or idle): while it is at most the
    /// number kept, `release_ctxt` has nothing to trim and skips the walk
    /// of the free list (an inline-only connection never maps one).
    mapped: AtomicUsize,
}

/// Ownership of the slots.
pub(crate) struct LandingState {
    /// Free slots with the fence each waits for.
    pub(crate) free: Vec<(u32, u64)>,
}

impl LandingState {
    /// All `n` slots free.
    pub(crate) fn new(n: u32) -> Self {
        Self {
            free: (0..n).rev().map(|i| (i, 0)).collect(),
        }
    }

    /// Takes a free slot whose fence has passed (`done` signaled work
    /// requests completed), preferring one already `need` bytes or larger.
    pub(crate) fn take<B: DmaBuf>(
        &mut self,
        slots: &Landings<B>,
        need: usize,
        done: u64,
    ) -> Option<u32> {
        let ready = |&(_, fence): &(u32, u64)| fence <= done;
        let fits = self.free.iter().position(|e| {
            // SAFETY: a free slot is owned by this (locked) state; only
            // its length is read.
            ready(e) && unsafe { slots.len_of(e.0) } >= need
        });
        let at = fits.or_else(|| self.free.iter().position(ready))?;
        Some(self.free.swap_remove(at).0)
    }

    /// Whether every slot is free.
    pub(crate) fn all_free(&self, n: usize) -> bool {
        self.free.len() == n
    }

    /// Takes the free slots whose buffers are idle beyond `keep` (fence
    /// passed: `done` signaled work requests completed), for the caller to
    /// [`release`](Landings::release) and give back with
    /// [`give_back`](Self::give_back).
    pub(crate) fn take_excess<B: DmaBuf>(
        &mut self,
        slots: &Landings<B>,
        keep: usize,
        done: u64,
    ) -> Vec<u32> {
        let mut kept = 0;
        let mut out = Vec::new();
        self.free.retain(|&(i, fence)| {
            // SAFETY: a free slot is owned by this (locked) state; only
            // whether it holds a buffer is read.
            if unsafe { slots.len_of(i) } == 0 {
                return true;
            }
            if fence > done || kept < keep {
                kept += 1;
                return true;
            }
            out.push(i);
            false
        });
        out
    }

    /// Returns emptied slots (no buffer, nothing to wait for).
    pub(crate) fn give_back(&mut self, slots: &[u32]) {
        self.free.extend(slots.iter().map(|&i| (i, 0)));
    }
}

// SAFETY: a slot is accessed only by its owner as recorded in
// `LandingState` (behind a lock): the state hands a slot to one owner at a
// time, so no two threads touch one slot at once.
unsafe impl<B: Send> Sync for Landings<B> {}

impl<B: DmaBuf> Landings<B> {
    /// `n` empty slots.
    pub(crate) fn new(n: u32) -> Self {
        Self {
            slots: (0..n).map(|_| UnsafeCell::new(None)).collect(),
            mapped: AtomicUsize::new(0),
        }
    }

    /// Slots holding a buffer now (busy or idle). Written only by a slot's
    /// owner as it maps or frees one; a stale read only delays a trim.
    pub(crate) fn mapped(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Number of slots.
    pub(crate) fn count(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the buffer in slot `i` holds (0 if none yet).
    ///
    /// # Safety
    /// The caller owns slot `i` (or holds the state that does).
    unsafe fn len_of(&self, i: u32) -> usize {
        // SAFETY: the caller owns the slot.
        unsafe { &*self.slots[i as usize].get() }
            .as_ref()
            .map_or(0, |l| l.buf.as_slice().len())
    }

    /// Makes slot `i` hold a mapped buffer of at least `need` bytes:
    /// keeps the one it has if large enough, otherwise unmaps it and
    /// allocates and maps a new one (rounded up to 4 KiB).
    /// Returns the mapping.
    ///
    /// # Safety
    /// The caller owns slot `i`, and no posted work request names its
    /// buffer.
    pub(crate) unsafe fn ensure<D: DmaDevice<Buf = B>>(
        &self,
        dev: &D,
        i: u32,
        need: usize,
    ) -> Result<Sge, D::Error> {
        // SAFETY: the caller owns the slot.
        let slot = unsafe { &mut *self.slots[i as usize].get() };
        if let Some(l) = slot.as_ref().filter(|l| l.buf.as_slice().len() >= need) {
            return Ok(l.sge);
        }
        if let Some(old) = slot.take() {
            self.mapped.fetch_sub(1, Ordering::Relaxed);
            let _ = dev.dma_unmap(old.sge);
        }
        // Page-rounded, not to a power of two: a device handing out chunks
        // of a fixed size (the verbs listener's 2 MiB) must fit the
        // largest message it could take per call before.
        let size = need.max(MIN_LANDING).next_multiple_of(MIN_LANDING);
        let buf = dev.alloc_buf(size)?;
        let sge = dev.dma_map(&buf, 0, size)?;
        *slot = Some(Landing { buf, sge });
        self.mapped.fetch_add(1, Ordering::Relaxed);
        Ok(sge)
    }

    /// Slot `i`'s buffer, writable (to copy a call's inline parts in).
    ///
    /// # Safety
    /// The caller owns slot `i`, and no posted work request names it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, i: u32) -> &mut [u8] {
        // SAFETY: the caller owns the slot and nothing else touches it.
        match unsafe { &mut *self.slots[i as usize].get() } {
            Some(l) => l.buf.as_mut_slice(),
            None => &mut [],
        }
    }

    /// Slot `i`'s buffer.
    ///
    /// # Safety
    /// The caller owns slot `i`, and the device no longer writes it.
    pub(crate) unsafe fn bytes(&self, i: u32) -> &[u8] {
        // SAFETY: the caller owns the slot.
        match unsafe { &*self.slots[i as usize].get() } {
            Some(l) => l.buf.as_slice(),
            None => &[],
        }
    }

    /// Slot `i`'s mapping, if it has a buffer.
    ///
    /// # Safety
    /// The caller owns slot `i`.
    pub(crate) unsafe fn sge(&self, i: u32) -> Option<Sge> {
        // SAFETY: the caller owns the slot.
        unsafe { &*self.slots[i as usize].get() }
            .as_ref()
            .map(|l| l.sge)
    }

    /// Unmaps and frees slot `i`'s buffer, leaving the slot empty.
    ///
    /// # Safety
    /// The caller owns slot `i`, and no posted work request names its
    /// buffer.
    pub(crate) unsafe fn release<D: DmaDevice<Buf = B>>(&self, dev: &D, i: u32) {
        // SAFETY: the caller owns the slot.
        if let Some(l) = unsafe { &mut *self.slots[i as usize].get() }.take() {
            self.mapped.fetch_sub(1, Ordering::Relaxed);
            let _ = dev.dma_unmap(l.sge);
        }
    }

    /// Teardown: unmaps and frees every buffer (`release`), or, when the
    /// QP drain failed and the device may still write a slot listed in
    /// `in_flight`, leaks those. Returns (released, leaked).
    pub(crate) fn destroy<D: DmaDevice<Buf = B>>(
        self,
        dev: &D,
        in_flight: &[u32],
    ) -> (usize, usize) {
        let (mut released, mut leaked) = (0, 0);
        for (i, s) in self.slots.into_vec().into_iter().enumerate() {
            let Some(l) = s.into_inner() else { continue };
            if in_flight.contains(&(i as u32)) {
                core::mem::forget(l);
                leaked += 1;
            } else {
                let _ = dev.dma_unmap(l.sge);
                released += 1;
            }
        }
        (released, leaked)
    }
}
