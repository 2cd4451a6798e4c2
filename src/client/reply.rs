//! Turning a received reply into the call's result: the transport header
//! (`RDMA_MSG`, `RDMA_NOMSG` with the Reply chunk, `RDMA_ERROR`), the Write
//! chunk's bytes, and the RPC reply header.

use super::backend::RemoteRegion;
use super::chunk::Offered;
use super::error::ClientError;
use super::spare::ReplySpares;
use super::types::{CallPath, ReplyBytes, ReplyPath};
use rdmaxprt_core::oncrpc::{self, AcceptStat, ReplyStat};
use rdmaxprt_core::rpcrdma::{Header, Proc, RdmaError};
use std::borrow::Cow;

/// A call in flight: its path and, if it offered chunks, the key of its
/// [`Offers`] in the client's slab (the table entry stays small, and the
/// offers need no allocation per call).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) path: CallPath,
    pub(super) offers: Option<usize>,
}

/// The regions a call offered, which stay registered until its reply
/// arrives (the server may still RDMA them until then).
pub(super) struct Offers<R> {
    /// Held, never read: the server may RDMA Read it until the reply.
    pub(super) _read: Option<Offered<R>>,
    pub(super) write: Option<Offered<R>>,
    pub(super) reply: Option<Offered<R>>,
}

/// Builds the result of one call from its reply, into buffers from
/// `spare` where it has some.
pub(super) fn assemble<R: RemoteRegion>(
    hdr: &Header<'_>,
    bytes: &[u8],
    path: CallPath,
    offers: Option<&Offers<R>>,
    spare: &mut ReplySpares,
) -> Result<ReplyBytes, ClientError> {
    let (body, reply_path) = match hdr.proc() {
        Proc::Error => {
            return Err(match hdr.rdma_error() {
                Some(RdmaError::Vers { low, high }) => ClientError::RdmaVers { low, high },
                Some(RdmaError::Chunk) => ClientError::RdmaChunk,
                None => ClientError::ProtocolViolation("RDMA_ERROR without an error code"),
            })
        }
        Proc::Msg => {
            let body = bytes
                .get(hdr.header_len()..)
                .ok_or(ClientError::ProtocolViolation("header longer than message"))?;
            (Cow::Borrowed(body), ReplyPath::Inline)
        }
        Proc::NoMsg => {
            let offered = offers.and_then(|o| o.reply.as_ref());
            let (Some(offered), Some(returned)) = (offered, hdr.reply_chunk()) else {
                return Err(ClientError::ProtocolViolation(
                    "RDMA_NOMSG reply but the call offered no Reply chunk",
                ));
            };
            (
                Cow::Owned(offered.gather(returned, spare.results.take())?),
                ReplyPath::ReplyChunk,
            )
        }
        Proc::Done | Proc::MsgP => {
            return Err(ClientError::ProtocolViolation(
                "reply is neither RDMA_MSG, RDMA_NOMSG nor RDMA_ERROR",
            ))
        }
    };
    let offered_write = offers.and_then(|o| o.write.as_ref());
    if offered_write.is_none() && hdr.write_list().is_empty() {
        // The usual inline call: no Write chunk either way.
        return finish_reply(hdr, body, path, reply_path, None, spare);
    }
    let mut returned = hdr.write_list().iter();
    let bulk = match (offered_write, returned.next()) {
        (Some(offered), Some(chunk)) => Some(offered.gather(chunk, spare.bulk.take())?),
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
    finish_reply(hdr, body, path, reply_path, bulk, spare)
}

/// The RPC reply header of `body` checked against the transport header,
/// and the results copied out past it.
fn finish_reply(
    hdr: &Header<'_>,
    body: Cow<'_, [u8]>,
    path: CallPath,
    reply_path: ReplyPath,
    bulk: Option<Vec<u8>>,
    spare: &mut ReplySpares,
) -> Result<ReplyBytes, ClientError> {
    let rpc = oncrpc::decode_reply(&body).map_err(ClientError::BadRpcReply)?;
    if rpc.xid != hdr.xid() {
        return Err(ClientError::XidMismatch {
            expected: hdr.xid(),
            got: rpc.xid,
        });
    }
    match rpc.stat {
        ReplyStat::Accepted(AcceptStat::Success) => {}
        ReplyStat::Accepted(a) => return Err(ClientError::NotSuccess(a)),
        ReplyStat::Denied(d) => return Err(ClientError::Denied(d)),
    }
    let body_offset = rpc.body_offset;
    // One copy of the results: out of the receive buffer, or the
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
        call_path: path,
        reply_path,
        credits: hdr.credits(),
    })
}
