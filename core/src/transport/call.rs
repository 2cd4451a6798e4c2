//! A received call lent to the service: its message stays in the buffer
//! it arrived in (the receive buffer, or the landing buffer its Read
//! chunks were pulled into) for as long as the [`RecvdCall`] lives, and
//! that buffer goes back to the transport when the call is dropped (a
//! receive buffer to be reposted, a landing buffer to its pool).

use super::read::CallMeta;
use alloc::vec::Vec;
use core::fmt;

/// Which transport buffer holds a call's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallBuf {
    /// Receive context `idx` (an inline call).
    Recv(u32),
    /// Landing buffer `idx` (a call whose Read chunks were pulled).
    Landing(u32),
}

/// What a [`RecvdCall`] needs of its transport: taking its buffer back.
pub(crate) trait CallHolder {
    /// The call holding `buf` is done with it (a reply's send context
    /// that writes from a landing buffer holds it too, until released).
    fn put_call_buf(&self, buf: CallBuf);
}

/// A call received and ready for dispatch, borrowing its transport.
///
/// The message bytes are lent from the transport's buffer, not copied:
/// [`msg`](Self::msg) gives them for as long as the call lives. Drop the
/// call once its reply is sent (or when it is not answered): the receive
/// buffer is then reposted, or the landing buffer reused. A transport
/// holds `2 x credits + batch` receive buffers, so calls held up to the
/// granted credits never starve the Receive Queue.
///
/// A call that must move to another thread (the transport cannot go with
/// it) is [`detach`](Self::detach)ed into an [`OwnedCall`], which copies
/// the message, and answered as [`RecvdCall::from`] that.
#[doc(alias = "svc_rdma_recv_ctxt")]
pub struct RecvdCall<'x> {
    /// What the reply needs from the call's transport header.
    pub meta: CallMeta,
    src: Src<'x>,
}

/// Where a call's message is.
enum Src<'x> {
    /// In a transport buffer, lent.
    Lent(Lent<'x>),
    /// Copied out ([`OwnedCall`]).
    Owned(Vec<u8>),
}

struct Lent<'x> {
    holder: &'x dyn CallHolder,
    buf: CallBuf,
    ptr: *const u8,
    len: usize,
}

/// A call detached from its transport's buffer, its message copied out:
/// it can move to another thread and outlive the borrow of the transport.
/// Answer it as a [`RecvdCall`] (`RecvdCall::from(owned)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedCall {
    /// What the reply needs from the call's transport header.
    pub meta: CallMeta,
    /// The complete RPC call message.
    pub msg: Vec<u8>,
}

impl From<OwnedCall> for RecvdCall<'static> {
    fn from(c: OwnedCall) -> Self {
        Self {
            meta: c.meta,
            src: Src::Owned(c.msg),
        }
    }
}

impl<'x> RecvdCall<'x> {
    /// A call over `msg`, which lives in `buf` of `holder`.
    ///
    /// # Safety
    /// `msg` must stay valid and unwritten until `holder.put_call_buf(buf,
    /// ..)` runs (the call's drop): the holder reuses `buf` only then.
    pub(crate) unsafe fn new(
        meta: CallMeta,
        holder: &'x dyn CallHolder,
        buf: CallBuf,
        msg: &[u8],
    ) -> Self {
        Self {
            meta,
            src: Src::Lent(Lent {
                holder,
                buf,
                ptr: msg.as_ptr(),
                len: msg.len(),
            }),
        }
    }

    /// Copies the message out and gives the transport its buffer back now.
    pub fn detach(self) -> OwnedCall {
        let msg = self.msg().to_vec();
        OwnedCall {
            meta: self.meta.clone(),
            msg,
        }
    }

    /// The transport buffer lending the message, if it is lent.
    pub(crate) fn buf(&self) -> Option<CallBuf> {
        match &self.src {
            Src::Lent(l) => Some(l.buf),
            Src::Owned(_) => None,
        }
    }

    /// The complete RPC call message (Read chunks already pulled in),
    /// borrowed from the transport's buffer.
    pub fn msg(&self) -> &[u8] {
        match &self.src {
            // SAFETY: `new`'s contract: the bytes stay valid and unwritten
            // until this call is dropped, which this borrow of `self`
            // cannot outlast.
            Src::Lent(l) => unsafe { core::slice::from_raw_parts(l.ptr, l.len) },
            Src::Owned(v) => v,
        }
    }

    /// Whether the message sits in a landing buffer (its Read chunks were
    /// pulled) rather than a receive buffer or a copy.
    pub fn pulled(&self) -> bool {
        matches!(self.buf(), Some(CallBuf::Landing(_)))
    }

    /// Whether this call's message is lent by the transport at `holder`.
    pub(crate) fn is_from(&self, holder: *const u8) -> bool {
        match &self.src {
            Src::Lent(l) => core::ptr::eq(l.holder as *const dyn CallHolder as *const u8, holder),
            Src::Owned(_) => false,
        }
    }

    /// Where `sub` starts within the message, if it lies wholly inside it.
    pub(crate) fn offset_of(&self, sub: &[u8]) -> Option<usize> {
        let msg = self.msg();
        let (start, end) = (msg.as_ptr() as usize, msg.as_ptr() as usize + msg.len());
        let s = sub.as_ptr() as usize;
        (s >= start && s.checked_add(sub.len())? <= end).then_some(s - start)
    }
}

impl Drop for RecvdCall<'_> {
    fn drop(&mut self) {
        if let Src::Lent(l) = &self.src {
            l.holder.put_call_buf(l.buf);
        }
    }
}

impl fmt::Debug for RecvdCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvdCall")
            .field("meta", &self.meta)
            .field("buf", &self.buf())
            .field("len", &self.msg().len())
            .finish()
    }
}
