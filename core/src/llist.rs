//! Index-linked lock-free lists over a fixed array of link words.
//!
//! Contexts live in an arena and are named by a `u32` index; each has one
//! link word (`links[i]`), used by whichever list holds it, like the kernel's
//! single `sc_node`. A context is on at most one list at a time.
//!
//! - [`ReleaseList`]: Linux `llist` semantics. Many producers
//!   [`push`](ReleaseList::push) (one CAS each) and learn whether the list
//!   was empty; one consumer [`take_all`](ReleaseList::take_all) with a
//!   single swap. There is no single-node pop, so there is no ABA.
//! - [`LockedFreeList`]: lock-free push, pop serialized by a spin lock (the
//!   kernel's `sc_send_lock` around `llist_del_first`). With one popper at a
//!   time a node cannot be popped and re-pushed between our read of the head
//!   and our CAS, which is the ABA hazard.
//! - [`TaggedFreeList`]: lock-free push and pop on a 64-bit head holding
//!   `(generation << 32) | index`; every successful CAS bumps the generation,
//!   so a stale CAS fails even if the same index is back on top.

use crate::spin::SpinMutex;
use crate::sync::{AtomicU32, AtomicU64};
use core::sync::atomic::Ordering;

/// The "no node" index.
pub const NIL: u32 = u32::MAX;

/// Where the lists find node `idx`'s link word. A plain `[AtomicU32]`
/// works; the send-context pool keeps each link inside its context's slot,
/// on the cache line the completion path touches anyway.
pub trait Links {
    /// Node `idx`'s link word. Panics if `idx` is out of range (a broken
    /// internal invariant: indices come from the arena, never the wire).
    fn link(&self, idx: u32) -> &AtomicU32;
}

impl Links for [AtomicU32] {
    #[inline]
    fn link(&self, idx: u32) -> &AtomicU32 {
        &self[idx as usize]
    }
}

#[cfg(feature = "alloc")]
impl Links for alloc::vec::Vec<AtomicU32> {
    #[inline]
    fn link(&self, idx: u32) -> &AtomicU32 {
        &self[idx as usize]
    }
}

/// A chain taken off a [`ReleaseList`] by [`ReleaseList::take_all`]: the
/// consumer now owns every node on it. Iterate it to visit them (most
/// recently pushed first, as `llist_del_all`).
#[must_use = "the taken nodes are owned by this chain; release them"]
pub struct Chain<'a, L: Links + ?Sized> {
    links: &'a L,
    next: u32,
}

impl<L: Links + ?Sized> core::fmt::Debug for Chain<'_, L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chain").field("next", &self.next).finish()
    }
}

impl<L: Links + ?Sized> Iterator for Chain<'_, L> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let cur = self.next;
        if cur == NIL {
            return None;
        }
        // Relaxed suffices: the Acquire swap in `take_all` synchronized with
        // every producer's Release CAS (each CAS is an RMW, so the release
        // sequence runs through all of them), and those producers wrote these
        // links before their CAS. Nobody else writes a taken node's link.
        self.next = self.links.link(cur).load(Ordering::Relaxed);
        Some(cur)
    }
}

/// Many-producer, single-consumer list with take-all (Linux `llist`): a
/// transport's send release list (the kernel's `sc_send_release_list`).
#[doc(alias = "sc_send_release_list")]
#[doc(alias = "llist")]
#[derive(Debug)]
pub struct ReleaseList {
    head: AtomicU32,
}

impl Default for ReleaseList {
    fn default() -> Self {
        Self::new()
    }
}

impl ReleaseList {
    /// An empty list.
    pub fn new() -> Self {
        Self {
            head: AtomicU32::new(NIL),
        }
    }

    /// Pushes node `idx`; returns `true` if the list was empty before (the
    /// empty -> non-empty edge that must trigger an enqueue).
    ///
    /// The caller must own `idx` (it is on no list) and `idx < links.len()`;
    /// an index out of range panics (a broken internal invariant: indices
    /// come from the arena, never from the wire).
    #[inline]
    pub fn push<L: Links + ?Sized>(&self, links: &L, idx: u32) -> bool {
        let link = links.link(idx);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // Relaxed: published by the Release CAS below.
            link.store(head, Ordering::Relaxed);
            // Release pairs with the Acquire swap in `take_all`, so the
            // consumer sees this link and everything the producer wrote into
            // the context before pushing it. On failure just retry with the
            // head we saw; we read nothing through it.
            match self
                .head
                .compare_exchange_weak(head, idx, Ordering::Release, Ordering::Relaxed)
            {
                Ok(prev) => return prev == NIL,
                Err(now) => head = now,
            }
        }
    }

    /// Takes every node with one atomic swap. The caller must be the only
    /// consumer at a time (the transport's drain holds that role).
    #[inline]
    pub fn take_all<'a, L: Links + ?Sized>(&self, links: &'a L) -> Chain<'a, L> {
        // Acquire pairs with the Release CAS in `push`. Skip the RMW when the
        // list is visibly empty: an empty drain is the common idle case.
        let next = if self.head.load(Ordering::Relaxed) == NIL {
            NIL
        } else {
            self.head.swap(NIL, Ordering::Acquire)
        };
        Chain { links, next }
    }

    /// Whether the list looked empty at the time of the load (a hint: a
    /// producer may push right after).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) == NIL
    }
}

