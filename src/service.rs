//! ONC RPC (RFC 5531) service API: a user implements [`Service`] for one
//! program; a [`Dispatcher`] decodes each call header, picks the service,
//! and encodes the accepted or denied reply.
//!
//! Built on `rdmaxprt_core::oncrpc` (zero-copy, no_std) rather than the
//! `onc-rpc` crate, which serializes through `std::io` and `Vec` per
//! message.

use rdmaxprt_core::oncrpc::{
    decode_call, encode_reply, AcceptStat, CallDecodeError, Credential, ReplyStat,
};
use std::ops::{Range, RangeInclusive};

/// What a procedure sees of its call.
#[derive(Debug)]
pub struct CallContext<'a> {
    /// Transaction id.
    pub xid: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc: u32,
    /// Caller's credential (AUTH_NONE or AUTH_SYS).
    pub cred: Credential<'a>,
}

/// Why a procedure produced no results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcError {
    /// No such procedure (`PROC_UNAVAIL`).
    ProcUnavail,
    /// The arguments could not be decoded (`GARBAGE_ARGS`).
    GarbageArgs,
    /// The procedure failed internally (`SYSTEM_ERR`).
    SystemErr,
}

/// Bulk payload of a reply: bytes the procedure made, or a range of its
/// own arguments sent back without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bulk {
    /// Bytes the procedure produced (e.g. read from a file).
    Owned(Vec<u8>),
    /// `args[range]` of the call being answered: the arguments live in the
    /// transport's buffer until the reply is sent, and when that buffer is
    /// a pulled Read chunk's the transport writes them into the client's
    /// Write chunk straight from it (an echo, or data passed through).
    Args(Range<usize>),
}

impl From<Vec<u8>> for Bulk {
    fn from(v: Vec<u8>) -> Self {
        Bulk::Owned(v)
    }
}

impl Bulk {
    /// The bytes, given the call's arguments (`None` if an
    /// [`Args`](Bulk::Args) range lies outside them).
    pub fn bytes<'a>(&'a self, args: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Bulk::Owned(v) => Some(v),
            Bulk::Args(r) => args.get(r.clone()),
        }
    }
}

/// A procedure's output.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplyBody {
    /// XDR-encoded results, sent after the reply header.
    pub results: Vec<u8>,
    /// Bulk payload for the client's first Write chunk (sent inline after
    /// the results if the client offered none).
    pub bulk: Option<Bulk>,
}

impl ReplyBody {
    /// Empties the body for the next call, keeping the results `Vec`'s
    /// capacity (see [`Dispatcher::dispatch_reusing`]).
    pub fn clear(&mut self) {
        self.results.clear();
        self.bulk = None;
    }
}

/// The largest results capacity [`Dispatched::recycle`] keeps for the next
/// call; a body that grew past it (a rare large reply) is freed rather
/// than held by an idle thread.
pub const MAX_RECYCLED_RESULTS: usize = 64 << 10;

/// One ONC RPC program.
pub trait Service: Send + Sync + 'static {
    /// The program number (read once, when the service is added to a
    /// [`Dispatcher`]).
    fn program(&self) -> u32;
    /// Versions served (read once, when the service is added).
    fn versions(&self) -> RangeInclusive<u32>;
    /// Runs procedure `ctx.proc` on the XDR `args`, filling `out`.
    fn call(
        &self,
        ctx: &CallContext<'_>,
        args: &[u8],
        out: &mut ReplyBody,
    ) -> Result<(), ProcError>;

    /// Whether a call may block (disk I/O, a lock held across a wait). In
    /// [`ServerMode::PollGroup`](crate::runtime::ServerMode::PollGroup)
    /// such a program's calls are handed to the worker threads so they do
    /// not stall every transport of the poll group; the rest run in the
    /// group. In the thread pool every call runs on a worker, and a worker
    /// inside such a call is not counted on to take the next queued
    /// transport soon (another is woken for it); any other call should
    /// return within about a call's time. Default: `false`. Read once, when
    /// the service is added.
    fn blocking(&self) -> bool {
        false
    }
}

