//! [`RpcClient`]: calls out, replies matched by xid, credits honoured.

use super::backend::{RemoteMemory, RemoteRegion};
use super::calls::CallTable;
use super::chunk::{segment_count, ChunkPool};
use super::error::ClientError;
use super::lend::LentReply;
use super::post::{RecvRing, SendRing};
use super::reply::{assemble, assemble_lent, Pending};
use super::spare::ReplySpares;
use super::types::{
    CallOptions, CallRequest, ClientConfig, ClientStats, ReplyBytes, ReplyPath, Ticket,
};
use crate::completion::CompletionWait;

mod lent;
mod marshal;
mod teardown;

use marshal::rpc_header_len;
use rdmaxprt_core::backend::{QueuePair, Wc, WcOpcode, WcStatus};
use rdmaxprt_core::rpcrdma::{self, decode_reply_header, MsgProc, Segment, HEADER_MIN_SIZE};
use std::time::{Duration, Instant};

/// Longest single sleep in a blocking wait (re-polls after it even if the
/// backend's wakeup got lost).
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// Bytes of an ONC RPC accepted-SUCCESS reply header with an empty
/// verifier: the smallest reply worth receiving.
const MIN_RPC_REPLY: usize = 24;

/// A call the client knows of: in flight, or answered and waiting for
/// [`RpcClient::wait`].
enum Call<R: RemoteRegion> {
    Pending(Pending<R>),
    Done(Result<Answer<R>, ClientError>),
}

/// A call's reply as its ticket takes it.
enum Answer<R: RemoteRegion> {
    /// Copied out ([`RpcClient::start_call`]).
    Copied(ReplyBytes),
    /// Lent ([`RpcClient::start_lent`]).
    Lent(LentReply<R>),
}

const EMPTY_WC: Wc = Wc {
    wr_id: 0,
    status: WcStatus::Flushed,
    opcode: WcOpcode::Unknown,
    byte_len: 0,
    invalidated_rkey: None,
};

/// An RPC-over-RDMA version 1 client on one connected QP.
///
/// Single-threaded (`&mut self`); run one per connection and thread for
/// load. Every call in flight holds one credit and one posted receive;
/// never more calls are in flight than the server granted (1 until the
/// first reply, RFC 8166 section 3.3.1).
///
/// Dropping the client (or [`close`](Self::close)) drains the QP, then
/// unmaps and deregisters everything it ever mapped.
pub struct RpcClient<Q, D>
where
    Q: QueuePair + CompletionWait,
    D: RemoteMemory,
{
    qp: Q,
    dev: D,
    cfg: ClientConfig,
    sends: SendRing<D::Buf>,
    recvs: RecvRing<D::Buf>,
    /// Every call by xid, in flight or answered.
    calls: CallTable<Call<D::Region>>,
    /// Calls in `calls` still in flight.
    in_flight: usize,
    chunks: ChunkPool<D::Region>,
    /// The RPC call message being built (reused: no allocation per call).
    msg: Vec<u8>,
    /// The reply being handled, copied out of its receive buffer (reused).
    rx: Vec<u8>,
    /// Reply buffers handed back by [`recycle`](Self::recycle).
    spare: ReplySpares,
    granted: u32,
    next_xid: u32,
    sq_depth: usize,
    /// A failed completion was seen; the connection gets failed after the
    /// current poll.
    failed: bool,
    /// The connection was failed: QP drained, calls failed.
    broken: bool,
    torn_down: bool,
    stats: ClientStats,
}

type Res<T> = Result<T, ClientError>;

