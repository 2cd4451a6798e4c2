//! Marshaling a call (`rpcrdma_marshal_req`): the RPC call message, the
//! inline / Read chunk / Position Zero choice, the chunks offered, and the
//! transport header, encoded straight into a registered send buffer.

use super::{Call, Res, RpcClient};
use crate::client::backend::{RemoteMemory, RemoteRegion};
use crate::client::chunk::{segment_count, Offered};
use crate::client::error::ClientError;
use crate::client::lend::LentBuf;
use crate::client::reply::Pending;
use crate::client::types::{Auth, CallOptions, CallPath, Ticket};
use crate::completion::CompletionWait;
use rdmaxprt_core::backend::QueuePair;
use rdmaxprt_core::oncrpc;
use rdmaxprt_core::rpcrdma::{
    self, MsgProc, ReadSegment, Segment, HEADER_MIN_SIZE, RPCRDMA_VERSION,
};
use smallvec::SmallVec;

impl<Q, D> RpcClient<Q, D>
where
    Q: QueuePair + CompletionWait,
    D: RemoteMemory,
    Q::Error: std::error::Error + Send + Sync + 'static,
    D::Error: std::error::Error + Send + Sync + 'static,
{
    /// Transport header length of a call with `reads` Read segments and
    /// the chunks `opts` offers (what `CallSpec::encoded_len` gives for
    /// such a header, counted without building one).
    pub(super) fn header_len(&self, reads: usize, opts: &CallOptions<'_>) -> usize {
        call_header_len(
            reads,
            opts.write_chunk
                .map(|n| segment_count(n as usize, self.cfg.max_segment_len)),
            opts.reply_chunk
                .map(|n| segment_count(n as usize, self.cfg.max_segment_len)),
        )
    }

    /// [`start_call`](Self::start_call) once a credit and a send buffer
    /// are there and `xid` is chosen; `msg` is scratch space.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_call(
        &mut self,
        xid: u32,
        prog: u32,
        vers: u32,
        proc: u32,
        args: &[u8],
        opts: &CallOptions<'_>,
        msg: &mut Vec<u8>,
    ) -> Res<Ticket> {
        // `msg` holds the RPC header; the message is `msg ++ args`, never
        // copied whole: its two parts go straight where the call travels.
        self.rpc_header(msg, xid, prog, vers, proc, opts)?;
        let msg_len = msg.len() + args.len();
        let payload = opts.read_payload.filter(|p| !p.is_empty());
        if payload.is_some() && msg_len % 4 != 0 {
            return Err(ClientError::InvalidOptions(
                "a positional Read chunk needs args of a multiple of 4 bytes",
            ));
        }
        let write = opts
            .write_chunk
            .map(|n| self.offer(n as usize))
            .transpose()?;
        let reply = opts
            .reply_chunk
            .map(|n| self.offer(n as usize))
            .transpose()?;
        let reads = payload.map_or(0, |p| segment_count(p.len(), self.cfg.max_segment_len));
        let inline_len = self.header_len(reads, opts) + msg_len;
        let (path, read, proc_, inline_body) =
            if !opts.force_position_zero && inline_len <= self.cfg.inline_threshold {
                match payload {
                    None => (CallPath::Inline, None, MsgProc::Msg, true),
                    Some(p) => {
                        let o = self.offer(p.len())?;
                        if !o.mr.write_at(0, p) {
                            return Err(ClientError::InvalidOptions("read payload too long"));
                        }
                        (CallPath::InlineWithReadChunk, Some(o), MsgProc::Msg, true)
                    }
                }
            } else {
                let total = payload.map_or(msg_len, |p| (msg_len + p.len()).div_ceil(4) * 4);
                let o = self.offer(total)?;
                let written = o.mr.write_at(0, msg)
                    && o.mr.write_at(msg.len(), args)
                    && payload.map_or(true, |p| {
                        let pad = [0u8; 3];
                        o.mr.write_at(msg_len, p)
                            && o.mr
                                .write_at(msg_len + p.len(), &pad[..total - msg_len - p.len()])
                    });
                if !written {
                    return Err(ClientError::InvalidOptions("call too long"));
                }
                (CallPath::PositionZero, Some(o), MsgProc::NoMsg, false)
            };
        let (head, body): (&[u8], &[u8]) = if inline_body { (msg, args) } else { (&[], &[]) };
        // A positional chunk sits right after the inline message.
        let position = match path {
            CallPath::PositionZero => 0,
            _ => {
                u32::try_from(msg_len).map_err(|_| ClientError::InvalidOptions("call too long"))?
            }
        };
        let offered = Offers { read, write, reply };
        self.post_call(xid, path, proc_, position, offered, head, body, false)
    }

    /// Encodes the transport header of a call offering `offered` (its Read
    /// chunk at `position`) into a send buffer, followed by the inline
    /// parts `head` and `body`, posts it and records the call in flight
    /// (`lent`: its reply is lent, [`start_lent`](RpcClient::start_lent)).
    /// On failure the offered regions go back to the pool (the Send was not
    /// posted, so the server never saw them).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn post_call(
        &mut self,
        xid: u32,
        path: CallPath,
        proc_: MsgProc,
        position: u32,
        offered: Offers<D::Region>,
        head: &[u8],
        body: &[u8],
        lent: bool,
    ) -> Res<Ticket> {
        match self.try_post_call(xid, proc_, position, &offered, head, body) {
            Ok(()) => {}
            Err(e) => {
                self.give_back_offers(offered);
                if matches!(e, ClientError::Disconnected) {
                    // Every call in flight fails the same way.
                    self.fail_connection();
                }
                return Err(e);
            }
        }
        let Offers { read, write, reply } = offered;
        let call = Call::Pending(Pending {
            path,
            _read: read,
            write,
            reply,
            lent,
        });
        if self.calls.insert(xid, call).is_err() {
            // `take_xid` chose a free slot and nothing ran since.
            return Err(ClientError::InvalidConfig("xid slot taken"));
        }
        self.in_flight += 1;
        let s = &mut self.stats;
        s.calls += 1;
        match path {
            CallPath::PositionZero => s.position_zero_calls += 1,
            CallPath::InlineWithReadChunk => s.read_chunk_calls += 1,
            CallPath::Inline => {}
        }
        s.max_in_flight = s.max_in_flight.max(self.in_flight as u32);
        Ok(Ticket { xid, lent })
    }

    /// [`post_call`](Self::post_call) up to the post.
    #[allow(clippy::too_many_arguments)]
    fn try_post_call(
        &mut self,
        xid: u32,
        proc_: MsgProc,
        position: u32,
        offered: &Offers<D::Region>,
        head: &[u8],
        body: &[u8],
    ) -> Res<()> {
        // On the stack for the usual one-segment chunks.
        let read_list: SmallVec<[ReadSegment; 2]> = offered
            .read
            .iter()
            .flat_map(|o| o.read_list(position))
            .collect();
        let write_list: SmallVec<[&[Segment]; 1]> =
            offered.write.iter().map(|o| o.segs.as_slice()).collect();
        let spec = rpcrdma::CallSpec {
            xid,
            credits: self.cfg.credits,
            proc: proc_,
            read_list: &read_list,
            write_list: &write_list,
            reply_chunk: offered.reply.as_ref().map(|o| o.segs.as_slice()),
        };
        let hdr_len = spec.encoded_len();
        let inline = head.len() + body.len();
        if hdr_len + inline > self.cfg.inline_threshold {
            return Err(ClientError::HeaderTooLarge {
                needed: hdr_len + inline,
                threshold: self.cfg.inline_threshold,
            });
        }
        let version = self.cfg.transport_version;
        // The call goes straight into a registered send buffer.
        self.sends.post(&self.qp, |buf| {
            let n = rpcrdma::encode_call(buf, &spec)?;
            if version != RPCRDMA_VERSION {
                // Test-only (ClientConfig::transport_version): the version
                // word follows the xid.
                if let Some(vers) = buf.get_mut(4..8) {
                    vers.copy_from_slice(&version.to_be_bytes());
                }
            }
            let end = n + head.len() + body.len();
            let dst = buf.get_mut(n..end).ok_or(ClientError::InvalidConfig(
                "call longer than its send buffer",
            ))?;
            let (h, b) = dst.split_at_mut(head.len());
            h.copy_from_slice(head);
            b.copy_from_slice(body);
            Ok(end)
        })
    }

    /// [`start_lent`](RpcClient::start_lent) once a credit and a send
    /// buffer are there and `xid` is chosen. The lent region holds the
    /// arguments after room for the call header ([`LentBuf`]'s start):
    /// the RPC header is written right in front of them and the region
    /// sent as it is, header and arguments one Position Zero Read chunk
    /// (`RDMA_NOMSG`, [`CallPath::PositionZero`]: the server pulls the
    /// whole call with one RDMA Read, into its landing buffer from byte 0).
    /// A header longer than that room (a per-call credential) goes inline
    /// with the arguments as a positional Read chunk after it (`RDMA_MSG`,
    /// [`CallPath::InlineWithReadChunk`]). When header and arguments fit
    /// the inline threshold, the arguments are copied inline
    /// ([`CallPath::Inline`]) and the region goes back to the pool.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_lent(
        &mut self,
        xid: u32,
        prog: u32,
        vers: u32,
        proc: u32,
        args: LentBuf<D::Region>,
        opts: &CallOptions<'_>,
        msg: &mut Vec<u8>,
    ) -> Res<Ticket> {
        let r = self.lent_offers(
            msg,
            xid,
            prog,
            vers,
            proc,
            opts,
            args.capacity(),
            args.len(),
        );
        // On an error `args` drops: its region goes back to the pool.
        let (offers, inline) = r?;
        if inline {
            // Copied into the send buffer; the region goes back to the
            // pool once this guard drops.
            return self.post_call(
                xid,
                CallPath::Inline,
                MsgProc::Msg,
                0,
                offers,
                msg,
                &args,
                true,
            );
        }
        let (region, start, len) = args.into_parts();
        let max_seg = self.cfg.max_segment_len;
        if let Some(at) = start.checked_sub(msg.len()) {
            // The region is the client's alone until posted below.
            if region.write_at(at, msg) {
                let read = Offered::at(region, at, msg.len() + len, max_seg);
                let offers = Offers {
                    read: Some(read),
                    ..offers
                };
                let (p, z) = (CallPath::PositionZero, MsgProc::NoMsg);
                return self.post_call(xid, p, z, 0, offers, &[], &[], true);
            }
        }
        let Ok(position) = u32::try_from(msg.len()) else {
            self.chunks.put(region);
            self.give_back_offers(offers);
            return Err(ClientError::InvalidOptions("call too long"));
        };
        let offers = Offers {
            read: Some(Offered::at(region, start, len, max_seg)),
            ..offers
        };
        self.post_call(
            xid,
            CallPath::InlineWithReadChunk,
            MsgProc::Msg,
            position,
            offers,
            msg,
            &[],
            true,
        )
    }

    /// Gives the regions of calls' chunks never sent back to the pool.
    fn give_back_offers(&mut self, offers: Offers<D::Region>) {
        let Offers { read, write, reply } = offers;
        for o in [read, write, reply].into_iter().flatten() {
            self.chunks.put_offered(o);
        }
    }

    /// The RPC header into `msg` and the Write and Reply chunks of a lent
    /// call; whether its `len` argument bytes go inline.
    #[allow(clippy::too_many_arguments)]
    fn lent_offers(
        &mut self,
        msg: &mut Vec<u8>,
        xid: u32,
        prog: u32,
        vers: u32,
        proc: u32,
        opts: &CallOptions<'_>,
        cap: usize,
        len: usize,
    ) -> Res<(Offers<D::Region>, bool)> {
        if opts.read_payload.is_some() {
            return Err(ClientError::InvalidOptions(
                "a lent call sends its arguments as its Read chunk: no read_payload",
            ));
        }
        if len > cap {
            return Err(ClientError::InvalidOptions("lent length past its buffer"));
        }
        let reads = segment_count(len, self.cfg.max_segment_len);
        if reads > self.cfg.max_chunk_segments as usize {
            return Err(ClientError::InvalidOptions(
                "chunk needs more segments than allowed",
            ));
        }
        self.rpc_header(msg, xid, prog, vers, proc, opts)?;
        let inline = !opts.force_position_zero
            && self.header_len(0, opts) + msg.len() + len <= self.cfg.inline_threshold;
        let write = opts
            .write_chunk
            .map(|n| self.offer(n as usize))
            .transpose()?;
        let reply = match opts.reply_chunk.map(|n| self.offer(n as usize)).transpose() {
            Ok(r) => r,
            Err(e) => {
                if let Some(w) = write {
                    self.chunks.put_offered(w);
                }
                return Err(e);
            }
        };
        Ok((
            Offers {
                read: None,
                write,
                reply,
            },
            inline,
        ))
    }

    /// Encodes the RPC call header into `msg` (the arguments follow it on
    /// the wire).
    fn rpc_header(
        &self,
        msg: &mut Vec<u8>,
        xid: u32,
        prog: u32,
        vers: u32,
        proc: u32,
        opts: &CallOptions<'_>,
    ) -> Res<()> {
        let cred = opts.auth.unwrap_or(&self.cfg.auth).sys_spec();
        let spec = oncrpc::CallSpec {
            xid,
            prog,
            vers,
            proc,
            cred,
        };
        msg.clear();
        msg.resize(spec.encoded_len(), 0);
        let n = oncrpc::encode_call(msg, &spec)?;
        msg.truncate(n);
        Ok(())
    }

    /// Lends `len` bytes of a pooled registered region as one chunk.
    fn offer(&mut self, len: usize) -> Res<Offered<D::Region>> {
        if segment_count(len, self.cfg.max_segment_len) > self.cfg.max_chunk_segments as usize {
            return Err(ClientError::InvalidOptions(
                "chunk needs more segments than allowed",
            ));
        }
        let mr = self.chunks.take(&self.dev, len)?;
        Ok(Offered::new(mr, len, self.cfg.max_segment_len))
    }
}

