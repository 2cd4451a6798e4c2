//! The per-connection transport (`svcxprt_rdma`): receive contexts, the
//! send-context lifecycle, SQ accounting, RPC-over-RDMA v1 (RFC 8166);
//! `recvfrom` / `sendto` / `release_ctxt` / `close` / `free`.
//!
//! The worker that owns the transport (BUSY) calls [`SvcRdmaXprt::recvfrom`],
//! dispatches, [`SvcRdmaXprt::sendto`], then [`SvcRdmaXprt::release_ctxt`].
//! Completion pollers call [`SvcRdmaXprt::poll`] (or the per-completion
//! handlers). Teardown: [`SvcRdmaXprt::close`], then once no poller or
//! worker uses it, [`SvcRdmaXprt::free`].

mod error;
mod read;
mod recv;
mod send;

pub use error::XprtError;
pub use read::CallMeta;

use crate::backend::{DmaDevice, ErrorType, QueuePair, RecvWr, Wc, WcStatus};
use crate::lifecycle::{SendCompletions, SendCtxtLifecycle};
use crate::rpcrdma::{self, decode_header, Limits, Proc};
use crate::spin::SpinLock;
use crate::sq::SqAccount;
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use read::ReadCtxt;
use recv::{RecvQueue, RecvVerdict};

/// Low-32-bit tag of work requests that are not send contexts.
pub(crate) const TAG: u32 = 1 << 31;
/// `wr_id` of unsignaled chunk Writes (only ever seen when flushed).
pub(crate) const WR_ID_IGNORE: u64 = u32::MAX as u64;

/// Transport sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XprtConfig {
    /// Credits granted to the client (concurrent calls).
    pub credits: u32,
    /// Receives reposted per batch.
    pub recv_batch: u32,
    /// Receive buffer size = the largest inline call accepted.
    pub max_inline_recv: usize,
    /// Largest inline reply (the client's receive buffer).
    pub max_inline_send: usize,
    /// Decoder limits for chunk lists.
    pub limits: Limits,
    /// Largest Read chunk total pulled for one call.
    pub max_read_bytes: u64,
    /// Inline replies up to this many bytes are copied into the header
    /// buffer instead of being mapped (the kernel's pull-up threshold is
    /// half the default inline size). 0 maps every reply.
    pub pullup_threshold: usize,
    /// Reply with Send-with-Invalidate when a call's chunks all carry one
    /// rkey. Only for a client that said it can take it (the kernel checks
    /// `RPCRDMA_CMP_F_SND_W_INV_OK` in the connection's private data): a
    /// peer whose chunk memory is a plain MR fails the receive. Off by
    /// default.
    pub send_with_invalidate: bool,
}

impl Default for XprtConfig {
    fn default() -> Self {
        Self {
            credits: 64,
            recv_batch: 8,
            max_inline_recv: rpcrdma::DEFAULT_INLINE_THRESHOLD,
            max_inline_send: rpcrdma::DEFAULT_INLINE_THRESHOLD,
            limits: Limits::DEFAULT,
            max_read_bytes: Limits::DEFAULT.max_chunk_bytes * 2,
            pullup_threshold: rpcrdma::DEFAULT_INLINE_THRESHOLD / 2,
            send_with_invalidate: false,
        }
    }
}

/// A call received and ready for dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvdCall {
    /// What the reply needs from the call's transport header.
    pub meta: CallMeta,
    /// The complete RPC call message (Read chunks already pulled in).
    pub msg: Vec<u8>,
}

/// Transport counters beyond the send-context pool's.
#[derive(Debug, Default)]
pub struct XprtCounters {
    /// Calls handed up.
    pub calls: AtomicU64,
    /// Replies posted.
    pub replies: AtomicU64,
    /// RDMA_ERROR replies sent (ERR_VERS, ERR_CHUNK).
    pub error_replies: AtomicU64,
    /// Malformed headers dropped without reply.
    pub dropped: AtomicU64,
    /// Calls whose Read chunks were pulled.
    pub read_calls: AtomicU64,
    /// Completions with bogus `wr_id`s.
    pub bogus_completions: AtomicU64,
    /// Reply chains the device took only part of (the transport closed;
    /// the context is reclaimed at teardown).
    pub partial_posts: AtomicU64,
}

