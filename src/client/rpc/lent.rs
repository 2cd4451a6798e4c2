//! The lending API: registered buffers handed to the caller for a call's
//! arguments ([`RpcClient::lend`], [`RpcClient::start_lent`]) and its
//! reply's chunks ([`RpcClient::wait_lent`]), so neither is copied by the
//! host.

use super::marshal::rpc_header_len;
use super::{Answer, Res, RpcClient};
use crate::client::backend::RemoteMemory;
use crate::client::chunk::{segment_count, HEADROOM};
use crate::client::error::ClientError;
use crate::client::lend::{LentBuf, LentReply};
use crate::client::types::{CallOptions, Ticket};
use crate::completion::CompletionWait;
use rdmaxprt_core::backend::QueuePair;

impl<Q, D> RpcClient<Q, D>
where
    Q: QueuePair + CompletionWait,
    D: RemoteMemory,
    Q::Error: std::error::Error + Send + Sync + 'static,
    D::Error: std::error::Error + Send + Sync + 'static,
{
    /// Lends a registered buffer of `len` bytes from this connection's
    /// chunk pool (registering one only if no free region of its size
    /// class is left): write the call's XDR-encoded arguments into it in
    /// place, then [`start_lent`](Self::start_lent). Its bytes are not
    /// zeroed (a reused region holds an earlier call's data). Dropped
    /// unused, it goes back to the pool.
    ///
    /// ```
    /// use rdmaxprt::client::{ClientConfig, RpcClient};
    /// use rdmaxprt::mock::{MockDevice, QpConfig};
    ///
    /// let dev = MockDevice::new();
    /// let (cq, _server_qp) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    /// let mut client = RpcClient::new(cq, dev.clone(), ClientConfig::default()).unwrap();
    /// let mut args = client.lend(64 << 10).unwrap();
    /// assert_eq!(args.len(), 64 << 10);
    /// args[..4].copy_from_slice(b"xdr!"); // encode the arguments in place
    /// drop(args); // not sent: back to the pool
    /// let again = client.lend(64 << 10).unwrap();
    /// assert_eq!(&again[..4], b"xdr!", "the same region, not zeroed");
    /// assert_eq!(client.stats().chunk_regions, 1);
    /// drop(again);
    /// drop(client);
    /// dev.assert_clean();
    /// ```
    pub fn lend(&mut self, len: usize) -> Res<LentBuf<D::Region>> {
        if len == 0 {
            return Err(ClientError::InvalidOptions(
                "a lent buffer needs at least one byte",
            ));
        }
        if segment_count(len, self.cfg.max_segment_len) > self.cfg.max_chunk_segments as usize {
            return Err(ClientError::InvalidOptions(
                "chunk needs more segments than allowed",
            ));
        }
        // Room for the call header in front: the call then goes as one
        // Position Zero Read chunk (see `send_lent`).
        let head = rpc_header_len(&self.cfg.auth).min(HEADROOM);
        let r = self.chunks.take(&self.dev, head + len)?;
        Ok(LentBuf::new(r, head, len, self.chunks.returns().clone()))
    }

    /// Calls `prog`/`vers`/`proc` with the arguments the caller wrote into
    /// `args` (its first [`len`](LentBuf::len) bytes) and returns its
    /// ticket, without copying them: the RPC header is written into the
    /// room left in front of them and the region offered whole as a
    /// Position Zero Read chunk (`RDMA_NOMSG`), which the server pulls
    /// with RDMA Read ([`CallPath::PositionZero`]); a header longer than
    /// that room (a per-call `opts.auth`) goes inline, the arguments a
    /// positional Read chunk after it ([`CallPath::InlineWithReadChunk`]);
    /// arguments that fit the inline threshold with the headers are
    /// copied inline instead ([`CallPath::Inline`]). `args` belongs to the
    /// call until its reply is in (or the connection is torn down), then
    /// goes back to the pool; on an error before the call is sent, at
    /// once. Take the reply lent with [`wait_lent`](Self::wait_lent) (or
    /// copied with [`wait`](Self::wait)).
    ///
    /// `opts` may offer a Write chunk and a Reply chunk, and force the
    /// Read chunk for small arguments (`force_position_zero`); a
    /// `read_payload` is [`ClientError::InvalidOptions`]. Blocks
    /// (up to the timeout) while no credit or Send Queue slot is free.
    ///
    /// [`CallPath::PositionZero`]: crate::client::CallPath::PositionZero
    /// [`CallPath::InlineWithReadChunk`]: crate::client::CallPath::InlineWithReadChunk
    /// [`CallPath::Inline`]: crate::client::CallPath::Inline
    #[doc(alias = "rpcrdma_marshal_req")]
    pub fn start_lent(
        &mut self,
        prog: u32,
        vers: u32,
        proc: u32,
        args: LentBuf<D::Region>,
        opts: &CallOptions<'_>,
    ) -> Res<Ticket> {
        if !args.is_from(self.chunks.returns()) {
            // Another client's region: its rkey means nothing to this
            // connection's peer. It goes back to its own pool.
            return Err(ClientError::InvalidOptions(
                "the buffer was lent by another client",
            ));
        }
        Self::check_opts(opts)?;
        self.wait_until_sendable()?;
        let xid = self.take_xid();
        let mut msg = std::mem::take(&mut self.msg);
        let r = self.send_lent(xid, prog, vers, proc, args, opts, &mut msg);
        self.msg = msg;
        r
    }

    /// Blocks until the reply to a ticket of [`start_lent`](Self::start_lent)
    /// (or the timeout, which gives the ticket back in
    /// [`ClientError::Timeout`]) and lends it: the Write chunk's bytes
    /// and a Reply chunk's results are read where the server wrote them.
    /// A ticket of [`start_call`](Self::start_call) is refused (and given
    /// back) as [`ClientError::NotLent`].
    pub fn wait_lent(&mut self, ticket: Ticket) -> Res<LentReply<D::Region>> {
        if !ticket.lent {
            return Err(ClientError::NotLent { ticket });
        }
        self.wait_answer(ticket).and_then(Answer::into_lent)
    }

    /// Non-blocking [`wait_lent`](Self::wait_lent): the reply if it is in
    /// (the ticket is then spent), else polls once and looks again; `None`
    /// if the call is still in flight.
    pub fn try_wait_lent(&mut self, ticket: &Ticket) -> Option<Res<LentReply<D::Region>>> {
        if !ticket.lent {
            return Some(Err(ClientError::NotLentTicket));
        }
        self.try_wait_answer(ticket)
            .map(|r| r.and_then(Answer::into_lent))
    }
}

impl<R: crate::client::RemoteRegion> Answer<R> {
    /// The lent reply of a lent call.
    fn into_lent(self) -> Res<LentReply<R>> {
        match self {
            Answer::Lent(l) => Ok(l),
            // A lent ticket's call records a lent answer.
            Answer::Copied(_) => Err(ClientError::InvalidConfig("a lent call's reply was copied")),
        }
    }
}
