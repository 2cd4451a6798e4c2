//! The mock's error type: one small `Copy` enum, mapped onto core's
//! [`ErrorKind`] so generic transport code reacts to it like to any backend.

use core::fmt;
use rdmaxprt_core::backend::{Error, ErrorKind, Sge};

/// Everything a mock device or QP call can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MockError {
    /// Every Send Queue slot is held by a WR whose completion has not been
    /// polled yet.
    SendQueueFull,
    /// Every Receive Queue slot is held.
    RecvQueueFull,
    /// The QP is in the error state (drained, faulted or disconnected).
    QpError,
    /// A WR carries more SGEs than the QP allows.
    TooManySges {
        /// The QP's limit.
        max: u32,
        /// SGEs in the rejected WR.
        got: usize,
    },
    /// `offset..offset + len` is outside the buffer, or longer than an SGE
    /// can describe.
    OutOfRange {
        /// Requested offset.
        offset: usize,
        /// Requested length.
        len: usize,
        /// The buffer's length.
        buf_len: usize,
    },
    /// The buffer was allocated by another `MockDevice`.
    ForeignBuffer,
    /// `dma_unmap` of an SGE that is not (or no longer) mapped.
    BadMapping(Sge),
    /// A fault the injector (or `inject_next_post_failure`) produced.
    InjectedPostFailure,
    /// A zero-depth queue or otherwise unusable QP configuration.
    InvalidConfig,
    /// The host could not provide a resource (the NIC thread).
    OutOfResources,
}

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MockError::SendQueueFull => f.write_str("mock send queue full"),
            MockError::RecvQueueFull => f.write_str("mock receive queue full"),
            MockError::QpError => f.write_str("mock QP is in the error state"),
            MockError::TooManySges { max, got } => {
                write!(f, "WR has {got} SGEs, the QP allows {max}")
            }
            MockError::OutOfRange {
                offset,
                len,
                buf_len,
            } => write!(
                f,
                "range {offset}+{len} outside a {buf_len}-byte mock buffer"
            ),
            MockError::ForeignBuffer => f.write_str("buffer belongs to another mock device"),
            MockError::BadMapping(sge) => write!(
                f,
                "unmap of unknown or already-unmapped SGE addr={:#x} len={} lkey={:#x}",
                sge.addr, sge.length, sge.lkey
            ),
            MockError::InjectedPostFailure => f.write_str("injected post failure"),
            MockError::InvalidConfig => f.write_str("invalid mock QP configuration"),
            MockError::OutOfResources => f.write_str("mock device out of resources"),
        }
    }
}

impl Error for MockError {
    fn kind(&self) -> ErrorKind {
        match self {
            MockError::SendQueueFull => ErrorKind::SendQueueFull,
            MockError::RecvQueueFull => ErrorKind::RecvQueueFull,
            MockError::QpError => ErrorKind::QpError,
            MockError::TooManySges { .. }
            | MockError::OutOfRange { .. }
            | MockError::ForeignBuffer
            | MockError::InvalidConfig => ErrorKind::InvalidArgument,
            MockError::BadMapping(_) => ErrorKind::BadMapping,
            // An injected post failure stands in for the ENOMEM a real
            // `ibv_post_send` returns when the provider runs short.
            MockError::InjectedPostFailure | MockError::OutOfResources => ErrorKind::OutOfResources,
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MockError {}
