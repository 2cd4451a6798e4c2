//! CALL headers: decoded in place on the server, encoded on the client.

use super::xdr::{padded_len, Reader, Writer, WORD};
use super::{
    CallDecodeError, EncodeError, AUTH_NONE, AUTH_SYS, MAX_AUTH_BYTES, MAX_GIDS, MAX_MACHINENAME,
    MSG_CALL, RPC_VERSION,
};

/// A decoded CALL header, borrowing from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallHeader<'a> {
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc: u32,
    /// The caller's credential (the verifier was checked to be empty
    /// AUTH_NONE).
    pub cred: Credential<'a>,
    /// Offset in the buffer where the procedure arguments start.
    pub args_offset: usize,
}

/// A validated credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// AUTH_NONE: no identity.
    None,
    /// AUTH_SYS: Unix uid/gids, as asserted by the client.
    Sys(AuthSys<'a>),
}

/// AUTH_SYS credential body (`authsys_parms`), borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthSys<'a> {
    /// Arbitrary id the client may generate.
    pub stamp: u32,
    /// The caller's host name, at most 255 bytes (not necessarily UTF-8).
    pub machinename: &'a [u8],
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary groups, at most 16.
    pub gids: Gids<'a>,
}

/// A view of the supplementary gids of an AUTH_SYS credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gids<'a> {
    // Exactly 4 * count bytes, checked by the decoder.
    words: &'a [u8],
}

impl<'a> Gids<'a> {
    /// Number of gids.
    pub const fn len(&self) -> usize {
        self.words.len() / WORD
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The gids in wire order.
    pub fn iter(&self) -> GidsIter<'a> {
        GidsIter {
            r: Reader::new(self.words),
        }
    }
}