impl<Q, D> RpcClient<Q, D>
where
    Q: QueuePair + CompletionWait,
    D: RemoteMemory,
    Q::Error: std::error::Error + Send + Sync + 'static,
    D::Error: std::error::Error + Send + Sync + 'static,
{
    /// A client on the connected `qp`, mapping with `dev`: maps and posts
    /// `cfg.credits` receive buffers of `cfg.recv_threshold()` bytes.
    pub fn new(qp: Q, dev: D, cfg: ClientConfig) -> Res<Self> {
        if cfg.credits == 0 {
            return Err(ClientError::InvalidConfig("credits must be at least 1"));
        }
        if cfg.inline_threshold.min(cfg.recv_threshold()) < HEADER_MIN_SIZE + MIN_RPC_REPLY {
            return Err(ClientError::InvalidConfig(
                "inline threshold below the smallest header plus RPC reply",
            ));
        }
        if cfg.max_chunk_segments == 0 || cfg.max_segment_len == 0 {
            return Err(ClientError::InvalidConfig("chunks need at least one byte"));
        }
        let caps = qp.caps();
        if cfg.credits > caps.rq_depth || cfg.credits > caps.sq_depth {
            return Err(ClientError::InvalidConfig(
                "more credits than the QP's receive or send queue holds",
            ));
        }
        let mut c = Self {
            sq_depth: caps.sq_depth as usize,
            qp,
            dev,
            sends: SendRing::new(cfg.inline_threshold, caps.sq_depth as usize),
            recvs: RecvRing::new(),
            calls: CallTable::with_capacity(cfg.credits as usize),
            in_flight: 0,
            chunks: ChunkPool::new(),
            msg: Vec::new(),
            rx: Vec::new(),
            spare: ReplySpares::new(cfg.credits as usize),
            granted: 1,
            next_xid: cfg.first_xid,
            failed: false,
            broken: false,
            torn_down: false,
            stats: ClientStats::default(),
            cfg,
        };
        for _ in 0..c.cfg.credits {
            c.recvs.add(&c.dev, c.cfg.recv_threshold())?;
        }
        c.recvs.post_idle(&c.qp)?;
        Ok(c)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The queue pair.
    pub fn qp(&self) -> &Q {
        &self.qp
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            chunk_regions: self.chunks.registered(),
            send_buffers: self.sends.allocated(),
            reused_reply_buffers: self.spare.results.reused() + self.spare.bulk.reused(),
            ..self.stats
        }
    }

    /// Hands a reply's buffers back once read: later replies are built in
    /// them (emptied) instead of fresh allocations. Up to `cfg.credits`
    /// buffers of each kind (results, Write chunk bytes) are kept until
    /// the client is dropped; more are freed.
    pub fn recycle(&mut self, reply: ReplyBytes) {
        self.spare.results.give(reply.results);
        if let Some(b) = reply.bulk {
            self.spare.bulk.give(b);
        }
    }

    /// Calls sent and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.in_flight as u32
    }

    /// The credit limit in force: the server's last grant, at most
    /// `cfg.credits`.
    pub fn credits(&self) -> u32 {
        self.granted
    }

    /// Whether another call can start without waiting for a credit.
    pub fn has_credit(&self) -> bool {
        self.in_flight() < self.granted && !self.broken
    }

    /// Whether the connection failed (every later call fails).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Longest `args` that still go inline (`RDMA_MSG`) with `opts`: the
    /// inline threshold minus the transport header and the RPC call header.
    pub fn inline_args_limit(&self, opts: &CallOptions<'_>) -> usize {
        let auth = opts.auth.unwrap_or(&self.cfg.auth);
        let rpc = rpc_header_len(auth);
        let reads = opts
            .read_payload
            .filter(|p| !p.is_empty())
            .map_or(0, |p| segment_count(p.len(), self.cfg.max_segment_len));
        let hdr = self.header_len(reads, opts);
        self.cfg.inline_threshold.saturating_sub(hdr + rpc)
    }

    /// Largest results that come back inline: the inline threshold minus
    /// the reply's transport header and the accepted-SUCCESS RPC header.
    pub fn inline_results_limit(&self, opts: &CallOptions<'_>) -> usize {
        let write = opts
            .write_chunk
            .map(|n| segment_count(n as usize, self.cfg.max_segment_len));
        let segs = vec![Segment::default(); write.unwrap_or(0)];
        let chunks: Vec<&[Segment]> = write.iter().map(|_| segs.as_slice()).collect();
        let spec = rpcrdma::ReplySpec {
            xid: 0,
            credits: 0,
            proc: MsgProc::Msg,
            write_list: &chunks,
            reply_chunk: None,
        };
        self.cfg
            .recv_threshold()
            .saturating_sub(spec.encoded_len() + MIN_RPC_REPLY)
    }

    /// Calls `prog`/`vers`/`proc` with XDR-encoded `args` and waits for the
    /// reply.
    pub fn call(
        &mut self,
        prog: u32,
        vers: u32,
        proc: u32,
        args: &[u8],
        opts: &CallOptions<'_>,
    ) -> Res<ReplyBytes> {
        let t = self.start_call(prog, vers, proc, args, opts)?;
        self.wait(t)
    }

    /// Runs a batch: starts each call as soon as a credit allows (so up to
    /// the granted credits are in flight at once), then collects every
    /// reply, in request order.
    pub fn call_many(&mut self, reqs: &[CallRequest<'_>]) -> Vec<Res<ReplyBytes>> {
        let tickets: Vec<Res<Ticket>> = reqs
            .iter()
            .map(|r| self.start_call(r.prog, r.vers, r.proc, r.args, &r.opts))
            .collect();
        tickets
            .into_iter()
            .map(|t| t.and_then(|t| self.wait(t)))
            .collect()
    }

    /// Builds and sends a call; returns its ticket. Blocks (up to the
    /// timeout) while no credit or Send Queue slot is free.
    #[doc(alias = "rpcrdma_marshal_req")]
    pub fn start_call(
        &mut self,
        prog: u32,
        vers: u32,
        proc: u32,
        args: &[u8],
        opts: &CallOptions<'_>,
    ) -> Res<Ticket> {
        Self::check_opts(opts)?;
        self.wait_until_sendable()?;
        let xid = self.take_xid();
        let mut msg = std::mem::take(&mut self.msg);
        let r = self.send_call(xid, prog, vers, proc, args, opts, &mut msg);
        self.msg = msg;
        r
    }

    /// Checks a call's options before it takes a credit.
    fn check_opts(opts: &CallOptions<'_>) -> Res<()> {
        if opts.write_chunk == Some(0) || opts.reply_chunk == Some(0) {
            return Err(ClientError::InvalidOptions(
                "a chunk needs at least one byte",
            ));
        }
        Ok(())
    }

    /// The next xid whose slot in the call table is free.
    fn take_xid(&mut self) -> u32 {
        loop {
            let xid = self.next_xid;
            self.next_xid = self.next_xid.wrapping_add(1);
            if self.calls.is_free(xid) {
                return xid;
            }
        }
    }

    /// Waits for a credit and a free send buffer (and Send Queue slot).
    fn wait_until_sendable(&mut self) -> Res<()> {
        let mut deadline = None;
        loop {
            if self.broken {
                return Err(ClientError::Disconnected);
            }
            let blocked = self.in_flight as u32 >= self.granted
                || self.sends.outstanding() >= self.sq_depth
                || !self.sends.reserve(&self.dev)?;
            if !blocked {
                return Ok(());
            }
            // The clock is read only when a call has to wait.
            let dl = *deadline.get_or_insert_with(|| {
                self.stats.credit_waits += 1;
                Instant::now() + self.cfg.timeout
            });
            if self.progress(dl)? {
                return Err(ClientError::NoCredit);
            }
        }
    }

    /// Polls; if nothing arrived, sleeps until a completion or `deadline`.
    /// Returns whether the deadline has passed.
    fn progress(&mut self, deadline: Instant) -> Res<bool> {
        if self.poll()? > 0 {
            return Ok(false);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(true);
        }
        self.qp
            .wait_for_completions((deadline - now).min(WAIT_SLICE));
        Ok(false)
    }

    /// Blocks until the reply to `ticket` (or the timeout, which gives the
    /// ticket back in [`ClientError::Timeout`]). A lent call's reply
    /// ([`start_lent`](Self::start_lent)) comes back copied
    /// ([`LentReply::to_owned_reply`]); [`wait_lent`](Self::wait_lent)
    /// lends it.
    pub fn wait(&mut self, ticket: Ticket) -> Res<ReplyBytes> {
        self.wait_answer(ticket).map(Answer::into_copied)
    }

    /// Blocks until the answer to `ticket` (or the timeout).
    fn wait_answer(&mut self, ticket: Ticket) -> Res<Answer<D::Region>> {
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            if let Some(r) = self.take_done(ticket.xid) {
                return r;
            }
            if self.calls.get(ticket.xid).is_none() {
                return Err(ClientError::UnknownTicket);
            }
            if self.progress(deadline)? {
                return Err(ClientError::Timeout { ticket });
            }
        }
    }

    /// The result of call `xid` if its reply is in (removing it).
    fn take_done(&mut self, xid: u32) -> Option<Res<Answer<D::Region>>> {
        match self.calls.get(xid)? {
            Call::Done(_) => match self.calls.remove(xid) {
                Some(Call::Done(r)) => Some(r),
                _ => None,
            },
            Call::Pending(_) => None,
        }
    }

    /// Non-blocking: returns the reply to `ticket` if it is in (the ticket
    /// is then spent), else polls once and looks again; `None` if it is
    /// still in flight.
    pub fn try_wait(&mut self, ticket: &Ticket) -> Option<Res<ReplyBytes>> {
        self.try_wait_answer(ticket)
            .map(|r| r.map(Answer::into_copied))
    }

    /// [`try_wait`](Self::try_wait)'s answer, as the call takes it.
    fn try_wait_answer(&mut self, ticket: &Ticket) -> Option<Res<Answer<D::Region>>> {
        // An earlier poll may have brought it in already.
        if let Some(r) = self.take_done(ticket.xid) {
            return Some(r);
        }
        if let Err(e) = self.poll() {
            return Some(Err(e));
        }
        match self.take_done(ticket.xid) {
            Some(r) => Some(r),
            None if self.calls.get(ticket.xid).is_some() => None,
            None => Some(Err(ClientError::UnknownTicket)),
        }
    }

    /// Polls both completion queues until empty, matching replies to calls;
    /// returns how many completions were handled. A failed or flushed
    /// completion fails the connection: the QP is drained and every call in
    /// flight completes with [`ClientError::Disconnected`].
    pub fn poll(&mut self) -> Res<usize> {
        if self.torn_down {
            return Ok(0);
        }
        let n = self.poll_cqs()?;
        if !self.broken {
            // Receives consumed by replies go back on the RQ.
            if let Err(e) = self.recvs.post_idle(&self.qp) {
                tracing::debug!(%e, "reposting receives failed");
                self.failed = true;
            }
        }
        if self.failed && !self.broken {
            self.fail_connection();
        }
        Ok(n)
    }

    fn poll_cqs(&mut self) -> Res<usize> {
        let mut wcs = [EMPTY_WC; 16];
        let mut total = 0;
        loop {
            let n = self
                .qp
                .poll_send(&mut wcs)
                .map_err(|e| ClientError::backend("poll_send", e))?;
            for wc in &wcs[..n] {
                self.on_send_wc(wc);
            }
            let m = self
                .qp
                .poll_recv(&mut wcs)
                .map_err(|e| ClientError::backend("poll_recv", e))?;
            for wc in &wcs[..m] {
                self.on_recv_wc(wc);
            }
            total += n + m;
            if n + m == 0 {
                return Ok(total);
            }
        }
    }

    #[doc(alias = "rpcrdma_wc_send")]
    fn on_send_wc(&mut self, wc: &Wc) {
        if !self.sends.complete(wc.wr_id) {
            tracing::warn!(wr_id = wc.wr_id, "send completion for no posted buffer");
        }
        if wc.status != WcStatus::Success {
            self.failed = true;
        }
    }

    #[doc(alias = "rpcrdma_wc_receive")]
    fn on_recv_wc(&mut self, wc: &Wc) {
        let ok = wc.status == WcStatus::Success;
        let mut rx = std::mem::take(&mut self.rx);
        let known = self
            .recvs
            .complete(wc.wr_id, ok.then_some(wc.byte_len), &mut rx);
        if !ok {
            self.failed = true;
        } else if !known {
            tracing::warn!(wr_id = wc.wr_id, "receive completion for no posted buffer");
        } else {
            if wc.invalidated_rkey.is_some() {
                self.stats.remote_invalidations += 1;
            }
            self.on_reply(&rx);
        }
        self.rx = rx;
    }

    /// Matches one received message to its call and completes the call.
    #[doc(alias = "rpcrdma_reply_handler")]
    fn on_reply(&mut self, bytes: &[u8]) {
        // An ERR_VERS decodes whatever its version word (the kernel echoes
        // the caller's); any other header must say version 1.
        let hdr = match decode_reply_header(bytes, &self.cfg.limits) {
            Ok(h) => h,
            Err(e) => {
                let xid = rpcrdma::peek_xid(bytes).filter(|&x| self.is_pending(x));
                match xid {
                    Some(xid) => self.finish(xid, Err(ClientError::BadReplyHeader(e))),
                    None => self.stats.unmatched_replies += 1,
                }
                return;
            }
        };
        let xid = hdr.xid();
        // An unknown xid, or one whose call was already answered (a
        // duplicate or stale reply), resolves nothing.
        let Some(Call::Pending(call)) = self.calls.get_mut(xid) else {
            self.stats.unmatched_replies += 1;
            return;
        };
        self.granted = hdr.credits().clamp(1, self.cfg.credits);
        let r = if call.lent {
            assemble_lent(&hdr, bytes, call, self.chunks.returns()).map(Answer::Lent)
        } else {
            assemble(&hdr, bytes, call, &mut self.spare).map(Answer::Copied)
        };
        self.finish(xid, r);
    }

    /// Completes call `xid`: its regions are deregistered (the reply came,
    /// so the server is done with them) and its result waits for `wait`.
    fn finish(&mut self, xid: u32, r: Res<Answer<D::Region>>) {
        let Some(Call::Pending(call)) = self.calls.get_mut(xid) else {
            return;
        };
        // The regions go back in place: no move of the call for the
        // usual call that offered none.
        give_back(&mut self.chunks, call);
        self.stats.replies += 1;
        if matches!(&r, Ok(a) if a.reply_path() == ReplyPath::ReplyChunk) {
            self.stats.reply_chunk_replies += 1;
        }
        if let Some(entry) = self.calls.get_mut(xid) {
            *entry = Call::Done(r);
        }
        debug_assert!(self.in_flight >= 1 && self.in_flight <= self.calls.len());
        self.in_flight -= 1;
    }

    /// Whether call `xid` is in flight.
    fn is_pending(&self, xid: u32) -> bool {
        matches!(self.calls.get(xid), Some(Call::Pending(_)))
    }

    /// The connection is gone: drain the QP so nothing can touch our
    /// memory any more, reap what it flushed, fail every call in flight.
    fn fail_connection(&mut self) {
        self.broken = true;
        self.drain_and_reap();
        for (_, entry) in self.calls.iter_mut() {
            if let Call::Pending(call) = entry {
                // Drained: the server cannot reach these any more.
                give_back(&mut self.chunks, call);
                *entry = Call::Done(Err(ClientError::Disconnected));
            }
        }
        self.in_flight = 0;
    }

    /// Tears the connection down (as dropping does) and returns the final
    /// counters.
    pub fn close(mut self) -> ClientStats {
        self.teardown();
        self.stats()
    }

    /// Receive buffers (each persistently mapped until teardown).
    pub fn recv_buffers(&self) -> usize {
        self.recvs.len()
    }
}

/// Gives a finished call's chunk regions back to the pool (the call keeps
/// none).
fn give_back<R: RemoteRegion>(pool: &mut ChunkPool<R>, call: &mut Pending<R>) {
    for o in [&mut call._read, &mut call.write, &mut call.reply] {
        if let Some(o) = o.take() {
            pool.put_offered(o);
        }
    }
}

impl<R: RemoteRegion> Answer<R> {
    /// How the reply came back.
    fn reply_path(&self) -> ReplyPath {
        match self {
            Answer::Copied(b) => b.reply_path,
            Answer::Lent(l) => l.reply_path,
        }
    }

    /// The reply as [`RpcClient::wait`] returns it (a lent one copied).
    fn into_copied(self) -> ReplyBytes {
        match self {
            Answer::Copied(b) => b,
            Answer::Lent(l) => l.to_owned_reply(),
        }
    }
}
