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
//! A buffer that a reply's chunk Write gathers from belongs to the reply's
//! send context until it is released (as the kernel's rw contexts and
//! pages belong to `svc_rdma_send_ctxt`): the context holds a
//! [`HeldBuf`] token, and the release step (after the Send completed, so
//! the Writes before it did too) leaves it on the pool's returned list,
//! from which the transport takes it back on the worker side. A landing
//! buffer lent to a call that a reply also writes from has two holders
//! (the call and the context); it is free once both let go.

use crate::backend::{DmaBuf, DmaDevice, Sge};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

/// The smallest buffer allocated, and the unit sizes are rounded to.
const MIN_LANDING: usize = 4096;

/// The size of the buffer allocated for `need` bytes: page-rounded, not to
/// a power of two (see [`Landings::ensure`]).
pub(crate) fn buf_size(need: usize) -> usize {
    need.max(MIN_LANDING).next_multiple_of(MIN_LANDING)
}

/// A transport buffer a send context holds, as the token it stores
/// ([`SendCtxt::hold`](crate::ctxt::SendCtxt::hold)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeldBuf {
    /// Landing buffer slot (a `Bulk::Args` payload written from it).
    Landing(u32),
    /// Staging buffer slot (copied reply chunk data).
    Staging(u32),
    /// Not a buffer: marks a context that holds buffers and was handed to
    /// `post` (the transport counts those, to know whether waiting for a
    /// release can free memory).
    Posted,
}

/// The token bit that marks a staging buffer.
const STAGING_BIT: u32 = 1 << 31;
/// The token of [`HeldBuf::Posted`] (no slot index reaches it: there are
/// at most `u32::MAX` slots of each kind, numbered from 0).
const POSTED: u32 = u32::MAX;

impl HeldBuf {
    /// The token a send context stores.
    pub(crate) fn token(self) -> u32 {
        match self {
            HeldBuf::Landing(i) => i & !STAGING_BIT,
            HeldBuf::Staging(i) => i | STAGING_BIT,
            HeldBuf::Posted => POSTED,
        }
    }

    /// The buffer a token names.
    pub(crate) fn from_token(t: u32) -> Self {
        if t == POSTED {
            HeldBuf::Posted
        } else if t & STAGING_BIT != 0 {
            HeldBuf::Staging(t & !STAGING_BIT)
        } else {
            HeldBuf::Landing(t)
        }
    }
}

/// One mapped landing buffer.
pub(crate) struct Landing<B> {
    pub(crate) buf: B,
    /// The mapping of the whole buffer.
    pub(crate) sge: Sge,
}

/// The landing slots. Who owns a slot is recorded in [`LandingState`]
/// (under the transport's reads lock): free, or held by one read context
/// and then by the one call it became (and by the send contexts of the
/// replies that write from it).
pub(crate) struct Landings<B> {
    slots: Box<[UnsafeCell<Option<Landing<B>>>]>,
}

/// Ownership of the slots.
pub(crate) struct LandingState {
    /// Free slots (no holder: no posted work request names them).
    pub(crate) free: Vec<u32>,
    /// Holders per slot (0 = free).
    holders: Box<[u8]>,
}

impl LandingState {
    /// All `n` slots free.
    pub(crate) fn new(n: u32) -> Self {
        Self {
            free: (0..n).rev().collect(),
            holders: (0..n).map(|_| 0).collect(),
        }
    }

    /// Takes a free slot, preferring one already `need` bytes or larger;
    /// the caller is its one holder.
    pub(crate) fn take<B: DmaBuf>(&mut self, slots: &Landings<B>, need: usize) -> Option<u32> {
        let fits = self.free.iter().position(|&i| {
            // SAFETY: a free slot is owned by this (locked) state; only
            // its length is read.
            (unsafe { slots.len_of(i) }) >= need
        });
        let at = fits.or_else(|| (!self.free.is_empty()).then_some(0))?;
        let i = self.free.swap_remove(at);
        self.holders[i as usize] = 1;
        Some(i)
    }

    /// One more holder of held slot `i` (a send context whose Writes read
    /// it). `false` (nothing changed) if `i` is not held.
    pub(crate) fn share(&mut self, i: u32) -> bool {
        match self.holders.get_mut(i as usize) {
            Some(h) if *h != 0 && *h != u8::MAX => {
                *h += 1;
                true
            }
            _ => false,
        }
    }

    /// A holder of slot `i` lets go; returns whether the slot is now free.
    /// A slot not held (a bogus token) is left alone.
    pub(crate) fn put(&mut self, i: u32) -> bool {
        match self.holders.get_mut(i as usize) {
            Some(h) if *h != 0 => {
                *h -= 1;
                if *h == 0 {
                    self.free.push(i);
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    /// Whether slot `i` is free.
    pub(crate) fn is_free(&self, i: u32) -> bool {
        self.holders.get(i as usize).is_some_and(|&h| h == 0)
    }

    /// Whether every slot is free.
    pub(crate) fn all_free(&self, n: usize) -> bool {
        self.free.len() == n
    }

    /// Takes the free slots whose buffers are idle beyond `keep`, for the
    /// caller to [`release`](Landings::release) and give back with
    /// [`give_back`](Self::give_back).
    pub(crate) fn take_excess<B: DmaBuf>(&mut self, slots: &Landings<B>, keep: usize) -> Vec<u32> {
        let mut kept = 0;
        let mut out = Vec::new();
        self.free.retain(|&i| {
            // SAFETY: a free slot is owned by this (locked) state; only
            // whether it holds a buffer is read.
            if unsafe { slots.len_of(i) } == 0 {
                return true;
            }
            if kept < keep {
                kept += 1;
                return true;
            }
            out.push(i);
            false
        });
        out
    }

    /// Returns emptied slots (no buffer, free).
    pub(crate) fn give_back(&mut self, slots: &[u32]) {
        self.free.extend_from_slice(slots);
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
        }
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
            let _ = dev.dma_unmap(old.sge);
        }
        // Page-rounded, not to a power of two: a device handing out chunks
        // of a fixed size (the verbs listener's 2 MiB) must fit the
        // largest message it could take per call before.
        let size = buf_size(need);
        let buf = dev.alloc_buf(size)?;
        let sge = dev.dma_map(&buf, 0, size)?;
        *slot = Some(Landing { buf, sge });
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
