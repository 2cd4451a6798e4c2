//! The per-connection transport (`svcxprt_rdma`): receive contexts, the
//! send-context lifecycle, SQ accounting, RPC-over-RDMA v1 (RFC 8166);
//! `recvfrom` / `sendto` / `release_ctxt` / `close` / `free`.
//!
//! The worker that owns the transport (BUSY) calls [`SvcRdmaXprt::recvfrom`],
//! dispatches, [`SvcRdmaXprt::sendto`], then [`SvcRdmaXprt::release_ctxt`].
//! Completion pollers call [`SvcRdmaXprt::poll`] (or the per-completion
//! handlers). Teardown: [`SvcRdmaXprt::close`], then once no poller or
//! worker uses it, [`SvcRdmaXprt::free`].

mod bufs;
mod call;
mod chain;
mod counters;
mod error;
mod landing;
mod read;
mod recv;
mod send;
mod shrink;
mod teardown;

pub use call::{OwnedCall, RecvdCall};
pub use counters::{XprtCounters, XprtCountersSnapshot};
pub use error::XprtError;
pub use read::{CallMeta, ChunkSegs, WriteChunkList};
pub use shrink::IdleShrink;
pub use teardown::TeardownReport;

use crate::backend::{DmaDevice, ErrorType, QueuePair, Wc, WcStatus};
use crate::lifecycle::{Policy, SendCompletions, SendCtxtLifecycle};
use crate::rpcrdma::{self, decode_header, Limits, Proc};
use crate::spin::SpinMutex;
use crate::sq::SqAccount;
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};
use call::CallBuf;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use landing::Landings;
use read::{ReadStart, Reads};
use recv::{RecvQueue, RecvVerdict};

/// Low-32-bit tag of work requests that are not send contexts.
pub(crate) const TAG: u32 = 1 << 31;
/// `wr_id` of unsignaled chunk Writes (only ever seen when flushed).
pub(crate) const WR_ID_IGNORE: u64 = u32::MAX as u64;

/// Transport sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XprtConfig {
    /// Most credits granted to the client (concurrent calls). Each reply
    /// grants `min(the call's ask, this, what the RQ can keep posted)`,
    /// at least 1: see [`SvcRdmaXprt::credits_for`].
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
    /// Landing buffers for Read chunks (each mapped once, reused across
    /// calls, allocated on first need). A call with Read chunks that finds
    /// them all busy waits for one to come back.
    pub read_bufs: u32,
    /// Staging buffers for reply data that must be copied (an owned bulk
    /// payload for a Write chunk, a reply through the Reply chunk): each
    /// mapped once, held by the reply's send context and reused once that
    /// context was released (its Send completed and a drain ran). With all
    /// in use a reply stages into a fresh page instead.
    pub stage_bufs: u32,
    /// Idle landing and staging buffers (each kind) kept mapped between
    /// calls; `release_ctxt` frees the rest (only free ones: no send
    /// context or call holds them, so no posted Write reads them). The
    /// default keeps as many as may be in use (8), so a steady window of
    /// calls allocates nothing; 0 suits a device whose registered memory is
    /// scarce and cheap to take (a pre-registered pool handing out whole
    /// chunks).
    pub keep_bufs: u32,
    /// Shrink the send-context cache of a transport idle this long back to
    /// a floor (see [`IdleShrink`]; beyond the kernel, which keeps every
    /// context until teardown). `None` keeps them all. The transport only
    /// offers the shrink; a runtime sweeper decides when
    /// ([`SvcRdmaXprt::shrink_idle`]).
    pub idle_shrink: Option<IdleShrink>,
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
            read_bufs: 8,
            stage_bufs: 8,
            keep_bufs: 8,
            idle_shrink: Some(IdleShrink::DEFAULT),
        }
    }
}

