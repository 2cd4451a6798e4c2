//! An RPC-over-RDMA version 1 client (RFC 8166 requester side, RFC 5531
//! calls), for tests, examples and load generation against the server
//! transport.
//!
//! [`RpcClient`] is generic over the backend through [`RemoteMemory`]
//! (registering buffers the server RDMA Reads and Writes), core's
//! [`QueuePair`](rdmaxprt_core::backend::QueuePair) and [`CompletionWait`];
//! all three are implemented for the mock NIC behind the `mock` feature.
//!
//! What a call does:
//! - builds the ONC RPC call (AUTH_NONE or AUTH_SYS) and the transport
//!   header: `RDMA_MSG` inline when header and call fit the inline
//!   threshold, else `RDMA_NOMSG` with the whole call in a Position Zero
//!   Read chunk; optionally a positional Read chunk for a large opaque
//!   argument ([`CallOptions::read_payload`]);
//! - offers a Write chunk for bulk results and/or a Reply chunk for a long
//!   reply ([`CallOptions`]);
//! - matches the reply by xid (many calls may be in flight:
//!   [`RpcClient::start_call`] / [`RpcClient::wait`], or
//!   [`RpcClient::call_many`]), never exceeding the server's credit grant;
//! - decodes `RDMA_MSG`, `RDMA_NOMSG` (Reply chunk) and `RDMA_ERROR`
//!   (typed: [`ClientError::RdmaVers`], [`ClientError::RdmaChunk`]), and
//!   returns the results plus the Write chunk's bytes ([`ReplyBytes`]);
//! - or, with the lending API, sends arguments the caller wrote in place
//!   into a registered buffer of the chunk pool and hands the reply's
//!   chunks out where the server wrote them, no host copy either way
//!   ([`RpcClient::lend`] -> [`LentBuf`], [`RpcClient::start_lent`],
//!   [`RpcClient::wait_lent`] -> [`LentReply`] / [`LentBytes`]);
//! - encodes each call straight into a send buffer of a ring mapped once
//!   (reused when its Send completes), lends chunk regions from a pool
//!   registered once per connection (given back when the reply is in), and
//!   finds calls by xid in an xid-indexed table; teardown drains the QP,
//!   then unmaps and deregisters everything.
//!
//! ```
//! use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient};
//! use rdmaxprt::mock::{MockDevice, QpConfig};
//!
//! let dev = MockDevice::new();
//! let (cq, _server_qp) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
//! let client = RpcClient::new(cq, dev.clone(), ClientConfig::default()).unwrap();
//! // 1024-byte threshold - 28-byte transport header - 40-byte RPC header.
//! assert_eq!(client.inline_args_limit(&CallOptions::default()), 956);
//! drop(client);
//! dev.assert_clean();
//! ```
//!
//! Not supported: a Write list of more than one chunk, Read chunks at more
//! than one position, RDMA_MSGP, multiple-SGE receives, backchannel.

mod backend;
mod calls;
mod chunk;
#[cfg(feature = "verbs")]
mod connect;
mod error;
mod lend;
mod post;
mod reply;
mod rpc;
mod spare;
mod types;

pub use crate::completion::CompletionWait;
pub use backend::{RemoteMemory, RemoteRegion};
#[cfg(feature = "verbs")]
pub use connect::{connect_rdma, ConnectConfig, VerbsClient};
pub use error::{BoxError, ClientError};
pub use lend::{LentBuf, LentBytes, LentReply};
pub use rpc::RpcClient;
pub use types::{
    Auth, AuthSysParams, CallOptions, CallPath, CallRequest, ClientConfig, ClientStats, ReplyBytes,
    ReplyPath, Ticket,
};
