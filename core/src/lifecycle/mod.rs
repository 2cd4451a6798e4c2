//! The send-context lifecycle seam: `get`, `put`, `drain`, `unmap`, and the
//! three policies that implement it on the same pool and counters.
//!
//! - [`Deferred`] (the seed, default): `put` is one lock-free push, plus an
//!   enqueue on the release list's empty -> non-empty edge; `drain` takes
//!   the whole list with one swap and releases it in a batch.
//! - [`Inline`]: `put` releases (unmaps) right on the completion path.
//! - [`Workqueue`] (std; the design the seed replaced): `put` queues the
//!   context's embedded work item on a shared pool of worker threads.

mod deferred;
mod inline;
mod owned;
#[cfg(all(feature = "std", not(rdmaxprt_loom)))]
mod workqueue;

pub use deferred::Deferred;
pub use inline::Inline;
pub use owned::{ClaimedCtxt, Committed, OwnedCtxt, PostFailed};
#[cfg(all(feature = "std", not(rdmaxprt_loom)))]
pub use workqueue::{Workqueue, WorkqueuePool};

use crate::backend::DmaDevice;
use crate::ctxt::SendCtxt;
use crate::llist::FreeList;
use crate::pool::{Claimed, CompletionError, CompletionGuard, SendCtxtPool};
use crate::stats::Stats;
use core::fmt;
use core::sync::atomic::Ordering;

/// Why `get` returned no context.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError<E> {
    /// Every context up to the cap is in use: wait for a Send completion
    /// (the SQ wait queue wakes you) and retry. Never a reason to close.
    AtCap,
    /// The backend could not allocate or map a new context.
    Alloc(E),
}

impl<E: fmt::Display> fmt::Display for GetError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::AtCap => f.write_str("send context pool at its cap; wait for completions"),
            GetError::Alloc(e) => write!(f, "send context allocation failed: {e}"),
        }
    }
}

/// The completion handler's hold on a lifecycle (see
/// [`SendCtxtLifecycle::completions`]): while it lives, no other thread
/// handles Send completions of this pool, so each `put` validates with
/// plain loads and costs one list push.
#[must_use = "completions are handled through `put`"]
pub struct SendCompletions<'a, L: SendCtxtLifecycle> {
    life: &'a L,
    guard: CompletionGuard<'a>,
}

impl<L: SendCtxtLifecycle> fmt::Debug for SendCompletions<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendCompletions")
            .field("policy", &L::POLICY)
            .finish_non_exhaustive()
    }
}

impl<L: SendCtxtLifecycle> SendCompletions<'_, L> {
    /// [`SendCtxtLifecycle::put`] under the held completion lock.
    #[inline]
    pub fn put(&mut self, wr_id: u64) -> Result<u32, CompletionError> {
        let (claimed, sqes) = self.claim(wr_id)?;
        if let Some(c) = claimed {
            self.life.complete(c);
        }
        Ok(sqes)
    }

    /// The validation half of [`put`](Self::put): the claim to hand to
    /// [`SendCtxtLifecycle::complete`] (`None` if the poster has not
    /// committed yet and will do it), and the SQ slots to give back.
    #[inline]
    pub(crate) fn claim(
        &mut self,
        wr_id: u64,
    ) -> Result<(Option<ClaimedCtxt>, u32), CompletionError> {
        let (claimed, sqes) = self.life.pool().claim_completed(&self.guard, wr_id)?;
        Ok(match claimed {
            Claimed::Release(idx) => (Some(ClaimedCtxt::new(idx)), sqes),
            Claimed::LeftToPoster => (None, sqes),
        })
    }
}

/// Which policy a lifecycle implements (for reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// [`Deferred`].
    Deferred,
    /// [`Workqueue`].
    Workqueue,
    /// [`Inline`].
    Inline,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Deferred => "deferred",
            Policy::Workqueue => "workqueue",
            Policy::Inline => "inline",
        })
    }
}

/// A policy name [`Policy::from_str`](core::str::FromStr::from_str) did
/// not recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownPolicy;

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown release policy (expected deferred, workqueue or inline)")
    }
}

impl core::str::FromStr for Policy {
    type Err = UnknownPolicy;

    /// `deferred`, `workqueue` or `inline` (what `Display` prints).
    fn from_str(s: &str) -> Result<Self, UnknownPolicy> {
        match s {
            "deferred" => Ok(Policy::Deferred),
            "workqueue" => Ok(Policy::Workqueue),
            "inline" => Ok(Policy::Inline),
            _ => Err(UnknownPolicy),
        }
    }
}

/// The send-context lifecycle.
pub trait SendCtxtLifecycle: Send + Sync + Sized {
    /// The device contexts are mapped with.
    type Dev: DmaDevice;
    /// The free-list flavour.
    type Free: FreeList;

    /// Which policy this is.
    const POLICY: Policy;

    /// The shared pool.
    fn pool(&self) -> &SendCtxtPool<Self::Dev, Self::Free>;

