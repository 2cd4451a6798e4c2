//! Typed errors of the ONC RPC codec (also used by the RPC-over-RDMA
//! encoders, which share the XDR writer).

use core::fmt;

use super::{AcceptStat, AuthStat, RejectStat, ReplyStat};

#[cfg(feature = "std")]
extern crate std;

/// Encoding into a caller-provided buffer failed; nothing usable was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The buffer cannot hold the encoded message.
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// An input field is longer than the protocol allows.
    LimitExceeded {
        /// Which field.
        field: &'static str,
        /// Its length (bytes or items).
        len: usize,
        /// The protocol's maximum.
        max: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed, available } => {
                write!(
                    f,
                    "encode buffer too small: need {needed} bytes, have {available}"
                )
            }
            Self::LimitExceeded { field, len, max } => {
                write!(f, "{field} is {len} long, the protocol allows {max}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// A CALL header could not be accepted. [`CallDecodeError::reply`] says what
/// to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallDecodeError {
    /// The fixed part of the header (xid .. proc, 24 bytes) is incomplete.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// `msg_type` is not CALL (a REPLY, or garbage).
    NotACall {
        /// The `msg_type` found.
        msg_type: u32,
    },
    /// `rpcvers` is not 2.
    RpcVersion {
        /// The version found.
        vers: u32,
    },
    /// The credential or verifier runs past the end of the message.
    AuthTruncated,
    /// A credential flavor this server does not accept.
    UnsupportedFlavor {
        /// The flavor found.
        flavor: u32,
    },
    /// The credential body is malformed (too long, a too-long machinename,
    /// too many gids, or a length that does not match its contents).
    BadCredential,
    /// The verifier is not an empty AUTH_NONE verifier.
    BadVerifier,
}

impl CallDecodeError {
    /// The reply this error deserves, or `None` when the message must be
    /// dropped silently (there is no trustworthy call to answer).
    pub const fn reply(self) -> Option<ReplyStat> {
        match self {
            Self::Truncated { .. } | Self::NotACall { .. } => None,
            Self::RpcVersion { .. } => Some(ReplyStat::RPC_MISMATCH),
            Self::AuthTruncated => Some(ReplyStat::Accepted(AcceptStat::GarbageArgs)),
            Self::UnsupportedFlavor { .. } | Self::BadCredential => {
                Some(ReplyStat::Denied(RejectStat::AuthError(AuthStat::BadCred)))
            }
            Self::BadVerifier => Some(ReplyStat::Denied(RejectStat::AuthError(AuthStat::BadVerf))),
        }
    }
}

impl fmt::Display for CallDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { len } => write!(f, "RPC call header truncated at {len} bytes"),
            Self::NotACall { msg_type } => write!(f, "RPC msg_type {msg_type} is not CALL"),
            Self::RpcVersion { vers } => write!(f, "RPC version {vers}, expected 2"),
            Self::AuthTruncated => f.write_str("RPC credential or verifier truncated"),
            Self::UnsupportedFlavor { flavor } => write!(f, "unsupported auth flavor {flavor}"),
            Self::BadCredential => f.write_str("malformed RPC credential"),
            Self::BadVerifier => f.write_str("RPC verifier is not empty AUTH_NONE"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CallDecodeError {}

/// A REPLY header (client side) could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyDecodeError {
    /// The message ends inside the reply header.
    Truncated,
    /// `msg_type` is not REPLY.
    NotAReply {
        /// The `msg_type` found.
        msg_type: u32,
    },
    /// `reply_stat`, `accept_stat`, `reject_stat` or `auth_stat` has a value
    /// RFC 5531 does not define.
    BadDiscriminant {
        /// The value found.
        value: u32,
    },
    /// The verifier body is longer than 400 bytes.
    BadVerifier,
}

impl fmt::Display for ReplyDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated => f.write_str("RPC reply header truncated"),
            Self::NotAReply { msg_type } => write!(f, "RPC msg_type {msg_type} is not REPLY"),
            Self::BadDiscriminant { value } => write!(f, "undefined RPC reply status {value}"),
            Self::BadVerifier => f.write_str("RPC reply verifier longer than 400 bytes"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ReplyDecodeError {}
