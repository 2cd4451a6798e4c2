//! Registered buffers lent to the caller: call arguments written in place
//! ([`LentBuf`], sent as the call's Read chunk without a copy) and reply
//! bytes read in place ([`LentBytes`] in a [`LentReply`], where the server
//! RDMA Wrote them). Each guard owns its region while the caller holds it
//! and gives it back to its client's chunk pool when dropped.
//!
//! What keeps the caller away from memory the NIC may touch: a guard
//! owns its region (moved out of the pool, which no call in flight can
//! then offer); starting a call consumes the [`LentBuf`], so the region of
//! a call in flight is reachable only from the client's call table; a
//! [`LentBytes`] is made only from a reply already received, whose Writes
//! the RC queue pair delivered before the reply's Send; a region returns
//! to the pool once, when its guard drops, or when its call's reply came
//! or its connection was drained.

#![allow(unsafe_code)]

use super::backend::RemoteRegion;
use super::types::{CallPath, ReplyBytes, ReplyPath};
use std::fmt;
use std::ops::{Deref, DerefMut, Range};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Where dropped guards put their regions back: the client's chunk pool
/// takes them in on its next [`take`](super::chunk::ChunkPool::take). A
/// guard may outlive its client (or be dropped on another thread); once
/// the client closed this, a region handed back is dropped (deregistered)
/// at once.
pub(super) struct Returns<R> {
    regions: Mutex<Vec<R>>,
    /// Whether `regions` may hold something (read without the lock).
    waiting: AtomicBool,
    closed: AtomicBool,
}

impl<R> Returns<R> {
    pub(super) fn new() -> Self {
        Self {
            regions: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// A guard gives `r` back.
    fn give(&self, r: R) {
        let mut q = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::Relaxed) {
            drop(q);
            drop(r);
            return;
        }
        q.push(r);
        self.waiting.store(true, Ordering::Release);
    }

    /// Moves every region given back since the last call into `out`.
    pub(super) fn take_all(&self, mut out: impl FnMut(R)) {
        if !self.waiting.load(Ordering::Acquire) {
            return;
        }
        let mut q = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        self.waiting.store(false, Ordering::Relaxed);
        for r in q.drain(..) {
            out(r);
        }
    }

    /// The client is gone: drop what is queued and every later return.
    pub(super) fn close(&self) {
        let mut q = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
        q.clear();
    }
}

/// A registered buffer lent to the caller for one call's arguments, from
/// [`RpcClient::lend`](super::RpcClient::lend): write the XDR-encoded
/// arguments in place (`&mut [u8]` through `DerefMut`), then pass it to
/// [`RpcClient::start_lent`](super::RpcClient::start_lent), which sends it
/// as the call's Read chunk without copying it (or inline, if it fits).
/// Dropping it unused gives it back to the client's pool.
///
/// Its bytes are not zeroed: a reused buffer holds what an earlier call of
/// the same client put there.
pub struct LentBuf<R: RemoteRegion> {
    region: Option<R>,
    /// Where the caller's bytes start in the region (room for the RPC
    /// call header in front, so the call goes as one Read chunk).
    start: usize,
    len: usize,
    home: Arc<Returns<R>>,
}

impl<R: RemoteRegion> LentBuf<R> {
    /// The caller's `len` bytes are the region's from `start`.
    pub(super) fn new(region: R, start: usize, len: usize, home: Arc<Returns<R>>) -> Self {
        debug_assert!(start + len <= region.len());
        Self {
            region: Some(region),
            start,
            len,
            home,
        }
    }

    /// The region (present until `into_parts`, which consumes the guard).
    fn region(&self) -> &R {
        match &self.region {
            Some(r) => r,
            None => unreachable!("a LentBuf holds its region until consumed"),
        }
    }

    /// Bytes the call will send (the length asked for, or
    /// [`set_len`](Self::set_len)'s).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the call would send no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most bytes this buffer holds (what its pool size class leaves
    /// after the room for the call header).
    pub fn capacity(&self) -> usize {
        self.region().len() - self.start
    }

    /// Sets how many bytes the call sends; `false` (unchanged) if `len`
    /// exceeds the [`capacity`](Self::capacity).
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        self.len = len;
        true
    }

    /// Whether this buffer came from the client whose pool is `home`.
    pub(super) fn is_from(&self, home: &Arc<Returns<R>>) -> bool {
        Arc::ptr_eq(&self.home, home)
    }

    /// The region, where the caller's bytes start in it and how many to
    /// send; the guard is spent (its region now belongs to the call).
    pub(super) fn into_parts(mut self) -> (R, usize, usize) {
        let (start, len) = (self.start, self.len);
        match self.region.take() {
            Some(r) => (r, start, len),
            None => unreachable!("a LentBuf holds its region until consumed"),
        }
    }
}

impl<R: RemoteRegion> Deref for LentBuf<R> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: 1. the guard owns the region, which no call offers (it
        // left the pool for this guard and goes back only when the guard
        // is dropped or consumed), so the peer does not touch it (given
        // the trust note on `RemoteRegion`); 2. nothing writes it through
        // `write_at`: the client never sees it while the guard holds it.
        let b = unsafe { self.region().host_bytes() };
        &b[self.start..self.start + self.len]
    }
}

