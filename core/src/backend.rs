//! What a NIC must provide: DMA mapping, posting, polling, draining, and its
//! limits. Implemented by `rdmaxprt-mock` (in-memory), `rdmaxprt-verbs`
//! (libibverbs) and through it `rdmaxprt-rxe`.
//!
//! Errors follow the embedded-hal pattern: each backend has its own error
//! type, and [`Error::kind`] maps it onto the backend-independent
//! [`ErrorKind`] so generic transport code can react (wait, close, retry).

use core::fmt;

/// A backend-independent classification of backend errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The Send Queue has no room (`ibv_post_send` returned ENOMEM).
    SendQueueFull,
    /// The Receive Queue has no room.
    RecvQueueFull,
    /// The QP is in the error state or otherwise unusable; close it.
    QpError,
    /// The peer went away or the connection was never made.
    NotConnected,
    /// A local or remote key, address or length was rejected.
    AccessDenied,
    /// An argument was outside what the device supports (too many SGEs...).
    InvalidArgument,
    /// The device could not allocate memory or resources.
    OutOfResources,
    /// A mapping was unknown, already unmapped, or otherwise misused.
    BadMapping,
    /// The device disappeared.
    DeviceGone,
    /// Anything else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::SendQueueFull => "send queue full",
            ErrorKind::RecvQueueFull => "receive queue full",
            ErrorKind::QpError => "queue pair in error state",
            ErrorKind::NotConnected => "not connected",
            ErrorKind::AccessDenied => "access denied (key, address or length)",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::OutOfResources => "out of device resources",
            ErrorKind::BadMapping => "bad DMA mapping",
            ErrorKind::DeviceGone => "device gone",
            ErrorKind::Other => "other backend error",
        };
        f.write_str(s)
    }
}

/// A backend error: anything with a [`kind`](Error::kind).
pub trait Error: fmt::Debug + fmt::Display {
    /// The backend-independent class of this error.
    fn kind(&self) -> ErrorKind;
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// Declares a backend's error type.
pub trait ErrorType {
    /// The backend's error.
    type Error: Error;
}

/// One scatter/gather element, as the NIC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sge {
    /// Device address of the first byte.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
    /// Local key of the registration covering `addr..addr + length`.
    pub lkey: u32,
}

/// A buffer a backend can map for DMA.
pub trait DmaBuf {
    /// The bytes.
    fn as_slice(&self) -> &[u8];
    /// The bytes, writable (only while not posted).
    fn as_mut_slice(&mut self) -> &mut [u8];
}

/// DMA mapping: the expensive part the seed moves off the completion path.
pub trait DmaDevice: ErrorType {
    /// An owned buffer (page, pool chunk) this device can map.
    type Buf: DmaBuf + Send;

    /// Allocates a buffer of `len` bytes suitable for mapping.
    fn alloc_buf(&self, len: usize) -> Result<Self::Buf, Self::Error>;

    /// Maps `buf[offset..offset + len]` for the device to read or write.
    /// Cheap for a pre-registered pool; a registration (or strict-IOMMU
    /// mapping) otherwise.
    fn dma_map(&self, buf: &Self::Buf, offset: usize, len: usize) -> Result<Sge, Self::Error>;

    /// Undoes one [`dma_map`](DmaDevice::dma_map). May be expensive (a
    /// synchronous IOTLB invalidation, an MR deregistration). An unknown or
    /// already-unmapped `sge` is an error, never undefined behaviour.
    fn dma_unmap(&self, sge: Sge) -> Result<(), Self::Error>;
}

/// What a work request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrOp {
    /// Two-sided Send.
    Send,
    /// Send that also invalidates the peer's `rkey` (Send-with-Invalidate).
    SendInv {
        /// The remote key to invalidate.
        rkey: u32,
    },
    /// RDMA Write into the peer's memory.
    Write {
        /// Remote address.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
    },
    /// RDMA Read from the peer's memory.
    Read {
        /// Remote address.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
    },
}

