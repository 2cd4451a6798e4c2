//! Transport errors.

use crate::backend::Error as BackendError;
use core::fmt;

/// Why a transport operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum XprtError<E> {
    /// The transport is closing or closed.
    Closed,
    /// A backend call failed.
    Backend(E),
    /// The reply does not fit anything the client offered (inline
    /// threshold, Reply chunk); the client got `ERR_CHUNK`.
    ReplyTooLarge {
        /// Bytes the reply needed.
        needed: usize,
    },
    /// A bulk payload is longer than the client's Write chunk.
    WriteChunkTooSmall {
        /// Payload bytes.
        payload: usize,
        /// Chunk bytes.
        chunk: u64,
    },
    /// An internal limit (SGEs, header space) was exceeded.
    Internal(&'static str),
}

impl<E: fmt::Display> fmt::Display for XprtError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XprtError::Closed => f.write_str("transport closed"),
            XprtError::Backend(e) => write!(f, "backend: {e}"),
            XprtError::ReplyTooLarge { needed } => {
                write!(
                    f,
                    "reply of {needed} bytes fits neither inline nor a Reply chunk"
                )
            }
            XprtError::WriteChunkTooSmall { payload, chunk } => {
                write!(
                    f,
                    "payload of {payload} bytes exceeds the {chunk}-byte Write chunk"
                )
            }
            XprtError::Internal(what) => write!(f, "internal limit: {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug + fmt::Display> std::error::Error for XprtError<E> {}

impl<E: BackendError> XprtError<E> {
    /// Whether the connection must be closed.
    pub fn is_fatal(&self) -> bool {
        match self {
            XprtError::Closed | XprtError::Internal(_) => true,
            XprtError::Backend(e) => !matches!(e.kind(), crate::backend::ErrorKind::SendQueueFull),
            _ => false,
        }
    }
}
