//! ONC RPC version 2 message layer (RFC 5531), zero-copy and allocation-free.
//!
//! The server side decodes a CALL header in place ([`decode_call`]), giving a
//! borrowed view of the credential and the offset of the procedure
//! arguments, and encodes REPLY headers into a caller-provided buffer
//! ([`encode_reply`]); the procedure's results are appended by the caller.
//! The client side mirrors it: [`encode_call`] and [`decode_reply`].
//!
//! Every decode failure is a small `Copy` error that says which reply it
//! deserves ([`CallDecodeError::reply`]), following what the Linux server
//! (`svc_process_common`, `svcauth_null_accept`, `svcauth_unix_accept`)
//! sends: truncated or non-CALL messages are dropped, a wrong RPC version
//! gets `RPC_MISMATCH`, a bad credential `AUTH_BADCRED`, a bad verifier
//! `AUTH_BADVERF`, and an unsupported flavor `AUTH_BADCRED`.
//!
//! # Why not the `onc-rpc` crate
//! `onc-rpc` is zero-copy on decode, but it is built on `std::io`
//! (`Cursor`, `Write`, `byteorder`) and serialises through `Vec`, so it
//! cannot be used from this `no_std`, allocation-free core. The subset needed
//! here (one CALL header, one REPLY header, AUTH_NONE and AUTH_SYS) is small
//! enough to write directly against RFC 5531.

#![deny(unsafe_code)]

mod call;
mod error;
mod reply;
#[cfg(test)]
mod tests;
pub(crate) mod xdr;

pub use call::{
    decode_call, encode_call, AuthSys, AuthSysSpec, CallHeader, CallSpec, Credential, Gids,
    GidsIter,
};
pub use error::{CallDecodeError, EncodeError, ReplyDecodeError};
pub use reply::{decode_reply, encode_reply, Reply};

/// The only RPC protocol version (RFC 5531 section 8).
pub const RPC_VERSION: u32 = 2;
/// `msg_type` of a call.
pub const MSG_CALL: u32 = 0;
/// `msg_type` of a reply.
pub const MSG_REPLY: u32 = 1;
/// `reply_stat` of a reply whose credentials were accepted.
pub const MSG_ACCEPTED: u32 = 0;
/// `reply_stat` of a rejected call.
pub const MSG_DENIED: u32 = 1;
/// Auth flavor with no credential data.
pub const AUTH_NONE: u32 = 0;
/// Auth flavor carrying Unix-style uid/gid credentials (also `AUTH_UNIX`).
pub const AUTH_SYS: u32 = 1;
/// Largest `opaque_auth` body (RFC 5531 section 8.2).
pub const MAX_AUTH_BYTES: usize = 400;
/// Largest `machinename` in AUTH_SYS credentials (RFC 5531 appendix A).
pub const MAX_MACHINENAME: usize = 255;
/// Largest number of supplementary gids in AUTH_SYS credentials.
pub const MAX_GIDS: usize = 16;

/// Reads the transaction id (the first word) of an RPC message, so a
/// caller can still answer a message that failed to decode.
pub fn peek_xid(buf: &[u8]) -> Option<u32> {
    xdr::first_word(buf)
}

/// An `opaque_auth` as it appears on the wire: flavor and raw body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpaqueAuth<'a> {
    /// Auth flavor number.
    pub flavor: u32,
    /// The body, at most [`MAX_AUTH_BYTES`] long.
    pub body: &'a [u8],
}

/// Why authentication failed (`auth_stat`, RFC 5531 section 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStat {
    /// Success (never sent in an `AUTH_ERROR`).
    Ok = 0,
    /// Bad credential (seal broken), or a flavor the server does not take.
    BadCred = 1,
    /// The client must begin a new session.
    RejectedCred = 2,
    /// Bad verifier (seal broken).
    BadVerf = 3,
    /// Verifier expired or replayed.
    RejectedVerf = 4,
    /// Rejected for security reasons.
    TooWeak = 5,
    /// Bogus response verifier.
    InvalidResp = 6,
    /// Reason unknown.
    Failed = 7,
    /// RPCSEC_GSS: no credentials for the user.
    GssCredProblem = 13,
    /// RPCSEC_GSS: problem with the context.
    GssCtxProblem = 14,
}

impl AuthStat {
    /// The value for a wire `auth_stat`, if it is a known one.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::BadCred,
            2 => Self::RejectedCred,
            3 => Self::BadVerf,
            4 => Self::RejectedVerf,
            5 => Self::TooWeak,
            6 => Self::InvalidResp,
            7 => Self::Failed,
            13 => Self::GssCredProblem,
            14 => Self::GssCtxProblem,
            _ => return None,
        })
    }
}

/// Outcome of a call whose credentials were accepted (`accept_stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptStat {
    /// Executed; the procedure's results follow the header.
    Success,
    /// The program is not exported here.
    ProgUnavail,
    /// The program is exported, but not this version.
    ProgMismatch {
        /// Lowest version supported.
        low: u32,
        /// Highest version supported.
        high: u32,
    },
    /// The program cannot support this procedure.
    ProcUnavail,
    /// The procedure cannot decode its arguments.
    GarbageArgs,
    /// A server-side error such as a memory allocation failure.
    SystemErr,
}

/// Why a call was rejected (`reject_stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectStat {
    /// The RPC version was not 2.
    RpcMismatch {
        /// Lowest RPC version supported.
        low: u32,
        /// Highest RPC version supported.
        high: u32,
    },
    /// The caller failed authentication.
    AuthError(AuthStat),
}

/// The status part of a reply header: accepted or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStat {
    /// `MSG_ACCEPTED` with this `accept_stat`.
    Accepted(AcceptStat),
    /// `MSG_DENIED` with this `reject_stat`.
    Denied(RejectStat),
}

impl ReplyStat {
    /// The `RPC_MISMATCH` denial this implementation sends (low = high = 2).
    pub const RPC_MISMATCH: Self = Self::Denied(RejectStat::RpcMismatch {
        low: RPC_VERSION,
        high: RPC_VERSION,
    });
}
