//! The client's backend traits over real verbs (feature `verbs`):
//! [`VerbsMemory`] ([`RemoteMemory`] plus core's
//! [`DmaDevice`]) and [`VerbsWaitQp`]
//! (core's [`QueuePair`] plus [`CompletionWait`]). Both also serve the
//! server side: `runtime::Server::accept(memory, qp)` takes them as they
//! are, and so does `SvcRdmaXprt`.
//!
//! Why wrappers around `rdmaxprt_verbs::{VerbsDmaDevice, VerbsQp}` rather
//! than trait impls on them:
//! - a remote region needs the protection domain, which a
//!   `VerbsDmaDevice` does not hand out, and one pool chunk size cannot
//!   serve both 1 KiB receive buffers and 1 MiB chunk buffers: a
//!   [`VerbsMemory`] keeps two pools (small and large chunks) and the PD;
//! - [`CompletionWait`] must say whether a completion *can be polled*, and
//!   a CQ cannot be peeked: [`VerbsWaitQp`] asks `VerbsQp::poll_ahead`,
//!   which keeps what it polled for the next `poll_send`/`poll_recv`.
//!
//! # Remote regions
//! Each [`register_remote`](RemoteMemory::register_remote) maps fresh
//! (zeroed) memory and registers it as its own MR with local write, remote
//! read and remote write access; dropping the [`VerbsRegion`] deregisters
//! it, so the rkey stops working, as the trait asks. (The pools' rkeys are
//! never advertised.)
//!
//! # Completion waiting
//! Event mode when the QP's CQs were created with a
//! [`CompletionChannel`](rdmaxprt_verbs::CompletionChannel): poll, arm both
//! CQs (`ibv_req_notify_cq`), poll again (a completion may have slipped in
//! before the arm), sleep in `poll(2)` on the channel fd(s), then read and
//! acknowledge every pending channel event. Give each QP its own channel(s):
//! the events of other CQs on a shared channel are consumed too. Without
//! a channel (busy-poll CQs) the wait is a sleep-poll: poll, then sleep
//! [`SLEEP_POLL`], until a completion or the timeout.
//!
//! # Send with Invalidate
//! The server transport answers a call whose chunks all carry one handle
//! with Send-with-Invalidate of that rkey. On real verbs only an
//! invalidatable registration (a fast-registered MR or a type-2 memory
//! window) can be invalidated remotely; a plain `ibv_reg_mr` region, what
//! [`VerbsMemory`] registers, makes the peer's receive fail and the
//! connection with it. svcrdma uses Send-with-Invalidate only when the
//! client said it can take it (`RPCRDMA_CMP_F_SND_W_INV_OK` in its
//! connection private data); [`VerbsWaitQp`] plays that negotiation: it
//! posts a Send-with-Invalidate as a plain Send unless
//! [`VerbsWaitQp::allow_remote_invalidation`] was called for a peer that
//! registers invalidatable chunks.
//!
//! # Accounting
//! [`VerbsMemory::accounting`] counts live buffers, live mappings and live
//! remote regions: what a leak check at teardown compares against
//! ([`Accounting::is_clean`]).
#![allow(unsafe_code)]

use super::backend::{CompletionWait, RemoteMemory, RemoteRegion};
use rdmaxprt_core::backend::{self as cb, DmaBuf, DmaDevice, ErrorType, QueuePair};
use rdmaxprt_verbs::{
    sys, Access, CmConnHandle, CompletionQueue, MemoryPool, PoolBuf, ProtectionDomain,
    VerbsDmaDevice, VerbsError, VerbsQp,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a sleep-poll wait (CQs without a completion channel) sleeps
/// between polls.
pub const SLEEP_POLL: Duration = Duration::from_micros(50);

/// Longest single sleep of an event-mode wait before it re-polls anyway.
const EVENT_SLICE: Duration = Duration::from_millis(100);

/// Sizes of a [`VerbsMemory`]'s two registered pools. Buffers of up to
/// `small_chunk` bytes come from the small pool, larger ones (up to
/// `large_chunk`) from the large pool; each buffer takes a whole chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Bytes per small chunk (receive buffers, header buffers, inline
    /// reply pages).
    pub small_chunk: usize,
    /// Number of small chunks.
    pub small_chunks: usize,
    /// Bytes per large chunk (Read chunk sinks, staged Write and Reply
    /// chunk payloads).
    pub large_chunk: usize,
    /// Number of large chunks.
    pub large_chunks: usize,
}

impl Default for MemoryConfig {
    /// 1024 chunks of 4 KiB and 8 of 2 MiB (20 MiB registered): room for a
    /// transport's receive ring and send contexts plus a few 1 MiB calls in
    /// flight.
    fn default() -> Self {
        Self {
            small_chunk: 4096,
            small_chunks: 1024,
            large_chunk: 2 << 20,
            large_chunks: 8,
        }
    }
}

