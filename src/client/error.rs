//! The client's typed errors.

use super::Ticket;
use rdmaxprt_core::backend::{Error as BackendError, ErrorKind};
use rdmaxprt_core::oncrpc::{AcceptStat, EncodeError, RejectStat, ReplyDecodeError};
use rdmaxprt_core::rpcrdma::DecodeError;

/// A backend error, type-erased so [`ClientError`] is not generic.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a client operation failed. Nothing the server sends makes the client
/// panic: every malformed or unexpected reply ends up here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A backend call (map, register, post, poll) failed.
    #[error("backend {op} failed ({kind}): {source}")]
    Backend {
        /// Which operation.
        op: &'static str,
        /// The backend-independent class of the error.
        kind: ErrorKind,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The configuration cannot work (no credits, a threshold too small
    /// for any header...).
    #[error("invalid client configuration: {0}")]
    InvalidConfig(&'static str),
    /// The call options cannot be honoured.
    #[error("invalid call options: {0}")]
    InvalidOptions(&'static str),
    /// Encoding the RPC call header failed (e.g. an AUTH_SYS field is too
    /// long).
    #[error("encoding the call failed: {0}")]
    Encode(#[from] EncodeError),
    /// Even without its RPC message, the transport header does not fit the
    /// inline threshold (too many chunk segments).
    #[error("transport header of {needed} bytes exceeds the inline threshold of {threshold}")]
    HeaderTooLarge {
        /// Bytes the header needs.
        needed: usize,
        /// The inline threshold.
        threshold: usize,
    },
    /// The server answered `RDMA_ERROR` / `ERR_VERS`.
    #[error("server does not speak RPC-over-RDMA version 1 (supports {low}..={high})")]
    RdmaVers {
        /// Lowest version the server supports.
        low: u32,
        /// Highest version the server supports.
        high: u32,
    },
    /// The server answered `RDMA_ERROR` / `ERR_CHUNK`: it could not parse
    /// the call's chunks, or the reply fits nothing the call offered.
    #[error("server answered ERR_CHUNK")]
    RdmaChunk,
    /// The reply's transport header is malformed.
    #[error("malformed reply transport header: {0}")]
    BadReplyHeader(#[source] DecodeError),
    /// The RPC reply message is malformed.
    #[error("malformed RPC reply: {0}")]
    BadRpcReply(#[source] ReplyDecodeError),
    /// The reply breaks RPC-over-RDMA rules (chunks the call did not offer,
    /// lengths beyond what was offered...).
    #[error("reply violates RPC-over-RDMA: {0}")]
    ProtocolViolation(&'static str),
    /// The RPC reply's xid differs from the transport header's.
    #[error("RPC reply xid {got:#x} does not match the call's {expected:#x}")]
    XidMismatch {
        /// The call's xid.
        expected: u32,
        /// The xid in the RPC reply.
        got: u32,
    },
    /// The server denied the call (`MSG_DENIED`).
    #[error("call denied: {0:?}")]
    Denied(RejectStat),
    /// The server accepted the call but did not run it successfully.
    #[error("call not executed: {0:?}")]
    NotSuccess(AcceptStat),
    /// The connection failed (a flushed or failed completion); every call
    /// in flight fails with this.
    #[error("connection lost")]
    Disconnected,
    /// No reply within the configured timeout. The call stays in flight
    /// (its buffers stay registered): wait again with the returned ticket.
    #[error("timed out waiting for the reply")]
    Timeout {
        /// The ticket, to wait again.
        ticket: Ticket,
    },
    /// No credit came back within the configured timeout.
    #[error("timed out waiting for a credit")]
    NoCredit,
    /// [`wait_lent`](super::RpcClient::wait_lent) was given the ticket of
    /// a call started with copied arguments
    /// ([`start_call`](super::RpcClient::start_call)), whose reply cannot
    /// be lent: wait for it with [`wait`](super::RpcClient::wait).
    #[error("the call was not started with lent arguments")]
    NotLent {
        /// The ticket, to wait with `wait`.
        ticket: Ticket,
    },
    /// [`try_wait_lent`](super::RpcClient::try_wait_lent) was given the
    /// ticket of a call started with copied arguments (the ticket stays
    /// valid for [`try_wait`](super::RpcClient::try_wait)).
    #[error("the ticket is not a lent call's")]
    NotLentTicket,
    /// The ticket names no call of this client (already waited for).
    #[error("unknown ticket")]
    UnknownTicket,
}

impl ClientError {
    /// Wraps a backend error from operation `op`.
    pub fn backend<E>(op: &'static str, e: E) -> Self
    where
        E: BackendError + std::error::Error + Send + Sync + 'static,
    {
        Self::Backend {
            op,
            kind: e.kind(),
            source: Box::new(e),
        }
    }
}
