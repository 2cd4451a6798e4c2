//! Turning a received reply into the call's result: the transport header
//! (`RDMA_MSG`, `RDMA_NOMSG` with the Reply chunk, `RDMA_ERROR`), the Write
//! chunk's bytes, and the RPC reply header.

use super::backend::RemoteRegion;
use super::chunk::Offered;
use super::error::ClientError;
use super::lend::{LentBytes, LentReply, Results, Returns};
use super::spare::ReplySpares;
use super::types::{CallPath, ReplyBytes, ReplyPath};
use rdmaxprt_core::oncrpc::{self, AcceptStat, ReplyStat};
use rdmaxprt_core::rpcrdma::{Chunk, Header, Proc, RdmaError};
use std::borrow::Cow;
use std::sync::Arc;

/// A call in flight: what it offered and the regions that stay registered
/// until its reply arrives (the server may still RDMA them until then).
pub(super) struct Pending<R> {
    pub(super) path: CallPath,
    /// Held, never read: the server may RDMA Read it until the reply.
    pub(super) _read: Option<Offered<R>>,
    pub(super) write: Option<Offered<R>>,
    pub(super) reply: Option<Offered<R>>,
    /// Started with lent arguments: the reply is lent too
    /// ([`assemble_lent`]).
    pub(super) lent: bool,
}

const NO_REPLY_CHUNK: ClientError =
    ClientError::ProtocolViolation("RDMA_NOMSG reply but the call offered no Reply chunk");

/// Where a reply's RPC message is, as its transport header says.
enum Body<'a> {
    /// `RDMA_MSG`: after the transport header, in the receive buffer.
    Inline(&'a [u8]),
    /// `RDMA_NOMSG`: in the Reply chunk the call offered, as returned.
    ReplyChunk(Chunk<'a>),
}

/// A reply's transport header checked against what its call offered:
/// where the RPC message is and the Write chunk returned, if the call
/// offered one. `RDMA_ERROR` becomes its typed error.
fn locate<'a, R>(
    hdr: &Header<'a>,
    bytes: &'a [u8],
    call: &Pending<R>,
) -> Result<(Body<'a>, Option<Chunk<'a>>), ClientError> {
    let body = match hdr.proc() {
        Proc::Error => {
            return Err(match hdr.rdma_error() {
                Some(RdmaError::Vers { low, high }) => ClientError::RdmaVers { low, high },
                Some(RdmaError::Chunk) => ClientError::RdmaChunk,
                None => ClientError::ProtocolViolation("RDMA_ERROR without an error code"),
            })
        }
        Proc::Msg => Body::Inline(
            bytes
                .get(hdr.header_len()..)
                .ok_or(ClientError::ProtocolViolation("header longer than message"))?,
        ),
        Proc::NoMsg => match (&call.reply, hdr.reply_chunk()) {
            (Some(_), Some(returned)) => Body::ReplyChunk(returned),
            _ => return Err(NO_REPLY_CHUNK),
        },
        Proc::Done | Proc::MsgP => {
            return Err(ClientError::ProtocolViolation(
                "reply is neither RDMA_MSG, RDMA_NOMSG nor RDMA_ERROR",
            ))
        }
    };
    let mut returned = hdr.write_list().iter();
    let write = match (&call.write, returned.next()) {
        (Some(_), Some(chunk)) => Some(chunk),
        (Some(_), None) => {
            return Err(ClientError::ProtocolViolation(
                "reply lacks the Write chunk the call offered",
            ))
        }
        (None, Some(_)) => {
            return Err(ClientError::ProtocolViolation(
                "reply has a Write chunk the call did not offer",
            ))
        }
        (None, None) => None,
    };
    if returned.next().is_some() {
        return Err(ClientError::ProtocolViolation(
            "reply has more Write chunks than the call offered",
        ));
    }
    Ok((body, write))
}