/// The longest RPC reply header: xid, REPLY, ACCEPTED, an AUTH_NONE
/// verifier (2 words), PROG_MISMATCH and its low and high versions.
pub const MAX_REPLY_HEADER: usize = 32;

/// An encoded RPC reply header, held inline (no allocation per call).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    bytes: [u8; MAX_REPLY_HEADER],
    len: u8,
}

impl ReplyHeader {
    fn new(xid: u32, stat: ReplyStat) -> Self {
        let mut h = Self {
            bytes: [0; MAX_REPLY_HEADER],
            len: 0,
        };
        // Every reply status fits `MAX_REPLY_HEADER` bytes, so encoding
        // cannot run out.
        let n = encode_reply(&mut h.bytes, xid, stat).unwrap_or(0);
        h.len = n as u8;
        h
    }
}

impl std::ops::Deref for ReplyHeader {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl AsRef<[u8]> for ReplyHeader {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for ReplyHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReplyHeader").field(&&**self).finish()
    }
}

/// A reply ready for `sendto`: header + results, and any bulk payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// The encoded RPC reply header (accepted or denied).
    pub header: ReplyHeader,
    /// The procedure's results (empty unless SUCCESS).
    pub body: ReplyBody,
    /// Where the arguments start in the call message (for
    /// [`Bulk::Args`]).
    pub args_offset: usize,
}

impl Dispatched {
    /// The bulk payload, if any, given the call message `msg` that was
    /// dispatched (an [`Args`](Bulk::Args) range is resolved in it; the
    /// dispatcher checked it lies inside the arguments).
    #[inline]
    pub fn bulk<'a>(&'a self, msg: &'a [u8]) -> Option<&'a [u8]> {
        let args = msg.get(self.args_offset..).unwrap_or(&[]);
        self.body.bulk.as_ref().and_then(|b| b.bytes(args))
    }

    /// Gives the body back, cleared, for the next
    /// [`dispatch_reusing`](Dispatcher::dispatch_reusing) (call it once the
    /// reply was sent); its results capacity is kept up to
    /// [`MAX_RECYCLED_RESULTS`].
    #[inline]
    pub fn recycle(self) -> ReplyBody {
        let mut body = self.body;
        if body.results.capacity() > MAX_RECYCLED_RESULTS {
            return ReplyBody::default();
        }
        body.clear();
        body
    }
}

/// Routes calls to services by program number.
#[derive(Default)]
pub struct Dispatcher {
    services: Vec<Registered>,
}

/// A service with what routing reads of it, asked once when it was added
/// (no virtual calls per dispatch).
struct Registered {
    prog: u32,
    versions: RangeInclusive<u32>,
    blocking: bool,
    svc: Box<dyn Service>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let progs: Vec<u32> = self.services.iter().map(|s| s.prog).collect();
        f.debug_struct("Dispatcher")
            .field("programs", &progs)
            .finish()
    }
}

fn header(xid: u32, stat: ReplyStat) -> ReplyHeader {
    ReplyHeader::new(xid, stat)
}

impl Dispatcher {
    /// No services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service (builder style).
    pub fn with(mut self, s: impl Service) -> Self {
        self.services.push(Registered {
            prog: s.program(),
            versions: s.versions(),
            blocking: s.blocking(),
            svc: Box::new(s),
        });
        self
    }

    /// Whether `msg` is a call to a program one of whose services is
    /// [`blocking`](Service::blocking) (only the program number is read;
    /// anything too short to name one is not).
    pub fn blocks(&self, msg: &[u8]) -> bool {
        // xid, msg_type, rpcvers, then prog (RFC 5531 call_body).
        let Some(prog) = msg.get(12..16) else {
            return false;
        };
        let prog = u32::from_be_bytes([prog[0], prog[1], prog[2], prog[3]]);
        self.services.iter().any(|s| s.blocking && s.prog == prog)
    }

