//! The guard for a context between `get` and its post.

use super::SendCtxtLifecycle;
use crate::backend::PostError;
use crate::ctxt::SendCtxt;
use core::fmt;
use core::ops::{Deref, DerefMut};

/// A send context owned by the caller: build the reply in it, then
/// [`post`](OwnedCtxt::post) it. Dropping it unposted releases it (unmap,
/// pages, free list) on the spot: the forward path's own release.
#[must_use = "an owned send context must be posted (or dropped to release it)"]
pub struct OwnedCtxt<'a, L: SendCtxtLifecycle> {
    life: &'a L,
    idx: u32,
}

impl<L: SendCtxtLifecycle> fmt::Debug for OwnedCtxt<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedCtxt").field("idx", &self.idx).finish()
    }
}

/// A post that failed. `consumed == 0`: the context was released by the
/// forward path. Otherwise the device took part of the chain and the
/// context stays posted until its completion (or flush) releases it.
#[derive(Debug)]
pub struct PostFailed<E> {
    /// The backend's error.
    pub error: PostError<E>,
}

impl<E: fmt::Display> fmt::Display for PostFailed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

/// Which side handed a posted context to the release path (see
/// [`OwnedCtxt::post_committed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The post committed first: the Send's completion handler puts the
    /// context (the common case).
    Posted,
    /// The Send's completion was handled before the commit (completions
    /// polled on another thread, or a device that completes inside
    /// `post_send`): the poster put the context, after the completion
    /// handler had returned its SQ slots and woken the waiters.
    CompletedFirst,
}

/// A completed send context claimed for release: the proof that its slot
/// is in state RELEASING and owned by the holder. Only this crate makes
/// one (after the completion's `wr_id` was validated and the slot claimed,
/// or when a poster finds its completion came first); it is neither `Clone`
/// nor `Copy`, so each claim is handed to
/// [`SendCtxtLifecycle::complete`] exactly once.
#[derive(Debug)]
pub struct ClaimedCtxt {
    idx: u32,
}

impl ClaimedCtxt {
    /// The claim on slot `idx`, which the caller must have claimed.
    pub(crate) fn new(idx: u32) -> Self {
        Self { idx }
    }

    /// The claimed slot.
    pub fn index(&self) -> u32 {
        self.idx
    }
}

impl<'a, L: SendCtxtLifecycle> OwnedCtxt<'a, L> {
    pub(crate) fn new(life: &'a L, idx: u32) -> Self {
        Self { life, idx }
    }

    fn ptr(&self) -> *mut SendCtxt<L::Dev> {
        // SAFETY: this guard owns slot `idx` (OWNED state) until it is
        // posted or dropped, so no other thread touches the context.
        unsafe {
            self.life
                .pool()
                .with_ctxt(self.idx, |c| c as *mut SendCtxt<L::Dev>)
        }
    }

    /// The device, for mapping pages into this context.
    pub fn device(&self) -> &'a L::Dev {
        self.life.pool().device()
    }

    /// Posts the context: `post` receives the `wr_id` every WR of the chain
    /// must carry (the Send last and signaled) and the built context, and
    /// calls the backend. A completion may race with the return of `post`;
    /// the state machine makes whichever side comes second do the put.
    pub fn post<E>(
        self,
        post: impl FnOnce(u64, &SendCtxt<L::Dev>) -> Result<(), PostError<E>>,
    ) -> Result<(), PostFailed<E>> {
        self.post_committed(post).map(|_| ())
    }

    /// [`post`](Self::post), also saying which side did the put of a
    /// chain that went out: [`Committed::CompletedFirst`] when the Send's
    /// completion was handled before the commit, so this call handed the
    /// context to [`SendCtxtLifecycle::complete`] after the completion
    /// handler's wakes had run (a caller whose waiters wait for released
    /// contexts must wake them again).
    pub fn post_committed<E>(
        self,
        post: impl FnOnce(u64, &SendCtxt<L::Dev>) -> Result<(), PostError<E>>,
    ) -> Result<Committed, PostFailed<E>> {
        let life = self.life;
        let idx = self.idx;
        let ptr = self.ptr();
        core::mem::forget(self);
        let pool = life.pool();
        // SAFETY: still OWNED by us until `begin_post` publishes it.
        let sqes = unsafe { (*ptr).sqecount() };
        let wr_id = pool.begin_post(idx, sqes);
        // SAFETY: in POSTING state the completion side only flips the state
        // word and never touches the context, so we still own it here.
        let res = post(wr_id, unsafe { &*ptr });
        match res {
            Ok(()) => match pool.commit_post(idx) {
                None => Ok(Committed::Posted),
                Some(i) => {
                    life.complete(ClaimedCtxt::new(i));
                    Ok(Committed::CompletedFirst)
                }
            },
            Err(error) if error.consumed == 0 => {
                match pool.abort_post(idx) {
                    // Nothing was posted: the forward path releases.
                    // SAFETY: `abort_post` returned the slot to OWNED, and
                    // this guard (forgotten above) was its owner.
                    None => unsafe { pool.send_ctxt_release(idx) },
                    Some(i) => life.complete(ClaimedCtxt::new(i)),
                }
                Err(PostFailed { error })
            }
            Err(error) => {
                // Part of the chain is on the wire: its completion or flush
                // will release the context (or teardown's reclaim will).
                if let Some(i) = pool.commit_post(idx) {
                    life.complete(ClaimedCtxt::new(i));
                }
                Err(PostFailed { error })
            }
        }
    }
}

impl<L: SendCtxtLifecycle> Deref for OwnedCtxt<'_, L> {
    type Target = SendCtxt<L::Dev>;
    fn deref(&self) -> &Self::Target {
        // SAFETY: see `ptr`; the reference lives no longer than the guard.
        unsafe { &*self.ptr() }
    }
}

impl<L: SendCtxtLifecycle> DerefMut for OwnedCtxt<'_, L> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        // SAFETY: see `ptr`; `&mut self` makes this the only reference.
        unsafe { &mut *self.ptr() }
    }
}

impl<L: SendCtxtLifecycle> Drop for OwnedCtxt<'_, L> {
    fn drop(&mut self) {
        // SAFETY: the guard owns slot `idx` (OWNED) and is going away.
        unsafe { self.life.pool().send_ctxt_release(self.idx) };
    }
}
