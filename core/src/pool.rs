//! The send-context arena shared by all three release policies.
//!
//! Contexts live in a fixed array of slots sized by the cap; a context is
//! named by its slot index, and a posted context's `wr_id` is
//! `(generation << 32) | index`. A completion's `wr_id` comes from hardware,
//! so the completion path (`put`) validates it (range, generation,
//! state) and turns garbage or duplicates into a typed error instead of
//! touching the wrong context.
//!
//! Slot states (one `AtomicU8` each):
//!
//! ```text
//!  EMPTY --alloc--> OWNED --begin_post--> POSTING --commit--> POSTED
//!    FREE <--release-- RELEASING <--completion-- POSTED
//!  POSTING --completion--> EARLY --commit--> RELEASING   (completion beat the poster)
//!  POSTING --abort (nothing consumed)--> OWNED
//!  FREE --get--> OWNED
//!  FREE --shrink--> HOLLOW --get (reallocates)--> OWNED
//! ```
//!
//! A HOLLOW slot has no context: an idle shrink ([`SendCtxtPool::shrink`])
//! freed it, or an allocation into it failed. Hollow slots wait on a list
//! of their own, so `get` reaches them only after the free list (and, in
//! the Deferred policy, a drain) came up empty.

use crate::backend::DmaDevice;
use crate::ctxt::{CompletionId, SendCtxt};
use crate::llist::{FreeList, Links, LockedFreeList, ReleaseList, NIL};
use crate::spin::{SpinMutex, SpinMutexGuard};
use crate::stats::Stats;
use crate::sync::{AtomicBool, AtomicU32, AtomicU8, UnsafeCell};
use alloc::boxed::Box;
use core::fmt;
use core::sync::atomic::Ordering;

/// Most contexts one pool can hold: indices stay below bit 31 so a
/// transport can tag other work requests (RDMA Reads) with that bit.
pub const MAX_CAP: u32 = (1 << 31) - 1;

pub(crate) const EMPTY: u8 = 0;
pub(crate) const FREE: u8 = 1;
pub(crate) const OWNED: u8 = 2;
pub(crate) const POSTING: u8 = 3;
pub(crate) const POSTED: u8 = 4;
pub(crate) const EARLY: u8 = 5;
pub(crate) const RELEASING: u8 = 6;
pub(crate) const HOLLOW: u8 = 7;

mod census;
mod returned;
mod shrink;
mod teardown;

pub use census::Census;

/// Sizing of one transport's send-context pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most contexts that may ever exist. `get` waits at the cap.
    pub cap: u32,
    /// Bytes of each context's persistent header buffer.
    pub hdr_size: usize,
    /// SGEs per Send WR (the device's `max_send_sge`).
    pub max_sges: u32,
    /// Owning transport id, carried in completion ids.
    pub xprt_id: u32,
}

impl PoolConfig {
    /// The cap a transport needs: every posted reply holds at least one SQ
    /// slot (`sq_depth`), and at most `credits` replies are being built at
    /// once, so `sq_depth + credits` contexts are never all busy unless
    /// releases lag; then `get` drains instead of growing.
    pub fn for_transport(sq_depth: u32, credits: u32, max_sges: u32) -> Self {
        Self {
            cap: sq_depth.saturating_add(credits).max(1),
            hdr_size: 4096,
            max_sges,
            xprt_id: 0,
        }
    }
}

/// Why a completion's `wr_id` was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompletionError {
    /// The index names no slot of this pool.
    UnknownWrId(u64),
    /// The slot was reused since this `wr_id` was posted (a duplicate or
    /// very late completion).
    StaleGeneration(u64),
    /// The slot is not posted (duplicate completion, or never posted).
    NotPosted(u64),
}

impl fmt::Display for CompletionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompletionError::UnknownWrId(w) => write!(f, "completion for unknown wr_id {w:#x}"),
            CompletionError::StaleGeneration(w) => write!(f, "stale completion for wr_id {w:#x}"),
            CompletionError::NotPosted(w) => {
                write!(f, "completion for wr_id {w:#x} that is not posted")
            }
        }
    }
}

/// Outcome of validating a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// Slot is now RELEASING and owned by the completion path.
    Release(u32),
    /// The poster has not committed yet; it will do the put.
    LeftToPoster,
}