/// One Send Queue work request of a chain.
#[derive(Debug, Clone, Copy)]
pub struct SendWr<'a> {
    /// Returned in the completion.
    pub wr_id: u64,
    /// The operation.
    pub op: WrOp,
    /// Local memory (gather for Send/Write, scatter for Read).
    pub sges: &'a [Sge],
    /// Whether a completion is generated on success.
    pub signaled: bool,
}

/// One Receive Queue work request.
#[derive(Debug, Clone, Copy)]
pub struct RecvWr {
    /// Returned in the completion.
    pub wr_id: u64,
    /// Where the received bytes land.
    pub sge: Sge,
}

/// A failed post: how many WRs of the chain the device took before failing.
#[derive(Debug)]
pub struct PostError<E> {
    /// WRs accepted before the failing one. `0` means nothing was consumed:
    /// no completion will come, so the poster must undo its accounting.
    pub consumed: usize,
    /// Why it failed.
    pub error: E,
}

impl<E: fmt::Display> fmt::Display for PostError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "post failed after {} WRs: {}", self.consumed, self.error)
    }
}

/// Work completion status. Only `wr_id` and `status` are valid unless the
/// status is [`WcStatus::Success`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WcStatus {
    /// Completed.
    Success,
    /// Flushed because the QP entered the error state.
    Flushed,
    /// Local length error (e.g. receive buffer too small).
    LocalLength,
    /// Local protection error (bad lkey).
    LocalProtection,
    /// Remote access error (bad rkey, offset or length).
    RemoteAccess,
    /// Remote operation error.
    RemoteOp,
    /// Transport retries exhausted (peer gone).
    RetryExceeded,
    /// Any other device status, raw.
    Other(u32),
}

/// What a successful completion completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WcOpcode {
    /// A Send (or Send-with-Invalidate).
    Send,
    /// An RDMA Write.
    Write,
    /// An RDMA Read.
    Read,
    /// A Receive.
    Recv,
    /// Unknown or not valid (error completions).
    Unknown,
}

/// A work completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wc {
    /// The WR's id.
    pub wr_id: u64,
    /// Outcome.
    pub status: WcStatus,
    /// Valid only on success.
    pub opcode: WcOpcode,
    /// Bytes received (Recv) or transferred; valid only on success.
    pub byte_len: u32,
    /// The rkey the peer invalidated with Send-with-Invalidate, if any.
    pub invalidated_rkey: Option<u32>,
}

/// Device and QP limits the transport sizes itself from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Send Queue depth in WRs.
    pub sq_depth: u32,
    /// Receive Queue depth in WRs.
    pub rq_depth: u32,
    /// Maximum SGEs in one Send WR.
    pub max_send_sge: u32,
    /// Maximum SGEs in one Receive WR.
    pub max_recv_sge: u32,
    /// Maximum inline data bytes.
    pub max_inline: u32,
}

/// A connected queue pair: post, poll, drain.
pub trait QueuePair: ErrorType {
    /// The limits of this QP.
    fn caps(&self) -> Caps;

    /// Posts a chain of Send Queue WRs in order.
    ///
    /// # Safety
    /// The memory behind every SGE must stay valid (not freed, not unmapped,
    /// and for Read targets not otherwise accessed) until the completion for
    /// that WR's chain has been polled or the QP has been drained.
    unsafe fn post_send(&self, chain: &[SendWr<'_>]) -> Result<(), PostError<Self::Error>>;

    /// Posts Receive WRs.
    ///
    /// # Safety
    /// Each `sge` must stay valid and unaccessed by the host until its
    /// completion has been polled or the QP has been drained.
    unsafe fn post_recv(&self, wrs: &[RecvWr]) -> Result<(), PostError<Self::Error>>;

    /// Polls up to `out.len()` Send Queue completions.
    fn poll_send(&self, out: &mut [Wc]) -> Result<usize, Self::Error>;

    /// Polls up to `out.len()` Receive Queue completions.
    fn poll_recv(&self, out: &mut [Wc]) -> Result<usize, Self::Error>;

    /// Moves the QP to the error state and waits until every posted WR has
    /// completed or been flushed; their completions are then pollable.
    fn drain_qp(&self) -> Result<(), Self::Error>;
}