/// Live objects of a [`VerbsMemory`] (all its clones together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Buffers allocated and not yet dropped.
    pub live_bufs: usize,
    /// `dma_map`s not yet undone by a `dma_unmap`.
    pub live_mappings: usize,
    /// Remote regions registered and not yet dropped (deregistered).
    pub live_regions: usize,
    /// `dma_unmap`s of something not mapped (always a bug of the caller).
    pub bad_unmaps: usize,
}

impl Accounting {
    /// Nothing live and no bad unmap: what a clean teardown leaves.
    pub fn is_clean(&self) -> bool {
        *self == Accounting::default()
    }
}

#[derive(Debug, Default)]
struct Counters {
    bufs: AtomicUsize,
    mappings: AtomicUsize,
    regions: AtomicUsize,
    bad_unmaps: AtomicUsize,
}

struct MemInner {
    pd: ProtectionDomain,
    small: VerbsDmaDevice,
    large: VerbsDmaDevice,
    small_chunk: usize,
    large_lkey: u32,
    counters: Arc<Counters>,
}

/// Memory of one side of a verbs connection: DMA buffers from two
/// pre-registered pools (core's `DmaDevice`: mapping is bookkeeping, as
/// in `VerbsDmaDevice`) and remote regions registered one MR each (the
/// client's [`RemoteMemory`]). Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct VerbsMemory {
    inner: Arc<MemInner>,
}

impl std::fmt::Debug for VerbsMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsMemory")
            .field("pd", &self.inner.pd)
            .field("small", &self.inner.small)
            .field("large", &self.inner.large)
            .field("accounting", &self.accounting())
            .finish()
    }
}

impl VerbsMemory {
    /// Registers the two pools of `cfg` in `pd` (the PD of the QP the
    /// memory is used with).
    pub fn new(pd: &ProtectionDomain, cfg: MemoryConfig) -> Result<Self, VerbsError> {
        let small = VerbsDmaDevice::new(pd, cfg.small_chunk, cfg.small_chunks)?;
        let large = VerbsDmaDevice::new(pd, cfg.large_chunk, cfg.large_chunks.max(1))?;
        // The large pool's lkey routes an unmap: learn it from one mapping.
        let probe = large.alloc_buf(1)?;
        let sge = large.dma_map(&probe, 0, 1)?;
        large.dma_unmap(sge)?;
        drop(probe);
        Ok(Self {
            inner: Arc::new(MemInner {
                pd: pd.clone(),
                small,
                large,
                small_chunk: cfg.small_chunk.max(1),
                large_lkey: sge.lkey,
                counters: Arc::default(),
            }),
        })
    }

    /// The protection domain everything is registered in.
    pub fn pd(&self) -> &ProtectionDomain {
        &self.inner.pd
    }

    /// Live buffers, mappings and regions right now.
    pub fn accounting(&self) -> Accounting {
        let c = &self.inner.counters;
        Accounting {
            live_bufs: c.bufs.load(Ordering::SeqCst),
            live_mappings: c.mappings.load(Ordering::SeqCst),
            live_regions: c.regions.load(Ordering::SeqCst),
            bad_unmaps: c.bad_unmaps.load(Ordering::SeqCst),
        }
    }

    fn pool_of(&self, large: bool) -> &VerbsDmaDevice {
        if large {
            &self.inner.large
        } else {
            &self.inner.small
        }
    }
}

/// A chunk of one of a [`VerbsMemory`]'s pools; returned on drop.
pub struct VerbsBuf {
    buf: PoolBuf,
    large: bool,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for VerbsBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsBuf")
            .field("buf", &self.buf)
            .field("large", &self.large)
            .finish()
    }
}

impl VerbsBuf {
    /// The buffer's device address.
    pub fn addr(&self) -> u64 {
        self.buf.addr()
    }
}