/// Checks the RPC reply header in `body` (xid, accepted SUCCESS); returns
/// where the results start.
fn rpc_results_offset(hdr: &Header<'_>, body: &[u8]) -> Result<usize, ClientError> {
    let rpc = oncrpc::decode_reply(body).map_err(ClientError::BadRpcReply)?;
    if rpc.xid != hdr.xid() {
        return Err(ClientError::XidMismatch {
            expected: hdr.xid(),
            got: rpc.xid,
        });
    }
    match rpc.stat {
        ReplyStat::Accepted(AcceptStat::Success) => Ok(rpc.body_offset),
        ReplyStat::Accepted(a) => Err(ClientError::NotSuccess(a)),
        ReplyStat::Denied(d) => Err(ClientError::Denied(d)),
    }
}

/// Builds the result of one call from its reply, into buffers from
/// `spare` where it has some.
pub(super) fn assemble<R: RemoteRegion>(
    hdr: &Header<'_>,
    bytes: &[u8],
    call: &Pending<R>,
    spare: &mut ReplySpares,
) -> Result<ReplyBytes, ClientError> {
    let (body, write) = locate(hdr, bytes, call)?;
    let (body, reply_path) = match (body, &call.reply) {
        (Body::Inline(b), _) => (Cow::Borrowed(b), ReplyPath::Inline),
        (Body::ReplyChunk(returned), Some(offered)) => (
            Cow::Owned(offered.gather(returned, spare.results.take())?),
            ReplyPath::ReplyChunk,
        ),
        (Body::ReplyChunk(_), None) => return Err(NO_REPLY_CHUNK),
    };
    let bulk = match (&call.write, write) {
        (Some(offered), Some(chunk)) => Some(offered.gather(chunk, spare.bulk.take())?),
        _ => None,
    };
    let body_offset = rpc_results_offset(hdr, &body)?;
    // One copy of the results: out of the receive buffer's copy, or the
    // gathered Reply chunk with the RPC header cut off in place.
    let results = match body {
        Cow::Borrowed(b) => {
            let mut v = spare.results.take();
            v.extend_from_slice(b.get(body_offset..).unwrap_or_default());
            v
        }
        Cow::Owned(mut v) => {
            v.drain(..body_offset.min(v.len()));
            v
        }
    };
    Ok(ReplyBytes {
        xid: hdr.xid(),
        results,
        bulk,
        call_path: call.path,
        reply_path,
        credits: hdr.credits(),
    })
}

/// Builds the result of a lent call from its reply without copying the
/// chunks: the Write chunk's region (and the Reply chunk's, if the reply
/// came in it) move out of `call` into the [`LentReply`]; on error they
/// go back to the pool (left in `call`, or through the return queue).
pub(super) fn assemble_lent<R: RemoteRegion>(
    hdr: &Header<'_>,
    bytes: &[u8],
    call: &mut Pending<R>,
    home: &Arc<Returns<R>>,
) -> Result<LentReply<R>, ClientError> {
    let (body, write) = locate(hdr, bytes, call)?;
    // Every check before any region leaves the call.
    let bulk_len = match (&call.write, write) {
        (Some(offered), Some(chunk)) => Some(offered.written_len(chunk)?),
        _ => None,
    };
    let (results, reply_path) = match body {
        Body::Inline(b) => {
            let at = rpc_results_offset(hdr, b)?;
            (
                Results::Inline(b.get(at..).unwrap_or_default().to_vec()),
                ReplyPath::Inline,
            )
        }
        Body::ReplyChunk(returned) => {
            let offered = call.reply.take().ok_or(NO_REPLY_CHUNK)?;
            let n = match offered.written_len(returned) {
                Ok(n) => n,
                Err(e) => {
                    call.reply = Some(offered);
                    return Err(e);
                }
            };
            let mut lent = LentBytes::new(offered.mr, 0..n, Arc::clone(home));
            // On error `lent` drops: its region goes back to the pool.
            let at = rpc_results_offset(hdr, &lent)?;
            lent.skip(at);
            (Results::InPlace(lent), ReplyPath::ReplyChunk)
        }
    };
    let bulk = match (bulk_len, call.write.take()) {
        (Some(n), Some(offered)) => Some(LentBytes::new(offered.mr, 0..n, Arc::clone(home))),
        (_, w) => {
            call.write = w;
            None
        }
    };
    Ok(LentReply {
        xid: hdr.xid(),
        call_path: call.path,
        reply_path,
        credits: hdr.credits(),
        results,
        bulk,
    })
}
