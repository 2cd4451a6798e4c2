//! A received call lent to the service: its message stays in the buffer
//! it arrived in (the receive buffer, or the landing buffer its Read
//! chunks were pulled into) for as long as the [`RecvdCall`] lives, and
//! that buffer goes back to the transport when the call is dropped (a
//! receive buffer to be reposted, a landing buffer to its pool).

use super::read::CallMeta;
use core::cell::Cell;
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
    /// The call holding `buf` is done; `fence` is the count of signaled
    /// Send Queue work requests that must have completed before the
    /// buffer may be written again (0: at once).
    fn put_call_buf(&self, buf: CallBuf, fence: u64);
}

/// A call received and ready for dispatch, borrowing its transport.
///
/// The message bytes are lent from the transport's buffer, not copied:
/// [`msg`](Self::msg) gives them for as long as the call lives. Drop the
/// call once its reply is sent (or when it is not answered): the receive
/// buffer is then reposted, or the landing buffer reused. A transport
/// holds `2 x credits + batch` receive buffers, so calls held up to the
/// granted credits never starve the Receive Queue.
#[doc(alias = "svc_rdma_recv_ctxt")]
pub struct RecvdCall<'x> {
    /// What the reply needs from the call's transport header.
    pub meta: CallMeta,
    pub(crate) holder: &'x dyn CallHolder,
    pub(crate) buf: CallBuf,
    ptr: *const u8,
    len: usize,
    /// Set by `sendto` when a chunk Write gathers from this call's buffer.
    pub(crate) fence: Cell<u64>,
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
            holder,
            buf,
            ptr: msg.as_ptr(),
            len: msg.len(),
            fence: Cell::new(0),
        }
    }

    /// The complete RPC call message (Read chunks already pulled in),
    /// borrowed from the transport's buffer.
    pub fn msg(&self) -> &[u8] {
        // SAFETY: `new`'s contract: the bytes stay valid and unwritten
        // until this call is dropped, which this borrow of `self` outlasts
        // not.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Whether the message sits in a landing buffer (its Read chunks were
    /// pulled) rather than a receive buffer.
    pub fn pulled(&self) -> bool {
        matches!(self.buf, CallBuf::Landing(_))
    }

    /// Whether this call was received by the transport at `holder`.
    pub(crate) fn is_from(&self, holder: *const u8) -> bool {
        core::ptr::eq(self.holder as *const dyn CallHolder as *const u8, holder)
    }

    /// Where `sub` starts within the message, if it lies wholly inside it.
    pub(crate) fn offset_of(&self, sub: &[u8]) -> Option<usize> {
        let (start, end) = (self.ptr as usize, self.ptr as usize + self.len);
        let s = sub.as_ptr() as usize;
        (s >= start && s.checked_add(sub.len())? <= end).then_some(s - start)
    }
}

impl Drop for RecvdCall<'_> {
    fn drop(&mut self) {
        self.holder.put_call_buf(self.buf, self.fence.get());
    }
}

impl fmt::Debug for RecvdCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvdCall")
            .field("meta", &self.meta)
            .field("buf", &self.buf)
            .field("len", &self.len)
            .finish()
    }
}