impl<R: RemoteRegion> DerefMut for LentBuf<R> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let range = self.start..self.start + self.len;
        match &mut self.region {
            // SAFETY: as in `deref`: owned by this guard, offered by no
            // call in flight; `&mut self` excludes every other access.
            Some(r) => unsafe { &mut r.host_bytes_mut()[range] },
            None => unreachable!("a LentBuf holds its region until consumed"),
        }
    }
}

impl<R: RemoteRegion> Drop for LentBuf<R> {
    fn drop(&mut self) {
        if let Some(r) = self.region.take() {
            self.home.give(r);
        }
    }
}

impl<R: RemoteRegion> fmt::Debug for LentBuf<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LentBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Bytes the server wrote into a registered region of a finished call (a
/// Write chunk, or the results in a Reply chunk), read in place through
/// `Deref<Target = [u8]>`. Exactly as many bytes as the reply reported.
/// Dropping it gives the region back to the client's pool.
pub struct LentBytes<R: RemoteRegion> {
    region: Option<R>,
    range: Range<usize>,
    home: Arc<Returns<R>>,
}

impl<R: RemoteRegion> LentBytes<R> {
    /// `range` must lie inside `region`, written by a reply already
    /// received.
    pub(super) fn new(region: R, range: Range<usize>, home: Arc<Returns<R>>) -> Self {
        debug_assert!(range.start <= range.end && range.end <= region.len());
        Self {
            region: Some(region),
            range,
            home,
        }
    }

    /// Drops the first `n` bytes from the view (the RPC reply header in
    /// front of the results in a Reply chunk).
    pub(super) fn skip(&mut self, n: usize) {
        self.range.start = self.range.start.saturating_add(n).min(self.range.end);
    }
}

impl<R: RemoteRegion> Deref for LentBytes<R> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.region {
            Some(r) => {
                // SAFETY: 1. the region's call is finished (its reply was
                // received, after the RC QP delivered its Writes) and no
                // other call offers it while this guard owns it, so the
                // peer does not write it (trust note on `RemoteRegion`);
                // 2. nothing writes it through `write_at` meanwhile: the
                // client does not see it until the guard drops.
                let b = unsafe { r.host_bytes() };
                // `new` checked the range against the region.
                b.get(self.range.clone()).unwrap_or_default()
            }
            None => &[],
        }
    }
}

impl<R: RemoteRegion> Drop for LentBytes<R> {
    fn drop(&mut self) {
        if let Some(r) = self.region.take() {
            self.home.give(r);
        }
    }
}

impl<R: RemoteRegion> fmt::Debug for LentBytes<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LentBytes")
            .field("len", &self.range.len())
            .finish()
    }
}

/// The results of a lent reply: copied out of the receive buffer (an
/// inline reply, at most the inline threshold) or in place in the Reply
/// chunk.
pub(super) enum Results<R: RemoteRegion> {
    Inline(Vec<u8>),
    InPlace(LentBytes<R>),
}

/// A successful reply to a call started with
/// [`RpcClient::start_lent`](super::RpcClient::start_lent): the Write
/// chunk's bytes ([`bulk`](Self::bulk)) and a Reply chunk's results are
/// read where the server wrote them; the regions go back to the client's
/// pool when this (or the [`LentBytes`] taken out of it) is dropped.
pub struct LentReply<R: RemoteRegion> {
    /// The call's transaction id.
    pub xid: u32,
    /// How the call was sent.
    pub call_path: CallPath,
    /// How the reply came back.
    pub reply_path: ReplyPath,
    /// Credits the server granted in this reply.
    pub credits: u32,
    pub(super) results: Results<R>,
    pub(super) bulk: Option<LentBytes<R>>,
}

impl<R: RemoteRegion> LentReply<R> {
    /// The procedure's results (after the accepted-SUCCESS reply header).
    pub fn results(&self) -> &[u8] {
        match &self.results {
            Results::Inline(v) => v,
            Results::InPlace(b) => b,
        }
    }

    /// The bytes the server wrote into the Write chunk (exactly as many as
    /// it reported), if the call offered one.
    pub fn bulk(&self) -> Option<&[u8]> {
        self.bulk.as_deref()
    }

    /// Takes the Write chunk's bytes out, to keep them past this reply.
    pub fn take_bulk(&mut self) -> Option<LentBytes<R>> {
        self.bulk.take()
    }

    /// Copies the reply into a [`ReplyBytes`] (what
    /// [`RpcClient::wait`](super::RpcClient::wait) returns for a lent
    /// call): one copy of each part; this reply keeps its regions until
    /// dropped.
    pub fn to_owned_reply(&self) -> ReplyBytes {
        ReplyBytes {
            xid: self.xid,
            results: self.results().to_vec(),
            bulk: self.bulk().map(<[u8]>::to_vec),
            call_path: self.call_path,
            reply_path: self.reply_path,
            credits: self.credits,
        }
    }
}

impl<R: RemoteRegion> fmt::Debug for LentReply<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LentReply")
            .field("xid", &self.xid)
            .field("results", &self.results().len())
            .field("bulk", &self.bulk.as_ref().map(|b| b.len()))
            .field("call_path", &self.call_path)
            .field("reply_path", &self.reply_path)
            .finish()
    }
}
