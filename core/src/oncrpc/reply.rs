//! REPLY headers: encoded on the server, decoded in place on the client.

use super::xdr::{Reader, Writer, WORD};
use super::{
    AcceptStat, AuthStat, EncodeError, OpaqueAuth, RejectStat, ReplyDecodeError, ReplyStat,
    AUTH_NONE, MAX_AUTH_BYTES, MSG_ACCEPTED, MSG_DENIED, MSG_REPLY,
};

// accept_stat and reject_stat wire values (RFC 5531 section 9).
const SUCCESS: u32 = 0;
const PROG_UNAVAIL: u32 = 1;
const PROG_MISMATCH: u32 = 2;
const PROC_UNAVAIL: u32 = 3;
const GARBAGE_ARGS: u32 = 4;
const SYSTEM_ERR: u32 = 5;
const RPC_MISMATCH: u32 = 0;
const AUTH_ERROR: u32 = 1;

impl ReplyStat {
    /// Exact number of bytes [`encode_reply`] writes for this status.
    pub const fn encoded_len(&self) -> usize {
        let words = match self {
            // xid, REPLY, ACCEPTED, verifier (2), accept_stat [, low, high]
            Self::Accepted(AcceptStat::ProgMismatch { .. }) => 8,
            Self::Accepted(_) => 6,
            // xid, REPLY, DENIED, reject_stat, low, high | auth_stat
            Self::Denied(RejectStat::RpcMismatch { .. }) => 6,
            Self::Denied(RejectStat::AuthError(_)) => 5,
        };
        words * WORD
    }
}

/// Encodes a REPLY header with an empty AUTH_NONE verifier into `buf` and
/// returns its length. For [`AcceptStat::Success`] the caller appends the
/// procedure's results at that offset.
#[inline]
pub fn encode_reply(buf: &mut [u8], xid: u32, stat: ReplyStat) -> Result<usize, EncodeError> {
    if stat == ReplyStat::Accepted(AcceptStat::Success) {
        if let Some(dst) = buf.get_mut(..SUCCESS_LEN) {
            // xid, REPLY, MSG_ACCEPTED, AUTH_NONE verifier (flavor, empty
            // body), SUCCESS: all zero but the first two words.
            let mut head = [0u8; SUCCESS_LEN];
            head[..4].copy_from_slice(&xid.to_be_bytes());
            head[4..8].copy_from_slice(&MSG_REPLY.to_be_bytes());
            dst.copy_from_slice(&head);
            return Ok(SUCCESS_LEN);
        }
    }
    encode_reply_general(buf, xid, stat)
}

/// Bytes of an accepted SUCCESS reply header with an `AUTH_NONE` verifier.
const SUCCESS_LEN: usize = 6 * WORD;

/// [`encode_reply`] without its SUCCESS shortcut.
pub(super) fn encode_reply_general(
    buf: &mut [u8],
    xid: u32,
    stat: ReplyStat,
) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf, stat.encoded_len())?;
    w.u32(xid);
    w.u32(MSG_REPLY);
    match stat {
        ReplyStat::Accepted(accept) => {
            w.u32(MSG_ACCEPTED);
            w.u32(AUTH_NONE);
            w.u32(0);
            match accept {
                AcceptStat::Success => w.u32(SUCCESS),
                AcceptStat::ProgUnavail => w.u32(PROG_UNAVAIL),
                AcceptStat::ProgMismatch { low, high } => {
                    w.u32(PROG_MISMATCH);
                    w.u32(low);
                    w.u32(high);
                }
                AcceptStat::ProcUnavail => w.u32(PROC_UNAVAIL),
                AcceptStat::GarbageArgs => w.u32(GARBAGE_ARGS),
                AcceptStat::SystemErr => w.u32(SYSTEM_ERR),
            }
        }
        ReplyStat::Denied(reject) => {
            w.u32(MSG_DENIED);
            match reject {
                RejectStat::RpcMismatch { low, high } => {
                    w.u32(RPC_MISMATCH);
                    w.u32(low);
                    w.u32(high);
                }
                RejectStat::AuthError(stat) => {
                    w.u32(AUTH_ERROR);
                    w.u32(stat as u32);
                }
            }
        }
    }
    Ok(w.written())
}

/// A decoded REPLY header, borrowing from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Transaction id of the call this answers.
    pub xid: u32,
    /// Accepted (with `accept_stat`) or denied (with `reject_stat`).
    pub stat: ReplyStat,
    /// The server's verifier; present only in accepted replies.
    pub verifier: Option<OpaqueAuth<'a>>,
    /// Offset where the procedure results start (meaningful for
    /// [`AcceptStat::Success`]; the end of the header otherwise).
    pub body_offset: usize,
}

