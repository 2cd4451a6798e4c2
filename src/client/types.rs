//! The client's configuration, per-call options and results.

use core::time::Duration;
use rdmaxprt_core::oncrpc::AuthSysSpec;
use rdmaxprt_core::rpcrdma::{Limits, DEFAULT_INLINE_THRESHOLD, RPCRDMA_VERSION};

/// The RPC credential a call carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// AUTH_NONE.
    #[default]
    None,
    /// AUTH_SYS (Unix uid/gids).
    Sys(AuthSysParams),
}

impl Auth {
    /// The credential as the ONC RPC encoder takes it (`None` for
    /// AUTH_NONE).
    pub fn sys_spec(&self) -> Option<AuthSysSpec<'_>> {
        match self {
            Auth::None => None,
            Auth::Sys(p) => Some(AuthSysSpec {
                stamp: p.stamp,
                machinename: &p.machinename,
                uid: p.uid,
                gid: p.gid,
                gids: &p.gids,
            }),
        }
    }
}

/// An owned AUTH_SYS credential.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSysParams {
    /// Arbitrary id.
    pub stamp: u32,
    /// Host name, at most 255 bytes.
    pub machinename: Vec<u8>,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary groups, at most 16.
    pub gids: Vec<u32>,
}

/// Client sizing and behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Credits requested from the server: the most calls in flight, and the
    /// receives kept posted. The server's grant (1 until the first reply)
    /// may lower the limit.
    pub credits: u32,
    /// Largest message sent inline (the server's receive buffer) and,
    /// unless [`inline_recv_threshold`](Self::inline_recv_threshold) says
    /// otherwise, largest reply received inline (this client's receive
    /// buffers).
    pub inline_threshold: usize,
    /// Largest reply received inline when it differs from the send side
    /// (RFC 8797 negotiates the two directions separately); `None`: the
    /// same as `inline_threshold`.
    pub inline_recv_threshold: Option<usize>,
    /// Longest segment offered in a chunk; longer chunks are split into
    /// several segments of one registration.
    pub max_segment_len: u32,
    /// Most segments in one chunk (the server rejects more).
    pub max_chunk_segments: u32,
    /// How long [`wait`](super::RpcClient::wait) and a credit wait block.
    pub timeout: Duration,
    /// Credential of calls whose options name none.
    pub auth: Auth,
    /// The first transaction id.
    pub first_xid: u32,
    /// Limits applied when decoding reply headers.
    pub limits: Limits,
    /// Test only, not a stable API: the RPC-over-RDMA version written in
    /// every call's header (default [`RPCRDMA_VERSION`], 1). Any other
    /// value gets `RDMA_ERROR` / `ERR_VERS` from a conforming server, which
    /// the client returns as [`ClientError::RdmaVers`](super::ClientError::RdmaVers),
    /// whatever version the reply header carries (the Linux kernel's svcrdma
    /// echoes the caller's). The header layout stays version 1's.
    #[doc(hidden)]
    pub transport_version: u32,
}

impl ClientConfig {
    /// Largest reply received inline: the receive buffers' size.
    pub fn recv_threshold(&self) -> usize {
        self.inline_recv_threshold.unwrap_or(self.inline_threshold)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            credits: 32,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            inline_recv_threshold: None,
            max_segment_len: 1 << 20,
            max_chunk_segments: Limits::DEFAULT.max_segments_per_chunk,
            timeout: Duration::from_secs(10),
            auth: Auth::None,
            first_xid: 0x5200_0000,
            limits: Limits::DEFAULT,
            transport_version: RPCRDMA_VERSION,
        }
    }
}

/// What one call asks of the transport beyond its arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions<'a> {
    /// Offer a Write chunk of this many bytes for bulk results (e.g. READ
    /// data); the bytes written come back as [`ReplyBytes::bulk`].
    pub write_chunk: Option<u32>,
    /// Offer a Reply chunk of this many bytes for a reply too large to come
    /// back inline.
    pub reply_chunk: Option<u32>,
    /// A large opaque argument sent through a positional Read chunk placed
    /// right after `args` (which must then be a multiple of 4 bytes long):
    /// the server sees `args ++ read_payload ++ XDR padding`.
    pub read_payload: Option<&'a [u8]>,
    /// Send the call through a Position Zero Read chunk even if it would
    /// fit inline.
    pub force_position_zero: bool,
    /// Credential for this call (default: the client's).
    pub auth: Option<&'a Auth>,
}

/// One call of a [`call_many`](super::RpcClient::call_many) batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRequest<'a> {
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc: u32,
    /// XDR-encoded procedure arguments.
    pub args: &'a [u8],
    /// Transport options.
    pub opts: CallOptions<'a>,
}

/// How a call travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallPath {
    /// `RDMA_MSG`, the whole call inline.
    Inline,
    /// `RDMA_MSG` with a positional Read chunk carrying
    /// [`CallOptions::read_payload`].
    InlineWithReadChunk,
    /// `RDMA_NOMSG`: the whole call in a Position Zero Read chunk.
    PositionZero,
}

/// How a reply travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyPath {
    /// `RDMA_MSG`: inline after the transport header.
    Inline,
    /// `RDMA_NOMSG`: in the Reply chunk the call offered.
    ReplyChunk,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyBytes {
    /// The call's transaction id.
    pub xid: u32,
    /// The procedure's results (after the accepted-SUCCESS reply header).
    pub results: Vec<u8>,
    /// The bytes the server wrote into the Write chunk (exactly as many as
    /// it reported), if the call offered one.
    pub bulk: Option<Vec<u8>>,
    /// How the call was sent.
    pub call_path: CallPath,
    /// How the reply came back.
    pub reply_path: ReplyPath,
    /// Credits the server granted in this reply.
    pub credits: u32,
}

/// A call in flight; redeem it with [`wait`](super::RpcClient::wait).
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a started call holds a credit and buffers until waited for"]
pub struct Ticket {
    pub(super) xid: u32,
    /// Started with [`start_lent`](super::RpcClient::start_lent): its
    /// reply is lent ([`wait_lent`](super::RpcClient::wait_lent)).
    pub(super) lent: bool,
}

impl Ticket {
    /// The call's transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// Whether the call was started with lent arguments
    /// ([`start_lent`](super::RpcClient::start_lent)), so its reply can
    /// be taken lent.
    pub fn is_lent(&self) -> bool {
        self.lent
    }
}

/// Client counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls posted.
    pub calls: u64,
    /// Replies matched to a call (including error replies).
    pub replies: u64,
    /// Calls sent through a Position Zero Read chunk.
    pub position_zero_calls: u64,
    /// Calls with a positional Read chunk.
    pub read_chunk_calls: u64,
    /// Replies that came through the Reply chunk.
    pub reply_chunk_replies: u64,
    /// Most calls in flight at once.
    pub max_in_flight: u32,
    /// Times a call had to wait for a credit.
    pub credit_waits: u64,
    /// Receives whose xid matched no call in flight (dropped).
    pub unmatched_replies: u64,
    /// Replies that invalidated one of this client's rkeys
    /// (Send-with-Invalidate).
    pub remote_invalidations: u64,
    /// Chunk regions registered so far: the pool's misses (a region is
    /// registered once and reused by later calls).
    pub chunk_regions: u64,
    /// Send buffers allocated and mapped so far (the ring grows to the
    /// most Sends outstanding at once).
    pub send_buffers: u64,
    /// Replies built in a buffer handed back by
    /// [`RpcClient::recycle`](super::RpcClient::recycle) (counted per
    /// buffer: results and Write chunk bytes).
    pub reused_reply_buffers: u64,
}