impl<'a> IntoIterator for Gids<'a> {
    type Item = u32;
    type IntoIter = GidsIter<'a>;
    fn into_iter(self) -> GidsIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Gids`].
#[derive(Clone, Debug)]
pub struct GidsIter<'a> {
    r: Reader<'a>,
}

impl Iterator for GidsIter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        self.r.u32()
    }
}

/// Decodes a CALL header from the start of `buf` (the RPC message, after
/// any record marking or RPC-over-RDMA header).
///
/// Only AUTH_NONE and AUTH_SYS credentials with an empty AUTH_NONE verifier
/// are accepted, as the kernel's `svcauth_null`/`svcauth_unix` do.
#[inline]
pub fn decode_call(buf: &[u8]) -> Result<CallHeader<'_>, CallDecodeError> {
    match auth_none_call(buf) {
        Some(h) => Ok(h),
        None => decode_call_general(buf),
    }
}

/// Words of a CALL header with `AUTH_NONE` credential and verifier: xid,
/// CALL, RPC version, prog, vers, proc, two empty opaque_auths.
const AUTH_NONE_CALL_LEN: usize = 10 * WORD;

/// The common case in one step: a version-2 CALL whose credential and
/// verifier are both `AUTH_NONE` with empty bodies. Every check of the
/// general decoder holds for it, so it decodes to the same header; any
/// other shape is `None` (the tests compare the two).
#[inline]
pub(super) fn auth_none_call(buf: &[u8]) -> Option<CallHeader<'_>> {
    let head: &[u8; AUTH_NONE_CALL_LEN] = buf.get(..AUTH_NONE_CALL_LEN)?.try_into().ok()?;
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    // msg_type CALL (0), rpcvers 2.
    let kind = u64::from_be_bytes([
        head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
    ]);
    // cred AUTH_NONE / 0, verf AUTH_NONE / 0.
    let auth = u128::from_be_bytes([
        head[24], head[25], head[26], head[27], head[28], head[29], head[30], head[31], head[32],
        head[33], head[34], head[35], head[36], head[37], head[38], head[39],
    ]);
    const AUTHS: u128 = (AUTH_NONE as u128) << 96 | (AUTH_NONE as u128) << 32;
    if kind != (u64::from(MSG_CALL) << 32 | u64::from(RPC_VERSION)) || auth != AUTHS {
        return None;
    }
    Some(CallHeader {
        xid: word(0),
        prog: word(12),
        vers: word(16),
        proc: word(20),
        cred: Credential::None,
        args_offset: AUTH_NONE_CALL_LEN,
    })
}

/// [`decode_call`] without its `AUTH_NONE` shortcut.
pub(super) fn decode_call_general(buf: &[u8]) -> Result<CallHeader<'_>, CallDecodeError> {
    let mut r = Reader::new(buf);
    let mut fixed = [0u32; 6];
    for word in &mut fixed {
        *word = r
            .u32()
            .ok_or(CallDecodeError::Truncated { len: buf.len() })?;
    }
    let [xid, msg_type, rpcvers, prog, vers, proc] = fixed;
    if msg_type != MSG_CALL {
        return Err(CallDecodeError::NotACall { msg_type });
    }
    if rpcvers != RPC_VERSION {
        return Err(CallDecodeError::RpcVersion { vers: rpcvers });
    }
    let (cred_flavor, cred_body) = read_opaque_auth(&mut r, CallDecodeError::BadCredential)?;
    let (verf_flavor, verf_body) = read_opaque_auth(&mut r, CallDecodeError::BadVerifier)?;
    let cred = match cred_flavor {
        AUTH_NONE if cred_body.is_empty() => Credential::None,
        AUTH_NONE => return Err(CallDecodeError::BadCredential),
        AUTH_SYS => {
            Credential::Sys(parse_auth_sys(cred_body).ok_or(CallDecodeError::BadCredential)?)
        }
        flavor => return Err(CallDecodeError::UnsupportedFlavor { flavor }),
    };
    if verf_flavor != AUTH_NONE || !verf_body.is_empty() {
        return Err(CallDecodeError::BadVerifier);
    }
    Ok(CallHeader {
        xid,
        prog,
        vers,
        proc,
        cred,
        args_offset: r.position(),
    })
}

/// Reads flavor and body of an `opaque_auth`; a body over 400 bytes is
/// `too_long`.
fn read_opaque_auth<'a>(
    r: &mut Reader<'a>,
    too_long: CallDecodeError,
) -> Result<(u32, &'a [u8]), CallDecodeError> {
    let flavor = r.u32().ok_or(CallDecodeError::AuthTruncated)?;
    let len = r.u32().ok_or(CallDecodeError::AuthTruncated)? as usize;
    if len > MAX_AUTH_BYTES {
        return Err(too_long);
    }
    let body = r.opaque_body(len).ok_or(CallDecodeError::AuthTruncated)?;
    Ok((flavor, body))
}

/// Parses `authsys_parms`; it must fill the credential body exactly.
fn parse_auth_sys(body: &[u8]) -> Option<AuthSys<'_>> {
    let mut r = Reader::new(body);
    let stamp = r.u32()?;
    let name_len = r.u32()? as usize;
    if name_len > MAX_MACHINENAME {
        return None;
    }
    let machinename = r.opaque_body(name_len)?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let ngids = r.u32()? as usize;
    if ngids > MAX_GIDS {
        return None;
    }
    let words = r.bytes(ngids * WORD)?;
    if r.remaining() != 0 {
        return None;
    }
    Some(AuthSys {
        stamp,
        machinename,
        uid,
        gid,
        gids: Gids { words },
    })
}

/// What [`encode_call`] writes (client side). The verifier is always an
/// empty AUTH_NONE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSpec<'s> {
    /// Transaction id.
    pub xid: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc: u32,
    /// AUTH_SYS credential, or `None` for AUTH_NONE.
    pub cred: Option<AuthSysSpec<'s>>,
}

/// An AUTH_SYS credential to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthSysSpec<'s> {
    /// Arbitrary id.
    pub stamp: u32,
    /// Host name, at most 255 bytes.
    pub machinename: &'s [u8],
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary groups, at most 16.
    pub gids: &'s [u32],
}

impl AuthSysSpec<'_> {
    fn body_len(&self) -> usize {
        // stamp, name length, name, uid, gid, gid count, gids
        5 * WORD + padded_len(self.machinename.len()) + self.gids.len().saturating_mul(WORD)
    }
}

impl CallSpec<'_> {
    /// Exact number of bytes [`encode_call`] writes.
    pub fn encoded_len(&self) -> usize {
        // xid .. proc, cred flavor + length, verifier flavor + length
        let cred = self.cred.as_ref().map_or(0, AuthSysSpec::body_len);
        10 * WORD + cred
    }
}

/// Encodes a CALL header into `buf`; the caller appends the arguments at
/// the returned offset.
#[inline]
pub fn encode_call(buf: &mut [u8], spec: &CallSpec<'_>) -> Result<usize, EncodeError> {
    if spec.cred.is_none() {
        if let Some(dst) = buf.get_mut(..AUTH_NONE_CALL_LEN) {
            // The six header words, then two empty AUTH_NONE opaque_auths
            // (all zero).
            let mut head = [0u8; AUTH_NONE_CALL_LEN];
            for (i, w) in [
                spec.xid,
                MSG_CALL,
                RPC_VERSION,
                spec.prog,
                spec.vers,
                spec.proc,
            ]
            .into_iter()
            .enumerate()
            {
                head[i * WORD..(i + 1) * WORD].copy_from_slice(&w.to_be_bytes());
            }
            dst.copy_from_slice(&head);
            return Ok(AUTH_NONE_CALL_LEN);
        }
    }
    encode_call_general(buf, spec)
}

/// [`encode_call`] without its `AUTH_NONE` shortcut.
pub(super) fn encode_call_general(
    buf: &mut [u8],
    spec: &CallSpec<'_>,
) -> Result<usize, EncodeError> {
    if let Some(sys) = &spec.cred {
        check_limit("machinename", sys.machinename.len(), MAX_MACHINENAME)?;
        check_limit("gids", sys.gids.len(), MAX_GIDS)?;
    }
    let mut w = Writer::new(buf, spec.encoded_len())?;
    for word in [
        spec.xid,
        MSG_CALL,
        RPC_VERSION,
        spec.prog,
        spec.vers,
        spec.proc,
    ] {
        w.u32(word);
    }
    match &spec.cred {
        None => {
            w.u32(AUTH_NONE);
            w.u32(0);
        }
        Some(sys) => {
            w.u32(AUTH_SYS);
            // Bounded by the checks above to well under MAX_AUTH_BYTES.
            w.u32(sys.body_len() as u32);
            w.u32(sys.stamp);
            w.opaque(sys.machinename);
            w.u32(sys.uid);
            w.u32(sys.gid);
            w.u32(sys.gids.len() as u32);
            for &gid in sys.gids {
                w.u32(gid);
            }
        }
    }
    w.u32(AUTH_NONE);
    w.u32(0);
    Ok(w.written())
}

fn check_limit(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        return Err(EncodeError::LimitExceeded { field, len, max });
    }
    Ok(())
}