impl Drop for VerbsBuf {
    fn drop(&mut self) {
        self.counters.bufs.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DmaBuf for VerbsBuf {
    fn as_slice(&self) -> &[u8] {
        self.buf.as_slice()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut_slice()
    }
}

impl ErrorType for VerbsMemory {
    type Error = VerbsError;
}

impl DmaDevice for VerbsMemory {
    type Buf = VerbsBuf;

    fn alloc_buf(&self, len: usize) -> Result<VerbsBuf, VerbsError> {
        let large = len > self.inner.small_chunk;
        let buf = self.pool_of(large).alloc_buf(len)?;
        self.inner.counters.bufs.fetch_add(1, Ordering::SeqCst);
        Ok(VerbsBuf {
            buf,
            large,
            counters: Arc::clone(&self.inner.counters),
        })
    }

    fn dma_map(&self, buf: &VerbsBuf, offset: usize, len: usize) -> Result<cb::Sge, VerbsError> {
        let sge = self.pool_of(buf.large).dma_map(&buf.buf, offset, len)?;
        self.inner.counters.mappings.fetch_add(1, Ordering::SeqCst);
        Ok(sge)
    }

    fn dma_unmap(&self, sge: cb::Sge) -> Result<(), VerbsError> {
        let large = sge.lkey == self.inner.large_lkey;
        match self.pool_of(large).dma_unmap(sge) {
            Ok(()) => {
                self.inner.counters.mappings.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.inner
                    .counters
                    .bad_unmaps
                    .fetch_add(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

/// Memory registered for remote Read and Write: its own mapping and MR,
/// deregistered on drop.
pub struct VerbsRegion {
    mr: MemoryPool,
    len: usize,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for VerbsRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsRegion")
            .field("mr", &self.mr)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for VerbsRegion {
    fn drop(&mut self) {
        self.counters.regions.fetch_sub(1, Ordering::SeqCst);
    }
}

impl VerbsRegion {
    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }
}

impl RemoteMemory for VerbsMemory {
    type Region = VerbsRegion;

    fn register_remote(&self, len: usize) -> Result<VerbsRegion, VerbsError> {
        // A fresh anonymous mapping is zeroed; REMOTE_WRITE needs LOCAL_WRITE.
        let mr = MemoryPool::new(&self.inner.pd, len.max(1), Access::ALL)?;
        self.inner.counters.regions.fetch_add(1, Ordering::SeqCst);
        Ok(VerbsRegion {
            mr,
            len,
            counters: Arc::clone(&self.inner.counters),
        })
    }
}

impl RemoteRegion for VerbsRegion {
    fn rkey(&self) -> u32 {
        self.mr.rkey()
    }

    fn addr(&self) -> u64 {
        self.mr.addr()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn write_at(&self, offset: usize, data: &[u8]) -> bool {
        self.in_bounds(offset, data.len()) && self.mr.write(offset, data).is_ok()
    }

    fn read_at(&self, offset: usize, out: &mut [u8]) -> bool {
        self.in_bounds(offset, out.len()) && self.mr.read(offset, out).is_ok()
    }
}

/// A [`VerbsQp`] that can sleep until a completion is pollable
/// ([`CompletionWait`]): event mode on CQs with a completion channel,
/// sleep-poll otherwise (see the module docs). Completions a wait polled
/// stay in the `VerbsQp`'s stash and come out first from the next polls.
pub struct VerbsWaitQp {
    qp: VerbsQp,
    remote_invalidation: bool,
    cm: Option<CmConnHandle>,
}

impl std::fmt::Debug for VerbsWaitQp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsWaitQp")
            .field("qp", &self.qp)
            .field("event_mode", &self.is_event_mode())
            .finish_non_exhaustive()
    }
}

/// The completion channel `cq` was created with (null: none).
fn channel_of(cq: &CompletionQueue) -> *mut sys::ibv_comp_channel {
    // SAFETY: `as_raw` is the live CQ (its owner, the QP, outlives this
    // call); `channel` is written by ibv_create_cq and never changes.
    unsafe { (*cq.as_raw()).channel }
}

/// Reads and acknowledges every event pending on `ch`.
fn consume_events(ch: *mut sys::ibv_comp_channel) {
    loop {
        let mut cq: *mut sys::ibv_cq = std::ptr::null_mut();
        let mut ctx: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: `ch` is the live channel of one of our CQs; its fd is
        // non-blocking (rdmaxprt_verbs::CompletionChannel::new makes it
        // so), so this returns -1 (EAGAIN) once nothing is pending. The
        // out-pointers are valid locals.
        let ret = unsafe { sys::ibv_get_cq_event(ch, &mut cq, &mut ctx) };
        if ret != 0 || cq.is_null() {
            return;
        }
        // SAFETY: `cq` is the live CQ the event was for; one event read,
        // one acknowledged (so its ibv_destroy_cq will not wait).
        unsafe { sys::ibv_ack_cq_events(cq, 1) };
    }
}

impl VerbsWaitQp {
    /// Wraps `qp` (separate send and receive CQs, as `VerbsQp` requires).
    pub fn new(qp: VerbsQp) -> Self {
        Self {
            qp,
            remote_invalidation: false,
            cm: None,
        }
    }

    /// The QP's rdma_cm connection: [`drain_qp`](QueuePair::drain_qp)
    /// disconnects it first (`rdma_disconnect`, as svcrdma's teardown
    /// does), so the peer learns at once that the connection is gone.
    pub fn with_cm_connection(mut self, cm: CmConnHandle) -> Self {
        self.cm = Some(cm);
        self
    }

    /// The wrapped queue pair.
    pub fn inner(&self) -> &VerbsQp {
        &self.qp
    }

    /// Posts Send-with-Invalidate as asked (default: as a plain Send): only
    /// for a peer whose chunk registrations can be invalidated remotely
    /// (see the module docs).
    pub fn allow_remote_invalidation(mut self, allow: bool) -> Self {
        self.remote_invalidation = allow;
        self
    }

    /// Whether both CQs have a completion channel (event-mode waits).
    pub fn is_event_mode(&self) -> bool {
        let q = self.qp.inner();
        !channel_of(q.send_cq()).is_null() && !channel_of(q.recv_cq()).is_null()
    }

    /// Forces the QP into the error state (a fault, not a drain): posted
    /// work requests flush, later ones fail or flush.
    pub fn force_error(&self) -> Result<(), VerbsError> {
        self.qp.inner().set_error()
    }

    /// Polls both CQs ahead (into the `VerbsQp`'s own stashes, handed out
    /// first by the next polls); whether a completion is pollable. A poll
    /// error counts as pollable: the caller's poll will report it.
    fn fill(&self) -> bool {
        self.qp.poll_ahead().unwrap_or(true)
    }

    /// One event-mode sleep of at most `left`: arm both CQs, re-poll, then
    /// sleep on the channel fds and consume their events. Whether a
    /// completion is stashed.
    fn event_sleep(&self, left: Duration) -> bool {
        let q = self.qp.inner();
        if q.send_cq().req_notify(false).is_err() || q.recv_cq().req_notify(false).is_err() {
            std::thread::sleep(left.min(SLEEP_POLL));
            return self.fill();
        }
        if self.fill() {
            return true;
        }
        let mut chans = vec![channel_of(q.send_cq())];
        let recv_ch = channel_of(q.recv_cq());
        if recv_ch != chans[0] {
            chans.push(recv_ch);
        }
        let mut fds: Vec<libc::pollfd> = chans
            .iter()
            .map(|&ch| libc::pollfd {
                // SAFETY: `ch` is the live channel of one of our CQs.
                fd: unsafe { (*ch).fd },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.min(EVENT_SLICE).as_millis().max(1) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r > 0 {
            for (fd, &ch) in fds.iter().zip(&chans) {
                if fd.revents != 0 {
                    consume_events(ch);
                }
            }
        }
        self.fill()
    }
}

impl CompletionWait for VerbsWaitQp {
    fn arm_completions(&self) -> bool {
        let q = self.qp.inner();
        self.is_event_mode()
            && q.send_cq().req_notify(false).is_ok()
            && q.recv_cq().req_notify(false).is_ok()
    }

    fn wait_for_completions(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let event = self.is_event_mode();
        loop {
            if self.fill() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if event {
                if self.event_sleep(left) {
                    return true;
                }
            } else {
                std::thread::sleep(left.min(SLEEP_POLL));
            }
        }
    }
}

impl ErrorType for VerbsWaitQp {
    type Error = VerbsError;
}

impl QueuePair for VerbsWaitQp {
    fn caps(&self) -> cb::Caps {
        self.qp.caps()
    }

    unsafe fn post_send(&self, chain: &[cb::SendWr<'_>]) -> Result<(), cb::PostError<VerbsError>> {
        let inv = |w: &cb::SendWr<'_>| matches!(w.op, cb::WrOp::SendInv { .. });
        if self.remote_invalidation || !chain.iter().any(inv) {
            // SAFETY: the caller upholds the trait's contract, which is ours.
            return unsafe { self.qp.post_send(chain) };
        }
        let plain: Vec<cb::SendWr<'_>> = chain
            .iter()
            .map(|w| cb::SendWr {
                op: if inv(w) { cb::WrOp::Send } else { w.op },
                ..*w
            })
            .collect();
        // SAFETY: the same work requests over the same memory as the
        // caller's (only the opcode differs), so the caller's guarantees
        // cover them.
        unsafe { self.qp.post_send(&plain) }
    }

    unsafe fn post_recv(&self, wrs: &[cb::RecvWr]) -> Result<(), cb::PostError<VerbsError>> {
        // SAFETY: the caller upholds the trait's contract, which is ours.
        unsafe { self.qp.post_recv(wrs) }
    }

    fn poll_send(&self, out: &mut [cb::Wc]) -> Result<usize, VerbsError> {
        self.qp.poll_send(out)
    }

    fn poll_recv(&self, out: &mut [cb::Wc]) -> Result<usize, VerbsError> {
        self.qp.poll_recv(out)
    }

    fn drain_qp(&self) -> Result<(), VerbsError> {
        if let Some(cm) = &self.cm {
            // Already disconnected (by the peer, or an earlier drain) is
            // fine: the QP is in error either way.
            if let Err(e) = cm.disconnect() {
                tracing::debug!(%e, "rdma_disconnect before the drain");
            }
        }
        // The drained completions join the VerbsQp's stash, after any
        // polled ahead: order is kept.
        self.qp.drain_qp()
    }
}