    /// Decodes `msg` and runs the call. `None` when the message is not a
    /// call that can be answered (too short, or not a CALL): drop it.
    pub fn dispatch(&self, msg: &[u8]) -> Option<Dispatched> {
        self.dispatch_reusing(msg, ReplyBody::default())
    }

    /// [`dispatch`](Self::dispatch) into `body` (cleared first), typically
    /// the previous reply's [`recycle`](Dispatched::recycle)d body: a
    /// procedure that appends its results reuses that `Vec`'s capacity
    /// instead of allocating one per call. The body comes back in the
    /// reply (also when the call is rejected); `None` drops it.
    pub fn dispatch_reusing(&self, msg: &[u8], mut body: ReplyBody) -> Option<Dispatched> {
        body.clear();
        let call = match decode_call(msg) {
            Ok(c) => c,
            Err(e) => return self.reject(msg, e, body),
        };
        let reply = |stat, body| Dispatched {
            header: header(call.xid, stat),
            body,
            args_offset: 0,
        };
        let progs = || self.services.iter().filter(|s| s.prog == call.prog);
        let Some(svc) = progs().find(|s| s.versions.contains(&call.vers)) else {
            if progs().next().is_none() {
                return Some(reply(ReplyStat::Accepted(AcceptStat::ProgUnavail), body));
            }
            let low = progs().map(|s| *s.versions.start()).min().unwrap_or(0);
            let high = progs().map(|s| *s.versions.end()).max().unwrap_or(0);
            return Some(reply(
                ReplyStat::Accepted(AcceptStat::ProgMismatch { low, high }),
                body,
            ));
        };
        let ctx = CallContext {
            xid: call.xid,
            prog: call.prog,
            vers: call.vers,
            proc: call.proc,
            cred: call.cred,
        };
        let args = msg.get(call.args_offset..).unwrap_or(&[]);
        let res = svc.svc.call(&ctx, args, &mut body).and_then(|()| {
            // A bulk range outside the arguments is the procedure's bug.
            match &body.bulk {
                Some(b) if b.bytes(args).is_none() => Err(ProcError::SystemErr),
                _ => Ok(()),
            }
        });
        let stat = match res {
            Ok(()) => AcceptStat::Success,
            Err(e) => {
                body.clear();
                match e {
                    ProcError::ProcUnavail => AcceptStat::ProcUnavail,
                    ProcError::GarbageArgs => AcceptStat::GarbageArgs,
                    ProcError::SystemErr => AcceptStat::SystemErr,
                }
            }
        };
        Some(Dispatched {
            header: header(call.xid, ReplyStat::Accepted(stat)),
            body,
            args_offset: call.args_offset.min(msg.len()),
        })
    }