/// Proof that the caller holds the pool's completion lock
/// ([`SendCtxtPool::lock_completions`]); released on drop.
pub(crate) struct CompletionGuard<'a> {
    _g: SpinMutexGuard<'a, ()>,
}

/// One context's slot, alone on its cache line(s): the completion path
/// touches `state`, `gen`, `sqes` and `link` of exactly one slot, so two
/// completion threads putting different contexts never share a line.
#[repr(align(64))]
pub(crate) struct Slot<D: DmaDevice> {
    /// The free list's or release list's link (one list at a time).
    link: AtomicU32,
    state: AtomicU8,
    gen: AtomicU32,
    /// SQ slots of the posted chain, readable by the completion path
    /// without touching the context (which the poster may still own).
    sqes: AtomicU32,
    ctxt: UnsafeCell<Option<SendCtxt<D>>>,
}

/// The arena: its slots hold the list links too.
pub(crate) struct Slots<D: DmaDevice>(Box<[Slot<D>]>);

impl<D: DmaDevice> core::ops::Deref for Slots<D> {
    type Target = [Slot<D>];
    fn deref(&self) -> &[Slot<D>] {
        &self.0
    }
}

impl<D: DmaDevice> core::ops::DerefMut for Slots<D> {
    fn deref_mut(&mut self) -> &mut [Slot<D>] {
        &mut self.0
    }
}

impl<D: DmaDevice> Links for Slots<D> {
    #[inline]
    fn link(&self, idx: u32) -> &AtomicU32 {
        &self.0[idx as usize].link
    }
}

/// The arena, free list, release list and counters of one transport.
pub struct SendCtxtPool<D: DmaDevice, F: FreeList = LockedFreeList> {
    dev: D,
    cfg: PoolConfig,
    slots: Slots<D>,
    free: F,
    /// HOLLOW slots (no context), taken by `get` after the free list.
    hollow: F,
    /// One shrink at a time (see [`SendCtxtPool::shrink`]).
    shrinking: AtomicBool,
    /// `sc_send_release_list`: completed contexts waiting for a drain.
    pub(crate) release: ReleaseList,
    /// Transport buffers released contexts held, for their transport.
    returned: returned::Returned,
    /// One completion handler at a time (see `lock_completions`).
    completing: SpinMutex<()>,
    allocated: AtomicU32,
    stats: Stats,
}

// SAFETY: a slot's `ctxt` cell is only accessed by the thread that owns the
// slot under the state machine above (OWNED by one `OwnedCtxt`, RELEASING by
// the one thread that claimed it, FREE/EMPTY by the one thread that popped
// or allocated it); ownership moves between threads only through the
// Release/Acquire atomics of the lists and the state word. So sharing the
// pool is sound when the contexts themselves may move between threads
// (`SendCtxt<D>: Send`, i.e. `D::Buf: Send`) and the device may be shared.
unsafe impl<D: DmaDevice + Sync, F: FreeList> Sync for SendCtxtPool<D, F> where D::Buf: Send {}
// SAFETY: as above; moving the whole pool moves every context with it.
unsafe impl<D: DmaDevice + Send, F: FreeList> Send for SendCtxtPool<D, F> where D::Buf: Send {}

impl<D: DmaDevice, F: FreeList> fmt::Debug for SendCtxtPool<D, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendCtxtPool")
            .field("cfg", &self.cfg)
            .field("census", &self.census())
            .finish()
    }
}

/// `wr_id` of slot `idx` at generation `gen`.
#[inline]
pub(crate) fn wr_id(idx: u32, gen: u32) -> u64 {
    ((gen as u64) << 32) | idx as u64
}

impl<D: DmaDevice, F: FreeList + Default> SendCtxtPool<D, F> {
    /// An empty pool (no context allocated yet) over `dev`.
    pub fn new(dev: D, cfg: PoolConfig) -> Self {
        let cap = cfg.cap.min(MAX_CAP);
        let slots = (0..cap)
            .map(|_| Slot {
                link: AtomicU32::new(NIL),
                state: AtomicU8::new(EMPTY),
                gen: AtomicU32::new(0),
                sqes: AtomicU32::new(0),
                ctxt: UnsafeCell::new(None),
            })
            .collect();
        Self {
            dev,
            cfg: PoolConfig { cap, ..cfg },
            slots: Slots(slots),
            free: F::default(),
            hollow: F::default(),
            shrinking: AtomicBool::new(false),
            release: ReleaseList::new(),
            returned: returned::Returned::new(),
            completing: SpinMutex::new(()),
            allocated: AtomicU32::new(0),
            stats: Stats::new(),
        }
    }
}