/// What [`SvcRdmaXprt::free`] found at teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TeardownReport {
    /// Send contexts no completion released (released by reclaim after
    /// the QP drain): chains that failed part-way (their Send never went
    /// out, see [`XprtCounters::partial_posts`]) plus any completion a
    /// backend lost. More than `partial_posts` means the latter.
    pub reclaimed_send: usize,
    /// Receives still marked posted after the drain.
    pub stuck_recvs: u32,
    /// Read contexts released at teardown.
    pub reads_released: usize,
    /// The send-context counters after the final drain and reclaim (so
    /// they include the contexts teardown released).
    pub send_stats: crate::stats::StatsSnapshot,
}

/// Read contexts: a small slab behind a spin lock (the kernel also locks
/// its read-complete queue).
struct Reads<B> {
    slots: Vec<Option<ReadCtxt<B>>>,
    free: Vec<u32>,
    ready: VecDeque<u32>,
}

/// One RPC-over-RDMA connection, server side.
pub struct SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair,
    E: Enqueue,
    W: WaitQueue,
{
    cfg: XprtConfig,
    qp: Q,
    send: L,
    sq: SqAccount<W>,
    recv: RecvQueue<L::Dev>,
    reads_lock: SpinLock,
    reads: UnsafeCell<Reads<<L::Dev as DmaDevice>::Buf>>,
    xprt: E,
    counters: XprtCounters,
    max_send_sge: u32,
}

// SAFETY: `reads` is only accessed with `reads_lock` held (see
// `with_reads`); every other field is Sync on its own.
unsafe impl<L, Q, E, W> Sync for SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair + Sync,
    E: Enqueue,
    W: WaitQueue,
    <L::Dev as DmaDevice>::Buf: Send,
    L::Dev: Sync,
{
}