/// The free list's contract: any thread may push or pop concurrently.
pub trait FreeList: Send + Sync {
    /// Pushes node `idx`, which the caller owns.
    fn push<L: Links + ?Sized>(&self, links: &L, idx: u32);
    /// Pops a node, transferring its ownership to the caller.
    fn pop<L: Links + ?Sized>(&self, links: &L) -> Option<u32>;
    /// Whether the list looked empty (a hint).
    fn is_empty(&self) -> bool;
}

/// Free list with a lock-free push and a lock-serialized pop (the kernel's
/// design). The default.
#[derive(Debug)]
pub struct LockedFreeList {
    list: ReleaseList,
    pop_lock: SpinMutex<()>,
}

impl Default for LockedFreeList {
    fn default() -> Self {
        Self {
            list: ReleaseList::new(),
            pop_lock: SpinMutex::new(()),
        }
    }
}

impl FreeList for LockedFreeList {
    #[inline]
    fn push<L: Links + ?Sized>(&self, links: &L, idx: u32) {
        self.list.push(links, idx);
    }

    fn pop<L: Links + ?Sized>(&self, links: &L) -> Option<u32> {
        let _serialized = self.pop_lock.lock();
        // Acquire pairs with the pusher's Release CAS: we are about to read
        // the node's link and then own the context it names.
        let mut head = self.list.head.load(Ordering::Acquire);
        loop {
            if head == NIL {
                return None;
            }
            // Safe against ABA: only the lock holder removes nodes, so `head`
            // cannot leave and come back while we hold the lock; pushers only
            // add in front, which makes the CAS fail and we retry.
            let next = links.link(head).load(Ordering::Relaxed);
            match self.list.head.compare_exchange_weak(
                head,
                next,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(head),
                Err(now) => head = now,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Fully lock-free free list with a generation-tagged head.
#[derive(Debug)]
pub struct TaggedFreeList {
    /// `(generation << 32) | index`.
    head: AtomicU64,
}

impl Default for TaggedFreeList {
    fn default() -> Self {
        Self {
            head: AtomicU64::new(NIL as u64),
        }
    }
}

#[inline]
fn tagged(gen: u64, idx: u32) -> u64 {
    (gen << 32) | idx as u64
}

impl FreeList for TaggedFreeList {
    fn push<L: Links + ?Sized>(&self, links: &L, idx: u32) {
        let link = links.link(idx);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            link.store(head as u32, Ordering::Relaxed);
            // Release pairs with the Acquire in `pop`. The generation bump
            // makes any pop that read the old head fail its CAS.
            let new = tagged((head >> 32).wrapping_add(1), idx);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    fn pop<L: Links + ?Sized>(&self, links: &L) -> Option<u32> {
        // Acquire pairs with the pusher's Release CAS.
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let idx = head as u32;
            if idx == NIL {
                return None;
            }
            // This read may be stale if another thread popped `idx` (and even
            // pushed it back) meanwhile; then the generation differs and the
            // CAS below fails. The link word always exists (arena memory is
            // never freed while the list lives), so the read itself is sound.
            let next = links.link(idx).load(Ordering::Relaxed);
            let new = tagged((head >> 32).wrapping_add(1), next);
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(idx),
                Err(now) => head = now,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) as u32 == NIL
    }
}

#[cfg(all(test, not(rdmaxprt_loom)))]
mod tests {
    use super::*;

    fn links(n: usize) -> alloc::vec::Vec<AtomicU32> {
        (0..n).map(|_| AtomicU32::new(NIL)).collect()
    }

    #[test]
    fn release_list_push_reports_only_the_empty_edge() {
        let l = links(4);
        let list = ReleaseList::new();
        assert!(list.push(&l, 0));
        assert!(!list.push(&l, 1));
        assert!(!list.push(&l, 2));
        let taken: alloc::vec::Vec<u32> = list.take_all(&l).collect();
        assert_eq!(taken, [2, 1, 0]);
        assert!(list.is_empty());
        assert!(
            list.push(&l, 3),
            "after take_all the next push is an edge again"
        );
    }

    fn free_list_round_trip<F: FreeList + Default>() {
        let l = links(3);
        let f = F::default();
        assert_eq!(f.pop(&l), None);
        f.push(&l, 0);
        f.push(&l, 2);
        assert_eq!(f.pop(&l), Some(2));
        f.push(&l, 1);
        assert_eq!(f.pop(&l), Some(1));
        assert_eq!(f.pop(&l), Some(0));
        assert_eq!(f.pop(&l), None);
        assert!(f.is_empty());
    }

    #[test]
    fn locked_free_list_is_lifo_and_empties() {
        free_list_round_trip::<LockedFreeList>();
    }

    #[test]
    fn tagged_free_list_is_lifo_and_empties() {
        free_list_round_trip::<TaggedFreeList>();
    }
}