    /// Gets a context to build a reply in. Never allocates while a free one
    /// can be had; at the cap returns [`GetError::AtCap`] (Workqueue: first
    /// waits for contexts in transit on the workqueue, if any).
    #[doc(alias = "svc_rdma_send_ctxt_get")]
    fn get(
        &self,
    ) -> Result<OwnedCtxt<'_, Self>, GetError<<Self::Dev as crate::backend::ErrorType>::Error>>;

    /// The Send completion path: validate `wr_id` and hand the context to
    /// the policy's release path. A garbage, stale or duplicate `wr_id` is
    /// an error and touches nothing. Returns the SQ slots the context's
    /// chain held (its `sqecount`), for the caller to give back.
    ///
    /// Takes the completion lock for this one completion; a completion
    /// handler with a batch uses [`completions`](Self::completions) instead.
    #[inline]
    #[doc(alias = "svc_rdma_send_ctxt_put")]
    fn put(&self, wr_id: u64) -> Result<u32, CompletionError> {
        self.completions().put(wr_id)
    }

    /// Starts handling a batch of Send completions (one CQ poll's worth):
    /// one completion handler at a time per pool, like the kernel's one
    /// completion context per CQ. Other handlers wait until it is dropped.
    #[inline]
    fn completions(&self) -> SendCompletions<'_, Self> {
        SendCompletions {
            life: self,
            guard: self.pool().lock_completions(),
        }
    }

    /// The policy's action for a claimed, completed context (slot in state
    /// RELEASING, owned by the caller). Called by [`put`](Self::put), by the
    /// transport's Send completion handler and by a poster whose completion
    /// arrived before it committed.
    ///
    /// Only this crate can make a [`ClaimedCtxt`] (it is the proof that the
    /// slot was claimed), so safe code cannot hand over a context it still
    /// holds as an [`OwnedCtxt`]:
    ///
    /// ```compile_fail
    /// # use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
    /// fn forge<L: SendCtxtLifecycle>(life: &L) {
    ///     life.complete(0u32); // an index is not a claim
    /// }
    /// ```
    #[doc(alias = "svc_rdma_send_ctxt_put")]
    fn complete(&self, ctxt: ClaimedCtxt);

    /// Releases every completed context waiting for release; returns how
    /// many. Worker context: between RPCs, in `get`, after an SQ wait.
    #[doc(alias = "svc_rdma_send_ctxts_drain")]
    fn drain(&self) -> usize;

    /// The unmap step for one context: chunk resources, then SGEs 1..n
    /// (SGE 0 stays mapped). Counted in [`Stats`]. Pages are untouched.
    #[doc(alias = "svc_rdma_send_ctxt_unmap")]
    fn unmap(&self, ctxt: &mut SendCtxt<Self::Dev>) {
        self.pool().unmap_ctxt(ctxt);
    }

    /// Whether a `get` retried now can succeed without a further Send
    /// completion: a context is free, completed ones wait for a drain, or
    /// (Workqueue) some are in transit back to the free list. What a caller
    /// that got [`GetError::AtCap`] waits for, together with completions.
    fn may_progress(&self) -> bool {
        let p = self.pool();
        p.has_free() || p.has_pending_release() || p.has_hollow()
    }

    /// Teardown: returns once every completed context has been released
    /// (Workqueue: waits for its in-flight work items).
    fn flush(&self) {
        self.drain();
    }

    /// Live counters.
    fn stats(&self) -> &Stats {
        self.pool().stats()
    }
}

impl<D: DmaDevice, F: FreeList> SendCtxtPool<D, F> {
    /// The shared unmap step (see [`SendCtxtLifecycle::unmap`]).
    pub(crate) fn unmap_ctxt(&self, c: &mut SendCtxt<D>) {
        let (done, failed) = c.unmap(self.device());
        self.stats().unmaps.fetch_add(done, Ordering::Relaxed);
        if failed != 0 {
            tracing::warn!(
                cid = c.cid().seq,
                failed,
                "send ctxt: backend refused unmaps"
            );
        }
    }

    /// `get`'s common part: a free context, made whole if a failed
    /// allocation left its slot empty.
    pub(crate) fn get_free(&self) -> Option<Result<u32, <D as crate::backend::ErrorType>::Error>> {
        let idx = self.pop_free()?;
        // SAFETY: `pop_free` made us the slot's owner.
        Some(unsafe { self.populate(idx) }.map(|()| idx))
    }

    /// `get`'s last resort: reallocate into a hollow slot (one an idle
    /// shrink gave back), else allocate a new one under the cap.
    pub(crate) fn get_alloc(
        &self,
    ) -> Result<u32, GetError<<D as crate::backend::ErrorType>::Error>> {
        if let Some(idx) = self.pop_hollow() {
            // SAFETY: `pop_hollow` made us the slot's owner.
            return unsafe { self.populate(idx) }
                .map(|()| idx)
                .map_err(GetError::Alloc);
        }
        match self.alloc() {
            Ok(Some(idx)) => Ok(idx),
            Ok(None) => {
                Stats::bump(&self.stats().waits_at_cap);
                Err(GetError::AtCap)
            }
            Err(e) => Err(GetError::Alloc(e)),
        }
    }
}