impl<D: DmaDevice, F: FreeList> SendCtxtPool<D, F> {
    /// The device this pool maps with.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The configuration (with the cap clamped to what the arena holds).
    pub fn config(&self) -> PoolConfig {
        self.cfg
    }

    /// Live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn links(&self) -> &Slots<D> {
        &self.slots
    }

    /// Pops a free context (state FREE -> OWNED).
    pub(crate) fn pop_free(&self) -> Option<u32> {
        let idx = self.free.pop(&self.slots)?;
        self.take(idx);
        Some(idx)
    }

    /// Pops a hollow slot (state HOLLOW -> OWNED, still without a context:
    /// the caller populates it).
    pub(crate) fn pop_hollow(&self) -> Option<u32> {
        let idx = self.hollow.pop(&self.slots)?;
        self.take(idx);
        Some(idx)
    }

    fn take(&self, idx: u32) {
        let slot = &self.slots[idx as usize];
        // Relaxed: the list's Acquire already made us the owner; the state
        // word only needs to be exact for `claim_completed`'s checks, which
        // happen after a Release/Acquire handoff through the post.
        slot.state.store(OWNED, Ordering::Relaxed);
        let g = slot.gen.load(Ordering::Relaxed).wrapping_add(1);
        slot.gen.store(g, Ordering::Relaxed);
        self.stats.take_in_use();
    }

    /// Allocates a new context if under the cap (state EMPTY -> OWNED).
    /// `Ok(None)` at the cap.
    #[doc(alias = "svc_rdma_send_ctxt_alloc")]
    pub(crate) fn alloc(&self) -> Result<Option<u32>, D::Error> {
        // Reserve an index first so concurrent callers never exceed the cap.
        let mut n = self.allocated.load(Ordering::Relaxed);
        loop {
            if n >= self.cfg.cap {
                return Ok(None);
            }
            match self.allocated.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        // SAFETY: index `n` was reserved by our CAS above and has never
        // been published, so nobody else can reach this slot.
        match unsafe { self.install(n) } {
            Ok(()) => {
                self.take(n);
                Ok(Some(n))
            }
            Err(e) => {
                // The index stays reserved: park it on the hollow list; the
                // next taker allocates into it (`populate`), so the cap and
                // the census stay exact.
                self.slots[n as usize]
                    .state
                    .store(HOLLOW, Ordering::Relaxed);
                self.hollow.push(&self.slots, n);
                Err(e)
            }
        }
    }

    /// Allocates a context (header buffer mapped for life) into slot `idx`.
    ///
    /// # Safety
    /// The caller must own the slot, which must be empty.
    unsafe fn install(&self, idx: u32) -> Result<(), D::Error> {
        let cid = CompletionId {
            xprt: self.cfg.xprt_id,
            seq: idx,
        };
        let c = SendCtxt::alloc(&self.dev, cid, self.cfg.hdr_size, self.cfg.max_sges)?;
        self.slots[idx as usize].ctxt.with_mut(|p| {
            // SAFETY: the caller owns the slot (this fn's contract).
            unsafe { *p = Some(c) }
        });
        Stats::bump(&self.stats.allocations);
        self.stats.pool_size.fetch_add(1, Ordering::Relaxed);
        // Growth is the slow path: a full fence here lets an idle sweeper
        // that parks when no pool is above its floor (store "parked",
        // fence, read the pool sizes) and a grower (grow, fence, read
        // "parked") never both miss each other.
        crate::sync::fence(Ordering::SeqCst);
        Ok(())
    }

    /// Marks slot `idx` as being posted and returns its `wr_id`.
    pub(crate) fn begin_post(&self, idx: u32, sqes: u32) -> u64 {
        let slot = &self.slots[idx as usize];
        slot.sqes.store(sqes, Ordering::Relaxed);
        // Release: a completion's Acquire CAS on this word then sees the
        // context exactly as the poster built it (the backend also orders
        // this, but we do not rely on backends for memory safety).
        slot.state.store(POSTING, Ordering::Release);
        wr_id(idx, slot.gen.load(Ordering::Relaxed))
    }

    /// The poster's commit after a post that consumed WRs. Returns the slot
    /// if a completion already arrived and the poster must do the put.
    pub(crate) fn commit_post(&self, idx: u32) -> Option<u32> {
        let slot = &self.slots[idx as usize];
        // AcqRel: Release publishes that we are done with the context;
        // Acquire (on the EARLY path) syncs with the completion's write.
        match slot
            .state
            .compare_exchange(POSTING, POSTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => None,
            Err(EARLY) => {
                slot.state.store(RELEASING, Ordering::Relaxed);
                Some(idx)
            }
            Err(s) => panic!("send ctxt {idx}: commit in state {s}, expected POSTING or EARLY"),
        }
    }

    /// The poster's undo when nothing was consumed: the context is owned
    /// again. If a completion for it arrived anyway (a backend bug), treat it
    /// as posted and return the slot for the put.
    pub(crate) fn abort_post(&self, idx: u32) -> Option<u32> {
        let slot = &self.slots[idx as usize];
        match slot
            .state
            .compare_exchange(POSTING, OWNED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => None,
            Err(_) => self.commit_post(idx),
        }
    }

    /// Takes the pool's completion lock: completions are handled by one
    /// thread at a time (the kernel's single completion context per CQ), so
    /// [`claim_completed`](Self::claim_completed) validates with plain loads
    /// and one store instead of a compare-and-swap per completion. Hold it
    /// for a whole poll batch to pay one atomic RMW per batch.
    #[inline]
    pub(crate) fn lock_completions(&self) -> CompletionGuard<'_> {
        CompletionGuard {
            _g: self.completing.lock(),
        }
    }

    /// Validates a completion's `wr_id` and claims the slot for release.
    /// Also returns the chain's SQ slot count, to give back to the SQ.
    ///
    /// Why no compare-and-swap is needed on the common path: a POSTED slot
    /// leaves POSTED only through a completion (the poster never touches a
    /// posted context, and teardown's reclaim runs with no completion
    /// handler), and the guard makes us the only completion handler. So
    /// once we load POSTED, nobody else can change the state word before our
    /// store. Only a POSTING slot (completion beat the poster's commit) needs
    /// a CAS, to settle the race with the poster.
    #[inline]
    pub(crate) fn claim_completed(
        &self,
        _g: &CompletionGuard<'_>,
        wr_id: u64,
    ) -> Result<(Claimed, u32), CompletionError> {
        let idx = wr_id as u32;
        let gen = (wr_id >> 32) as u32;
        let Some(slot) = self.slots.get(idx as usize) else {
            return Err(self.bad(CompletionError::UnknownWrId(wr_id)));
        };
        // Acquire pairs with the poster's Release (begin_post's store, or
        // its commit CAS): the context and `gen`/`sqes` are as it left them.
        let mut cur = slot.state.load(Ordering::Acquire);
        loop {
            // While POSTING or POSTED the generation cannot change (only
            // `take` changes it, on a FREE slot).
            let current_gen = slot.gen.load(Ordering::Relaxed) == gen;
            match cur {
                POSTED if current_gen => {
                    slot.state.store(RELEASING, Ordering::Relaxed);
                    return Ok((Claimed::Release(idx), slot.sqes.load(Ordering::Relaxed)));
                }
                POSTING if current_gen => {
                    // AcqRel pairs with the poster's commit CAS.
                    match slot.state.compare_exchange(
                        POSTING,
                        EARLY,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            return Ok((Claimed::LeftToPoster, slot.sqes.load(Ordering::Relaxed)))
                        }
                        // Committed (POSTED) or aborted (OWNED) meanwhile.
                        Err(now) => cur = now,
                    }
                }
                _ if !current_gen => {
                    return Err(self.bad(CompletionError::StaleGeneration(wr_id)));
                }
                _ => return Err(self.bad(CompletionError::NotPosted(wr_id))),
            }
        }
    }

    #[cold]
    fn bad(&self, e: CompletionError) -> CompletionError {
        Stats::bump(&self.stats.bad_completions);
        e
    }

    /// Runs `f` on the context in slot `idx`.
    ///
    /// # Safety
    /// The caller must own the slot (OWNED by its guard, or RELEASING/FREE
    /// after claiming it) so no other thread touches it.
    pub(crate) unsafe fn with_ctxt<R>(&self, idx: u32, f: impl FnOnce(&mut SendCtxt<D>) -> R) -> R {
        self.slots[idx as usize].ctxt.with_mut(|p| {
            // SAFETY: the caller owns the slot (this fn's contract), so this
            // is the only live reference to its contents.
            let c = unsafe { &mut *p };
            match c {
                Some(c) => f(c),
                None => panic!("send ctxt {idx}: owned slot has no context"),
            }
        })
    }

    /// Whether slot `idx` holds a context (a hollow slot, given back by a
    /// shrink or left by a failed allocation, does not).
    ///
    /// # Safety
    /// The caller must own the slot.
    pub(crate) unsafe fn is_populated(&self, idx: u32) -> bool {
        // SAFETY: the caller owns the slot (contract above).
        self.slots[idx as usize]
            .ctxt
            .with(|p| unsafe { (*p).is_some() })
    }

    /// Ensures an owned slot holds a context, allocating into it if it is
    /// hollow (a shrink or a failed allocation left it empty); on failure
    /// the slot goes back on the hollow list.
    ///
    /// # Safety
    /// The caller must own the slot.
    pub(crate) unsafe fn populate(&self, idx: u32) -> Result<(), D::Error> {
        // SAFETY: the caller owns the slot.
        if unsafe { self.is_populated(idx) } {
            return Ok(());
        }
        // SAFETY: the caller owns the slot, and it is empty (checked above).
        // SAFETY (`put_hollow`): the caller owns the slot, still empty.
        unsafe { self.install(idx) }.inspect_err(|_| unsafe { self.put_hollow(idx) })
    }

    /// The release step: chunk resources, unmap SGEs 1..n, pages, the
    /// transport buffers the reply held (onto the returned list, see
    /// [`take_returned`](Self::take_returned)), then back to the free list.
    ///
    /// # Safety
    /// The caller must own slot `idx`: it claimed it (RELEASING, through
    /// `claim_completed`, `commit_post` or the release list) or holds it
    /// OWNED through its guard, and nobody else can reach it any more; in
    /// particular the device must be done with every buffer the context
    /// posted (its Send completed, or the QP was drained).
    #[doc(alias = "svc_rdma_send_ctxt_release")]
    pub(crate) unsafe fn send_ctxt_release(&self, idx: u32) {
        // SAFETY: the caller owns the slot (this fn's contract).
        let held = unsafe {
            self.with_ctxt(idx, |c| {
                self.unmap_ctxt(c);
                c.release_pages();
                c.take_held()
            })
        };
        if !held.is_empty() {
            self.returned.push(&held);
        }
        // SAFETY: still ours (contract); the context is released.
        unsafe { self.put_free(idx) };
    }

    /// Puts slot `idx` on the free list (state FREE), handing it to the
    /// next `get`.
    ///
    /// # Safety
    /// The caller must own slot `idx` and be done with it: after this call
    /// another thread may pop it and take `&mut` to its context.
    pub(crate) unsafe fn put_free(&self, idx: u32) {
        self.slots[idx as usize]
            .state
            .store(FREE, Ordering::Relaxed);
        self.stats.return_in_use(1);
        // Release (inside push) hands the context to the next popper.
        self.free.push(&self.slots, idx);
    }

    /// Puts the empty slot `idx` on the hollow list (state HOLLOW).
    ///
    /// # Safety
    /// The caller must own slot `idx`, which must hold no context.
    pub(crate) unsafe fn put_hollow(&self, idx: u32) {
        self.slots[idx as usize]
            .state
            .store(HOLLOW, Ordering::Relaxed);
        self.stats.return_in_use(1);
        self.hollow.push(&self.slots, idx);
    }

    /// Whether a `get` could be satisfied without allocating (hint).
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Whether hollow slots (given back by a shrink) wait to be reallocated
    /// (hint): a `get` then grows the pool without waiting at the cap.
    pub fn has_hollow(&self) -> bool {
        !self.hollow.is_empty()
    }

    /// Whether completed contexts wait on the release list (hint).
    pub fn has_pending_release(&self) -> bool {
        !self.release.is_empty()
    }
}