type DevError<L> = <<L as SendCtxtLifecycle>::Dev as ErrorType>::Error;

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue + Default,
{
    /// Builds the transport on a connected `qp`, with `send` as its send
    /// lifecycle (whose pool maps with the device) and `xprt` as its hook
    /// into the runtime. Preallocates `2 x credits + batch` receive
    /// contexts and posts as many as the RQ holds.
    pub fn new(cfg: XprtConfig, qp: Q, send: L, xprt: E) -> Result<Self, XprtError<DevError<L>>> {
        let caps = qp.caps();
        let count = cfg
            .credits
            .saturating_mul(2)
            .saturating_add(cfg.recv_batch)
            .max(1);
        let recv = RecvQueue::new(send.pool().device(), count, cfg.max_inline_recv)
            .map_err(XprtError::Backend)?;
        let t = Self {
            cfg,
            sq: SqAccount::new(caps.sq_depth),
            max_send_sge: caps.max_send_sge.max(1),
            qp,
            send,
            recv,
            reads_lock: SpinLock::new(),
            reads: UnsafeCell::new(Reads {
                slots: Vec::new(),
                free: Vec::new(),
                ready: VecDeque::new(),
            }),
            xprt,
            counters: XprtCounters::default(),
        };
        t.post_recvs(caps.rq_depth.min(count))?;
        Ok(t)
    }
}

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    fn with_reads<R>(&self, f: impl FnOnce(&mut Reads<<L::Dev as DmaDevice>::Buf>) -> R) -> R {
        let _g = self.reads_lock.lock();
        // SAFETY: the lock is held; this is the only reference.
        f(unsafe { &mut *self.reads.get() })
    }

    /// The configuration.
    pub fn config(&self) -> &XprtConfig {
        &self.cfg
    }

    /// The send-context lifecycle (its pool, counters).
    pub fn send_lifecycle(&self) -> &L {
        &self.send
    }

    /// The SQ accounting.
    pub fn sq(&self) -> &SqAccount<W> {
        &self.sq
    }

    /// The queue pair.
    pub fn qp(&self) -> &Q {
        &self.qp
    }

    /// Transport counters.
    pub fn counters(&self) -> &XprtCounters {
        &self.counters
    }

    /// The transport flags.
    pub fn flags(&self) -> &XprtFlags {
        self.xprt.flags()
    }

    /// `svc_rdma_has_wspace`: false while anyone waits for SQ space.
    pub fn has_wspace(&self) -> bool {
        self.sq.has_wspace()
    }

    /// Receives posted right now.
    pub fn recvs_posted(&self) -> u32 {
        self.recv.posted()
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Posts up to `max` receives.
    fn post_recvs(&self, max: u32) -> Result<(), XprtError<DevError<L>>> {
        let mut wrs: Vec<RecvWr> = Vec::with_capacity(max as usize);
        self.recv.take_for_post(max, &mut wrs);
        if wrs.is_empty() {
            return Ok(());
        }
        // SAFETY: each receive buffer stays mapped and untouched by the host
        // until its completion is polled (`RecvQueue` only reads a buffer
        // after its completion moved it to `ready`), and buffers are freed
        // only in `free`, after the QP is drained.
        match unsafe { self.qp.post_recv(&wrs) } {
            Ok(()) => Ok(()),
            Err(e) => {
                self.recv.unpost(&wrs[e.consumed.min(wrs.len())..]);
                Err(XprtError::Backend(e.error))
            }
        }
    }

    /// Reposts receives in batches once a batch worth has been consumed.
    fn refresh_recvs(&self) -> Result<(), XprtError<DevError<L>>> {
        let target = self
            .cfg
            .credits
            .saturating_add(self.cfg.recv_batch)
            .min(self.qp.caps().rq_depth);
        let missing = target.saturating_sub(self.recv.posted());
        if missing >= self.cfg.recv_batch || missing == target {
            self.post_recvs(missing)?;
        }
        Ok(())
    }

    /// Receive completion handler: queue the receive, set DATA, enqueue.
    /// A failed or flushed receive marks the transport for close.
    pub fn handle_recv_wc(&self, wc: &Wc) {
        match self.recv.complete(wc.wr_id, wc.status, wc.byte_len) {
            RecvVerdict::Queued => {}
            RecvVerdict::Failed => {
                self.flags().set(XprtFlags::CLOSE);
            }
            RecvVerdict::Bogus => {
                Self::bump(&self.counters.bogus_completions);
                return;
            }
        }
        self.flags().set(XprtFlags::DATA);
        self.xprt.enqueue();
    }

    /// Send Queue completion handler: Send completions return their SQ
    /// slots then `put` the context; Read completions queue the call for
    /// `recvfrom`; flushed unsignaled Writes are ignored.
    pub fn handle_send_wc(&self, wc: &Wc) {
        self.handle_send_wc_in(&mut self.send.completions(), wc);
    }

    /// [`handle_send_wc`](Self::handle_send_wc) within a poll batch that
    /// holds the completion lock.
    fn handle_send_wc_in(&self, cq: &mut SendCompletions<'_, L>, wc: &Wc) {
        let low = wc.wr_id as u32;
        if wc.wr_id == WR_ID_IGNORE {
            return;
        }
        if low & TAG != 0 {
            self.read_done(low & !TAG, wc.status);
            return;
        }
        if wc.status != WcStatus::Success {
            // A flush or error: the connection is gone; still release.
            self.flags().set(XprtFlags::CLOSE);
        }
        match cq.put(wc.wr_id) {
            // Slots back first and waiters woken, then nothing else: the
            // context waits on the release list for a worker.
            Ok(sqes) => self.sq.release(sqes),
            Err(_) => Self::bump(&self.counters.bogus_completions),
        }
    }

    /// Polls both completion queues, up to `budget` completions each, and
    /// runs the handlers. Returns how many completions were handled.
    pub fn poll(&self, budget: usize) -> Result<usize, XprtError<DevError<L>>> {
        let mut wcs = [Wc {
            wr_id: 0,
            status: WcStatus::Success,
            opcode: crate::backend::WcOpcode::Unknown,
            byte_len: 0,
            invalidated_rkey: None,
        }; 16];
        let mut total = 0;
        while total < budget {
            let n = self.qp.poll_send(&mut wcs).map_err(XprtError::Backend)?;
            if n != 0 {
                // One completion-lock round trip per poll batch.
                let mut cq = self.send.completions();
                for wc in &wcs[..n] {
                    self.handle_send_wc_in(&mut cq, wc);
                }
            }
            let m = self.qp.poll_recv(&mut wcs).map_err(XprtError::Backend)?;
            for wc in &wcs[..m] {
                self.handle_recv_wc(wc);
            }
            total += n + m;
            if n + m == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// `svc_rdma_recvfrom`: the next call, if any. Pulled Read chunks come
    /// first, then receives in arrival order. Clears DATA, then re-checks
    /// both queues (a completion may have landed between the dequeue and
    /// the clear) and sets DATA again if so. Malformed headers are answered
    /// with RDMA_ERROR or dropped here; `Ok(None)` then means "nothing for
    /// the service".
    pub fn recvfrom(&self) -> Result<Option<RecvdCall>, XprtError<DevError<L>>> {
        if self.flags().test(XprtFlags::CLOSE) {
            return Err(XprtError::Closed);
        }
        self.flags().clear(XprtFlags::DATA);
        if let Some(call) = self.take_read_complete() {
            self.recheck();
            return Ok(Some(call));
        }
        loop {
            let got = self.recv.take_ready(|bytes| self.on_receive(bytes));
            let Some(result) = got else { break };
            self.refresh_recvs()?;
            match result? {
                Some(call) => {
                    self.recheck();
                    return Ok(Some(call));
                }
                // Answered with an error, dropped, or waiting for Reads:
                // look at the next receive.
                None => continue,
            }
        }
        self.refresh_recvs()?;
        self.recheck();
        Ok(None)
    }

    fn recheck(&self) {
        if self.recv.has_ready() || self.with_reads(|r| !r.ready.is_empty()) {
            self.flags().set(XprtFlags::DATA);
        }
    }

    /// Decodes one received message; answers bad ones.
    fn on_receive(&self, bytes: &[u8]) -> Result<Option<RecvdCall>, XprtError<DevError<L>>> {
        let h = match decode_header(bytes, &self.cfg.limits) {
            Ok(h) => h,
            Err(e) => {
                let xid = rpcrdma::peek_xid(bytes);
                tracing::debug!(?e, ?xid, "malformed transport header");
                return match (e.reply_with().rdma_error(), xid) {
                    (Some(err), Some(xid)) => {
                        self.send_error(xid, err)?;
                        Ok(None)
                    }
                    _ => {
                        Self::bump(&self.counters.dropped);
                        Ok(None)
                    }
                };
            }
        };
        match h.proc() {
            Proc::Msg | Proc::NoMsg => {}
            // RDMA_DONE and RDMA_ERROR from a client need no answer.
            _ => {
                Self::bump(&self.counters.dropped);
                return Ok(None);
            }
        }
        let meta = CallMeta::from_header(&h);
        if !h.read_list().is_empty() {
            return self.start_reads(&h, meta, bytes).map(|()| None);
        }
        let Some(body) = h.body_offset().and_then(|o| bytes.get(o..)) else {
            self.send_error(meta.xid, rpcrdma::RdmaError::Chunk)?;
            return Ok(None);
        };
        Self::bump(&self.counters.calls);
        Ok(Some(RecvdCall {
            meta,
            msg: body.to_vec(),
        }))
    }

    /// `xpo_release_ctxt`: between RPCs, drain the send release list.
    pub fn release_ctxt(&self) -> usize {
        self.send.drain()
    }

    /// Marks the transport closing: no new posts, every SQ waiter wakes,
    /// and the runtime is asked to schedule the transport so a worker sees
    /// CLOSE and arranges [`free`](Self::free).
    pub fn close(&self) {
        // CLOSE may already be set (a flushed receive sets it): still close
        // the SQ so waiters wake; enqueue only on the first close.
        let already = self.flags().set(XprtFlags::CLOSE);
        self.sq.close();
        if !already {
            self.xprt.enqueue();
        }
    }

    /// Teardown in the kernel's order: drain the QP (every posted WR
    /// completes or flushes), handle those completions, drain the send
    /// release list, reclaim anything the backend failed to complete,
    /// flush receives, release Read contexts, unmap every buffer.
    ///
    /// Taking `self` by value proves no poller or worker can still touch
    /// the transport.
    pub fn free(self) -> TeardownReport {
        self.flags().set(XprtFlags::CLOSE);
        self.sq.close();
        if let Err(e) = self.qp.drain_qp() {
            tracing::warn!(%e, "drain_qp failed at teardown");
        }
        // Handle every completion the drain produced. A backend may hold a
        // completion back for a few polls: keep polling while anything is
        // still posted, for a bounded number of empty rounds.
        let mut empty_rounds = 0;
        while empty_rounds < 1000 {
            match self.poll(usize::MAX) {
                Ok(0) | Err(_) => {
                    let outstanding = self.recv.posted() > 0
                        || self.send.pool().census().posted > 0
                        || self.with_reads(|r| r.slots.iter().flatten().any(|c| !c.done));
                    if !outstanding {
                        break;
                    }
                    empty_rounds += 1;
                    core::hint::spin_loop();
                }
                Ok(_) => empty_rounds = 0,
            }
        }
        self.send.flush();
        // SAFETY: the QP is drained (above) and `self` is owned, so no
        // completion handler runs concurrently.
        let reclaimed_send = unsafe { self.send.pool().reclaim_after_qp_drain() };
        let dev = self.send.pool().device();
        let reads = self.reads.into_inner();
        let mut reads_released = 0;
        for r in reads.slots.into_iter().flatten() {
            let _ = dev.dma_unmap(r.sge);
            reads_released += 1;
        }
        let stuck_recvs = self.recv.destroy(dev);
        TeardownReport {
            reclaimed_send,
            stuck_recvs,
            reads_released,
            send_stats: self.send.stats().snapshot(),
        }
    }
}