/// Decodes a REPLY header from the start of `buf` (client side).
#[inline]
pub fn decode_reply(buf: &[u8]) -> Result<Reply<'_>, ReplyDecodeError> {
    match success_reply(buf) {
        Some(r) => Ok(r),
        None => decode_reply_general(buf),
    }
}

/// The common case in one step: an accepted SUCCESS reply with an empty
/// `AUTH_NONE` verifier decodes to what the general decoder returns for
/// it; any other shape is `None` (the tests compare the two).
#[inline]
pub(super) fn success_reply(buf: &[u8]) -> Option<Reply<'_>> {
    let head: &[u8; SUCCESS_LEN] = buf.get(..SUCCESS_LEN)?.try_into().ok()?;
    let rest = u128::from_be_bytes([
        head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11], head[12],
        head[13], head[14], head[15], head[16], head[17], head[18], head[19],
    ]);
    // REPLY, MSG_ACCEPTED, AUTH_NONE, empty body; then SUCCESS.
    const ACCEPTED: u128 =
        (MSG_REPLY as u128) << 96 | (MSG_ACCEPTED as u128) << 64 | (AUTH_NONE as u128) << 32;
    if rest != ACCEPTED || head[20..24] != SUCCESS.to_be_bytes() {
        return None;
    }
    Some(Reply {
        xid: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
        stat: ReplyStat::Accepted(AcceptStat::Success),
        verifier: Some(OpaqueAuth {
            flavor: AUTH_NONE,
            body: &head[20..20],
        }),
        body_offset: SUCCESS_LEN,
    })
}

/// [`decode_reply`] without its SUCCESS shortcut.
pub(super) fn decode_reply_general(buf: &[u8]) -> Result<Reply<'_>, ReplyDecodeError> {
    let mut r = Reader::new(buf);
    let mut word = || r.u32().ok_or(ReplyDecodeError::Truncated);
    let xid = word()?;
    let msg_type = word()?;
    if msg_type != MSG_REPLY {
        return Err(ReplyDecodeError::NotAReply { msg_type });
    }
    let (stat, verifier) = match word()? {
        MSG_ACCEPTED => {
            let verifier = read_verifier(&mut r)?;
            (
                ReplyStat::Accepted(read_accept_stat(&mut r)?),
                Some(verifier),
            )
        }
        MSG_DENIED => (ReplyStat::Denied(read_reject_stat(&mut r)?), None),
        value => return Err(ReplyDecodeError::BadDiscriminant { value }),
    };
    Ok(Reply {
        xid,
        stat,
        verifier,
        body_offset: r.position(),
    })
}

fn read_verifier<'a>(r: &mut Reader<'a>) -> Result<OpaqueAuth<'a>, ReplyDecodeError> {
    let flavor = r.u32().ok_or(ReplyDecodeError::Truncated)?;
    let len = r.u32().ok_or(ReplyDecodeError::Truncated)? as usize;
    if len > MAX_AUTH_BYTES {
        return Err(ReplyDecodeError::BadVerifier);
    }
    let body = r.opaque_body(len).ok_or(ReplyDecodeError::Truncated)?;
    Ok(OpaqueAuth { flavor, body })
}

fn read_accept_stat(r: &mut Reader<'_>) -> Result<AcceptStat, ReplyDecodeError> {
    let mut word = || r.u32().ok_or(ReplyDecodeError::Truncated);
    Ok(match word()? {
        SUCCESS => AcceptStat::Success,
        PROG_UNAVAIL => AcceptStat::ProgUnavail,
        PROG_MISMATCH => AcceptStat::ProgMismatch {
            low: word()?,
            high: word()?,
        },
        PROC_UNAVAIL => AcceptStat::ProcUnavail,
        GARBAGE_ARGS => AcceptStat::GarbageArgs,
        SYSTEM_ERR => AcceptStat::SystemErr,
        value => return Err(ReplyDecodeError::BadDiscriminant { value }),
    })
}

fn read_reject_stat(r: &mut Reader<'_>) -> Result<RejectStat, ReplyDecodeError> {
    let mut word = || r.u32().ok_or(ReplyDecodeError::Truncated);
    Ok(match word()? {
        RPC_MISMATCH => RejectStat::RpcMismatch {
            low: word()?,
            high: word()?,
        },
        AUTH_ERROR => {
            let value = word()?;
            RejectStat::AuthError(
                AuthStat::from_u32(value).ok_or(ReplyDecodeError::BadDiscriminant { value })?,
            )
        }
        value => return Err(ReplyDecodeError::BadDiscriminant { value }),
    })
}