/// The chunks a call offers, one registered region each.
pub(super) struct Offers<R> {
    pub(super) read: Option<Offered<R>>,
    pub(super) write: Option<Offered<R>>,
    pub(super) reply: Option<Offered<R>>,
}

/// Bytes of an RPC-over-RDMA call header with `reads` Read segments, a
/// Write chunk of `write` segments and a Reply chunk of `reply` segments
/// (RFC 8166 section 4.2: 7 fixed words; 6 per Read entry; a Write chunk's
/// discriminator, count and 4 words per segment; a Reply chunk's count
/// and 4 words per segment).
fn call_header_len(reads: usize, write: Option<usize>, reply: Option<usize>) -> usize {
    const SEG: usize = 16;
    HEADER_MIN_SIZE
        + reads * (8 + SEG)
        + write.map_or(0, |n| 8 + n * SEG)
        + reply.map_or(0, |n| 4 + n * SEG)
}

/// Bytes of the RPC call header for `auth`.
pub(super) fn rpc_header_len(auth: &Auth) -> usize {
    oncrpc::CallSpec {
        xid: 0,
        prog: 0,
        vers: 0,
        proc: 0,
        cred: auth.sys_spec(),
    }
    .encoded_len()
}

#[cfg(test)]
mod tests {
    use super::call_header_len;
    use rdmaxprt_core::rpcrdma::{CallSpec, MsgProc, ReadSegment, Segment};

    #[test]
    fn call_header_len_matches_the_encoder() {
        for reads in [0usize, 1, 3] {
            for write in [None, Some(1usize), Some(4)] {
                for reply in [None, Some(1usize), Some(2)] {
                    let r = vec![ReadSegment::default(); reads];
                    let w = vec![Segment::default(); write.unwrap_or(0)];
                    let p = vec![Segment::default(); reply.unwrap_or(0)];
                    let wl: Vec<&[Segment]> = write.iter().map(|_| w.as_slice()).collect();
                    let spec = CallSpec {
                        xid: 0,
                        credits: 0,
                        proc: MsgProc::Msg,
                        read_list: &r,
                        write_list: &wl,
                        reply_chunk: reply.map(|_| p.as_slice()),
                    };
                    assert_eq!(
                        call_header_len(reads, write, reply),
                        spec.encoded_len(),
                        "{reads} {write:?} {reply:?}"
                    );
                }
            }
        }
    }
}
