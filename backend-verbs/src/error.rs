//! The one error type of the verbs backend.

use std::io;

/// What went wrong, one variant per failing verb. Every variant that comes
/// from a verb carries the errno as its `#[source]` (an [`io::Error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerbsError {
    /// `ibv_fork_init` failed (called after a registration, or unsupported).
    #[error("ibv_fork_init failed")]
    ForkInit(#[source] io::Error),
    /// `ibv_get_device_list` failed (no `ib_uverbs` module, no permission).
    #[error("ibv_get_device_list failed")]
    GetDeviceList(#[source] io::Error),
    /// No RDMA device has this name.
    #[error("no RDMA device named {name:?}")]
    DeviceNotFound {
        /// The name asked for.
        name: String,
    },
    /// `ibv_open_device` failed.
    #[error("ibv_open_device({name}) failed")]
    OpenDevice {
        /// Device name.
        name: String,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// `ibv_query_device` failed.
    #[error("ibv_query_device failed")]
    QueryDevice(#[source] io::Error),
    /// `ibv_query_port` failed.
    #[error("ibv_query_port(port {port}) failed")]
    QueryPort {
        /// Port number.
        port: u8,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// `ibv_query_gid` failed.
    #[error("ibv_query_gid(port {port}, index {index}) failed")]
    QueryGid {
        /// Port number.
        port: u8,
        /// GID table index.
        index: i32,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// The port has no IPv4-mapped GID (the netdev has no IPv4 address, or is down).
    #[error("port {port} has no IPv4-mapped GID (does the netdev have an address and is it up?)")]
    NoIpv4Gid {
        /// Port number.
        port: u8,
    },
    /// `ibv_alloc_pd` failed.
    #[error("ibv_alloc_pd failed")]
    AllocPd(#[source] io::Error),
    /// Mapping the memory of a pool failed (both huge and normal pages).
    #[error("mmap of a {len}-byte memory pool failed")]
    Mmap {
        /// Requested length.
        len: usize,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// `ibv_reg_mr` failed (often ENOMEM from RLIMIT_MEMLOCK).
    #[error("ibv_reg_mr of {len} bytes failed")]
    RegMr {
        /// Length of the region.
        len: usize,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// `ibv_create_comp_channel` failed.
    #[error("ibv_create_comp_channel failed")]
    CreateCompChannel(#[source] io::Error),
    /// `ibv_create_cq` failed.
    #[error("ibv_create_cq({depth}) failed")]
    CreateCq {
        /// Requested number of entries.
        depth: i32,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// `ibv_req_notify_cq` failed.
    #[error("ibv_req_notify_cq failed")]
    ReqNotifyCq(#[source] io::Error),
    /// `ibv_get_cq_event` (or waiting on the channel's fd) failed.
    #[error("ibv_get_cq_event failed")]
    GetCqEvent(#[source] io::Error),
    /// The CQ has no completion channel: it was created for busy polling.
    #[error("this CQ has no completion channel (busy-poll mode)")]
    NoCompletionChannel,
    /// `ibv_poll_cq` returned a negative value.
    #[error("ibv_poll_cq failed")]
    PollCq(#[source] io::Error),
    /// `ibv_create_qp` (or `rdma_create_qp`) failed.
    #[error("ibv_create_qp failed")]
    CreateQp(#[source] io::Error),
    /// `ibv_modify_qp` to the given state failed.
    #[error("ibv_modify_qp to {state} failed")]
    ModifyQp {
        /// Target state (INIT, RTR, RTS, ERR).
        state: &'static str,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// `ibv_post_send` failed with ENOMEM: the send queue has no room for the
    /// chain. Nothing from `index` on was posted; the caller should wait for
    /// completions and post the rest again (svcrdma's sc_sq_avail wait).
    #[error("send queue full at work request {index} of the chain")]
    SendQueueFull {
        /// Index in the chain of the first work request not posted.
        index: usize,
    },
    /// `ibv_post_send` failed with another errno.
    #[error("ibv_post_send failed at work request {index} of the chain")]
    PostSend {
        /// Index in the chain of the first work request not posted.
        index: usize,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// `ibv_post_recv` failed.
    #[error("ibv_post_recv failed at work request {index} of the chain")]
    PostRecv {
        /// Index in the chain of the first work request not posted.
        index: usize,
        /// errno.
        #[source]
        source: io::Error,
    },
    /// A scatter/gather entry does not lie inside its memory pool.
    #[error("sge [{offset}, +{len}) is outside the {pool_len}-byte pool")]
    SgeOutOfBounds {
        /// Offset into the pool.
        offset: usize,
        /// Length.
        len: usize,
        /// Pool length.
        pool_len: usize,
    },
    /// A wait for completions or a CM event ran past its deadline.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
    },
    /// `rdma_create_event_channel` failed.
    #[error("rdma_create_event_channel failed")]
    CmCreateEventChannel(#[source] io::Error),
    /// `rdma_create_id` failed.
    #[error("rdma_create_id failed")]
    CmCreateId(#[source] io::Error),
    /// `rdma_bind_addr` failed (ENODEV: no RDMA device on that address).
    #[error("rdma_bind_addr failed")]
    CmBindAddr(#[source] io::Error),
    /// `rdma_listen` failed.
    #[error("rdma_listen failed")]
    CmListen(#[source] io::Error),
    /// `rdma_resolve_addr` failed.
    #[error("rdma_resolve_addr failed")]
    CmResolveAddr(#[source] io::Error),
    /// `rdma_resolve_route` failed.
    #[error("rdma_resolve_route failed")]
    CmResolveRoute(#[source] io::Error),
    /// `rdma_get_cm_event` failed.
    #[error("rdma_get_cm_event failed")]
    CmGetEvent(#[source] io::Error),
    /// `rdma_migrate_id` failed.
    #[error("rdma_migrate_id failed")]
    CmMigrateId(#[source] io::Error),
    /// `rdma_create_qp` failed.
    #[error("rdma_create_qp failed")]
    CmCreateQp(#[source] io::Error),
    /// `rdma_connect` failed.
    #[error("rdma_connect failed")]
    CmConnect(#[source] io::Error),
    /// `rdma_accept` failed.
    #[error("rdma_accept failed")]
    CmAccept(#[source] io::Error),
    /// `rdma_reject` failed.
    #[error("rdma_reject failed")]
    CmReject(#[source] io::Error),
    /// `rdma_disconnect` failed.
    #[error("rdma_disconnect failed")]
    CmDisconnect(#[source] io::Error),
    /// A CM event other than the awaited one arrived (ADDR_ERROR, REJECTED,
    /// UNREACHABLE, ...).
    #[error("expected CM event {expected}, got {got} (status {status})")]
    CmUnexpectedEvent {
        /// The awaited event.
        expected: &'static str,
        /// The event that arrived (from `rdma_event_str`).
        got: String,
        /// The event's status (a negative errno, or a reject reason).
        status: i32,
    },
    /// Private data longer than the CM can carry in a connect/accept.
    #[error("private data of {len} bytes exceeds the {max}-byte CM limit")]
    PrivateDataTooLong {
        /// Given length.
        len: usize,
        /// Limit for this exchange.
        max: usize,
    },
    /// `dma_unmap` of an SGE that is not mapped (never, or already unmapped).
    #[error("dma_unmap of an unmapped range {addr:#x}+{len}")]
    UnknownMapping {
        /// Address of the SGE.
        addr: u64,
        /// Length of the SGE.
        len: u32,
    },
    /// A buffer larger than the DMA device's chunk size was asked for.
    #[error("buffer of {len} bytes exceeds the {chunk}-byte chunk size")]
    BufTooLarge {
        /// Requested length.
        len: usize,
        /// The device's chunk size.
        chunk: usize,
    },
    /// Every chunk of the DMA device's pool is in use.
    #[error("all {chunks} chunks of the memory pool are in use")]
    PoolExhausted {
        /// Number of chunks in the pool.
        chunks: usize,
    },
    /// The core's queue-pair adapter needs separate send and receive CQs
    /// (it polls them separately).
    #[error("the QP shares one CQ between its send and receive queues")]
    SharedCq,
    /// The CM id has no verbs context (address not resolved yet).
    #[error("the rdma_cm id is not bound to a device yet")]
    CmNoDevice,
}

/// Shorthand for results of this crate.
pub type Result<T, E = VerbsError> = std::result::Result<T, E>;

/// The errno of the last failing libc/verbs call.
pub(crate) fn last_errno() -> io::Error {
    io::Error::last_os_error()
}

/// Verbs that return an errno directly (post_send, modify_qp, ...): some
/// providers return it negated, some positive, a few return -1 and set errno.
pub(crate) fn errno_from_ret(ret: i32) -> io::Error {
    if ret == -1 {
        io::Error::last_os_error()
    } else {
        io::Error::from_raw_os_error(ret.abs())
    }
}