/// One RPC-over-RDMA connection, server side.
#[doc(alias = "svcxprt_rdma")]
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
    reads: SpinMutex<Reads>,
    landings: Landings<<L::Dev as DmaDevice>::Buf>,
    /// Staging buffers for copied reply data (ownership in `reads.stage`).
    staging: Landings<<L::Dev as DmaDevice>::Buf>,
    /// A call waits (or is about to wait) for a landing buffer: whoever
    /// frees one (a dropped call, the release of a reply's send context)
    /// schedules the transport. Set (SeqCst) before the waiter's last look
    /// at the free buffers, read (SeqCst) after a buffer is freed, so one
    /// of the two sides always sees the other.
    landing_wait: AtomicBool,
    /// Take-backs of released contexts' buffers so far (wrapping): a reply
    /// waiting in `stage` for held buffers compares it with what it saw
    /// before its last look at the free ones, so buffers another worker
    /// took back in between (leaving nothing pending or returned) make it
    /// look again instead of sleeping on.
    bufs_back: AtomicU64,
    xprt: E,
    counters: XprtCounters,
    max_send_sge: u32,
    /// The most credits a reply grants: `cfg.credits` clamped to what
    /// the Receive Queue can keep posted.
    max_credits: u32,
    /// Receives kept posted: credits plus a batch, at most the RQ depth
    /// (the QP's caps, read once instead of per receive).
    recv_target: u32,
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
    ///
    /// The credits granted are clamped to what the RQ can keep posted (as
    /// the kernel clamps `sc_max_requests` to the device's limits):
    /// receives are reposted `recv_batch` at a time, so up to
    /// `recv_batch - 1` of the RQ's slots may be waiting for a repost, and
    /// at least one credit is always granted.
    #[doc(alias = "svc_rdma_accept")]
    pub fn new(cfg: XprtConfig, qp: Q, send: L, xprt: E) -> Result<Self, XprtError<DevError<L>>> {
        let caps = qp.caps();
        let max_credits = cfg
            .credits
            .min(
                caps.rq_depth
                    .saturating_sub(cfg.recv_batch.saturating_sub(1)),
            )
            .max(1);
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
            reads: SpinMutex::new(Reads::new(cfg.read_bufs, cfg.stage_bufs)),
            landings: Landings::new(cfg.read_bufs),
            staging: Landings::new(cfg.stage_bufs),
            landing_wait: AtomicBool::new(false),
            bufs_back: AtomicU64::new(0),
            xprt,
            counters: XprtCounters::default(),
            max_credits,
            recv_target: max_credits
                .saturating_add(cfg.recv_batch)
                .min(caps.rq_depth),
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
    fn with_reads<R>(&self, f: impl FnOnce(&mut Reads) -> R) -> R {
        f(&mut self.reads.lock())
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
    #[doc(alias = "svc_rdma_has_wspace")]
    pub fn has_wspace(&self) -> bool {
        self.sq.has_wspace()
    }

    /// The credits a reply to a call that asked for `asked` grants:
    /// `min(asked, XprtConfig::credits, what the RQ can hold)`, never
    /// below 1 (a zero grant would stall the client for good).
    pub fn credits_for(&self, asked: u32) -> u32 {
        asked.min(self.max_credits).max(1)
    }

    /// The most credits any reply grants (the configured credits clamped
    /// to the RQ).
    pub fn max_credits(&self) -> u32 {
        self.max_credits
    }

    /// Receives posted right now.
    pub fn recvs_posted(&self) -> u32 {
        self.recv.posted()
    }

    /// Receive contexts free to be posted right now: neither posted, nor
    /// completed and waiting for `recvfrom`, nor lent to a call (a
    /// [`RecvdCall`] gives its receive back when dropped).
    pub fn recvs_free(&self) -> u32 {
        self.recv.with(|st| st.free.len() as u32)
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Posts up to `max` receives.
    #[doc(alias = "svc_rdma_post_recvs")]
    fn post_recvs(&self, max: u32) -> Result<(), XprtError<DevError<L>>> {
        let mut wrs = recv::RecvWrs::with_capacity(max as usize);
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
    #[doc(alias = "svc_rdma_refresh_recvs")]
    fn refresh_recvs(&self) -> Result<(), XprtError<DevError<L>>> {
        let target = self.recv_target;
        let missing = target.saturating_sub(self.recv.posted());
        if missing >= self.cfg.recv_batch || missing == target {
            self.post_recvs(missing)?;
        }
        Ok(())
    }

    /// `svc_xprt_deferred_close`: mark the transport for close and, on the
    /// first close only, schedule it so a worker sees CLOSE and tears it
    /// down (the pollers stop polling a CLOSE'd transport, so nobody else
    /// would).
    #[doc(alias = "svc_xprt_deferred_close")]
    pub(crate) fn deferred_close(&self) {
        if !self.flags().set(XprtFlags::CLOSE) {
            self.xprt.enqueue();
        }
    }

    /// `svc_rdma_wc_receive`: queue the receive, set DATA, enqueue.
    /// A failed or flushed receive marks the transport for close.
    #[doc(alias = "svc_rdma_wc_receive")]
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

    /// Send Queue completion handler (`svc_rdma_wc_send`, and
    /// `svc_rdma_wc_read_done` for Reads): a Send completion returns its SQ
    /// slots, `put`s the context and wakes SQ waiters once (under
    /// [`Inline`](crate::lifecycle::Inline), whose put unmaps, it also
    /// wakes them before the put, in the kernel's order); a failed one also
    /// marks the transport for
    /// close and schedules it (`svc_xprt_deferred_close`). Read completions
    /// queue the call for `recvfrom`; flushed unsignaled Writes are
    /// ignored.
    #[doc(alias = "svc_rdma_wc_send")]
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
            self.tagged_done(wc.wr_id, wc.status);
            return;
        }
        match cq.claim(wc.wr_id) {
            Ok((claimed, sqes)) => {
                // svc_rdma_wake_send_waiters, then svc_rdma_send_ctxt_put.
                // One wake after both covers a waiter for SQ slots and a
                // `get` waiting at the pool's cap (on the same queue) for
                // the context the put makes available: one fence per
                // completion. Under Inline the put unmaps, so the slots'
                // waiters are woken before it too, as the kernel orders it.
                self.sq.return_slots(sqes);
                if let Some(c) = claimed {
                    if L::POLICY == Policy::Inline {
                        self.sq.wake_space_waiters();
                    }
                    self.send.complete(c);
                    self.after_complete();
                }
                self.sq.wake_space_waiters();
            }
            Err(_) => Self::bump(&self.counters.bogus_completions),
        }
        if wc.status != WcStatus::Success {
            // A flush or error: the connection is gone (the context was
            // still released above).
            self.deferred_close();
        }
    }

    /// A Send Queue completion with [`TAG`] set: a batch's last WR or the
    /// last Read of a call.
    fn tagged_done(&self, wr_id: u64, status: WcStatus) {
        match chain::batch_sqes(wr_id) {
            Some(sqes) => self.batch_done(sqes, status == WcStatus::Success),
            None if wr_id >> 32 == 0 => self.read_done(wr_id as u32 & !TAG, status),
            None => Self::bump(&self.counters.bogus_completions),
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
    #[doc(alias = "svc_rdma_recvfrom")]
    pub fn recvfrom(&self) -> Result<Option<RecvdCall<'_>>, XprtError<DevError<L>>> {
        if self.flags().test(XprtFlags::CLOSE) {
            return Err(XprtError::Closed);
        }
        self.flags().clear(XprtFlags::DATA);
        if let Some(call) = self.take_read_complete() {
            self.recheck();
            return Ok(Some(call));
        }
        self.start_backlog()?;
        while let Some((i, len)) = self.recv.pop_ready() {
            self.refresh_recvs()?;
            match self.on_receive(i, len) {
                Ok(Some(call)) => {
                    self.recheck();
                    return Ok(Some(call));
                }
                // Answered with an error, dropped, waiting for Reads or
                // for a landing buffer: look at the next receive.
                Ok(None) => continue,
                Err(e) => return Err(e),
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

    /// Decodes the message in held receive context `i` (`len` bytes);
    /// answers bad ones. Returns the call lent from the receive buffer, or
    /// `None` once the receive was answered, dropped, started Reads (its
    /// context then goes back) or queued for a landing buffer (held).
    fn on_receive(
        &self,
        i: u32,
        len: u32,
    ) -> Result<Option<RecvdCall<'_>>, XprtError<DevError<L>>> {
        // SAFETY: `pop_ready` handed context `i` to this worker, which
        // holds it until it is put back or lent to the call.
        let bytes = unsafe { self.recv.bytes(i, len) };
        let h = match decode_header(bytes, &self.cfg.limits) {
            Ok(h) => h,
            Err(e) => {
                let xid = rpcrdma::peek_xid(bytes);
                tracing::debug!(?e, ?xid, "malformed transport header");
                // The header's third word asks for credits, if it is there.
                let asked = bytes.get(8..12).map_or(self.max_credits, |w| {
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]])
                });
                let res = match (e.reply_with().rdma_error(), xid) {
                    (Some(err), Some(xid)) => self.send_error(xid, asked, err),
                    _ => {
                        Self::bump(&self.counters.dropped);
                        Ok(())
                    }
                };
                self.recv.put(i);
                return res.map(|()| None);
            }
        };
        match h.proc() {
            Proc::Msg | Proc::NoMsg => {}
            // RDMA_DONE and RDMA_ERROR from a client need no answer.
            _ => {
                Self::bump(&self.counters.dropped);
                self.recv.put(i);
                return Ok(None);
            }
        }
        if !h.read_list().is_empty() {
            // Calls already waiting go first.
            let res = if self.backlogged() {
                Ok(ReadStart::NoBuffer)
            } else {
                self.start_reads(&h, bytes)
            };
            if let Ok(ReadStart::NoBuffer) = res {
                Self::bump(&self.counters.read_waits);
                self.backlog_push(i, len);
                return Ok(None);
            }
            self.recv.put(i);
            return res.map(|_| None);
        }
        let meta = CallMeta::from_header(&h);
        let Some(body) = h.body_offset().and_then(|o| bytes.get(o..)) else {
            let res = self.send_error(meta.xid, meta.credits, rpcrdma::RdmaError::Chunk);
            self.recv.put(i);
            return res.map(|()| None);
        };
        Self::bump(&self.counters.calls);
        // SAFETY: context `i` is lent to the call and put back (to be
        // reposted) only by the call's drop.
        Ok(Some(unsafe {
            RecvdCall::new(meta, self, CallBuf::Recv(i), body)
        }))
    }

    /// `xpo_release_ctxt`: between RPCs, drain the send release list.
    /// The released contexts' landing and staging buffers come back to
    /// the transport here (the worker's side), and a call waiting for a
    /// landing buffer is scheduled if one did.
    #[doc(alias = "svc_rdma_release_ctxt")]
    pub fn release_ctxt(&self) -> usize {
        let n = self.send.drain();
        self.take_back_bufs();
        self.trim_bufs();
        n
    }

    /// Marks the transport closing: no new posts, every SQ waiter wakes,
    /// and the runtime is asked to schedule the transport so a worker sees
    /// CLOSE and arranges [`free`](Self::free).
    #[doc(alias = "svc_xprt_close")]
    pub fn close(&self) {
        // CLOSE may already be set (a flushed receive sets it): still close
        // the SQ so waiters wake; enqueue only on the first close.
        let already = self.flags().set(XprtFlags::CLOSE);
        self.sq.close();
        if !already {
            self.xprt.enqueue();
        }
    }
}