    fn reject(&self, msg: &[u8], e: CallDecodeError, body: ReplyBody) -> Option<Dispatched> {
        let xid = rdmaxprt_core::oncrpc::peek_xid(msg)?;
        let stat = e.reply()?;
        Some(Dispatched {
            header: header(xid, stat),
            body,
            args_offset: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdmaxprt_core::oncrpc::{self, decode_reply, encode_call, CallSpec};

    struct Echo;
    impl Service for Echo {
        fn program(&self) -> u32 {
            0x2000_0001
        }
        fn versions(&self) -> RangeInclusive<u32> {
            1..=2
        }
        fn call(
            &self,
            ctx: &CallContext<'_>,
            args: &[u8],
            out: &mut ReplyBody,
        ) -> Result<(), ProcError> {
            match ctx.proc {
                0 => Ok(()),
                1 => {
                    out.results.extend_from_slice(args);
                    Ok(())
                }
                2 => Err(ProcError::GarbageArgs),
                3 => {
                    out.bulk = Some(Bulk::Args(1..args.len()));
                    Ok(())
                }
                4 => {
                    out.bulk = Some(Bulk::Args(0..args.len() + 1));
                    Ok(())
                }
                _ => Err(ProcError::ProcUnavail),
            }
        }
    }

    fn call(prog: u32, vers: u32, proc: u32, args: &[u8]) -> Vec<u8> {
        let spec = CallSpec {
            xid: 42,
            prog,
            vers,
            proc,
            cred: None,
        };
        let mut b = vec![0; spec.encoded_len()];
        let n = encode_call(&mut b, &spec).unwrap();
        b.truncate(n);
        b.extend_from_slice(args);
        b
    }

    fn stat(d: &Dispatched) -> ReplyStat {
        decode_reply(&d.header).unwrap().stat
    }

    #[test]
    fn dispatch_routes_to_the_procedure_and_returns_its_results() {
        let d = Dispatcher::new().with(Echo);
        let r = d.dispatch(&call(0x2000_0001, 1, 1, b"abcd")).unwrap();
        assert_eq!(stat(&r), ReplyStat::Accepted(AcceptStat::Success));
        assert_eq!(r.body.results, b"abcd");
    }

    #[test]
    fn bulk_borrowed_from_the_arguments_resolves_in_the_message() {
        let d = Dispatcher::new().with(Echo);
        let msg = call(0x2000_0001, 1, 3, b"abcd");
        let r = d.dispatch(&msg).unwrap();
        assert_eq!(stat(&r), ReplyStat::Accepted(AcceptStat::Success));
        let bulk = r.bulk(&msg).unwrap();
        assert_eq!(bulk, b"bcd");
        assert!(
            std::ptr::eq(bulk.as_ptr(), msg[msg.len() - 3..].as_ptr()),
            "lent, not copied"
        );
    }

    #[test]
    fn a_bulk_range_past_the_arguments_is_a_system_error() {
        let d = Dispatcher::new().with(Echo);
        let msg = call(0x2000_0001, 1, 4, b"abcd");
        let r = d.dispatch(&msg).unwrap();
        assert_eq!(stat(&r), ReplyStat::Accepted(AcceptStat::SystemErr));
        assert_eq!(r.bulk(&msg), None);
    }

    #[test]
    fn every_reply_header_fits_inline() {
        let stats = [
            ReplyStat::Accepted(AcceptStat::ProgMismatch {
                low: u32::MAX,
                high: u32::MAX,
            }),
            ReplyStat::Accepted(AcceptStat::SystemErr),
            ReplyStat::RPC_MISMATCH,
        ];
        for stat in stats {
            assert!(stat.encoded_len() <= MAX_REPLY_HEADER, "{stat:?}");
            let h = header(7, stat);
            assert_eq!(h.len(), stat.encoded_len(), "{stat:?}");
            assert_eq!(decode_reply(&h).unwrap().stat, stat);
        }
    }

    #[test]
    fn dispatch_answers_every_error_class() {
        let d = Dispatcher::new().with(Echo);
        let s = |m: Vec<u8>| stat(&d.dispatch(&m).unwrap());
        assert_eq!(
            s(call(7, 1, 0, b"")),
            ReplyStat::Accepted(AcceptStat::ProgUnavail)
        );
        assert_eq!(
            s(call(0x2000_0001, 9, 0, b"")),
            ReplyStat::Accepted(AcceptStat::ProgMismatch { low: 1, high: 2 })
        );
        assert_eq!(
            s(call(0x2000_0001, 1, 99, b"")),
            ReplyStat::Accepted(AcceptStat::ProcUnavail)
        );
        assert_eq!(
            s(call(0x2000_0001, 1, 2, b"")),
            ReplyStat::Accepted(AcceptStat::GarbageArgs)
        );
        let mut bad_vers = call(0x2000_0001, 1, 0, b"");
        bad_vers[8..12].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(s(bad_vers), ReplyStat::RPC_MISMATCH);
        assert!(d.dispatch(b"ab").is_none(), "too short to answer");
        let _ = oncrpc::RPC_VERSION;
    }
}
