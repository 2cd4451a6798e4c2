//! Work completions, decoded.

use std::ffi::CStr;
use std::fmt;

use rdma_sys as sys;

/// The status of a work completion (`ibv_wc_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WcStatus {
    /// The work request completed.
    Success,
    /// Local length error (a receive buffer too small for the message).
    LocalLength,
    /// Local QP operation error.
    LocalQpOperation,
    /// Local protection error (bad lkey, or SGE outside its MR).
    LocalProtection,
    /// Flushed: the QP went to the error state before this request ran.
    /// Every later request on the queue completes this way.
    WrFlush,
    /// Memory window bind error.
    MwBind,
    /// Unexpected transport opcode from the responder.
    BadResponse,
    /// Local access error (e.g. RDMA Read sink without LOCAL_WRITE).
    LocalAccess,
    /// Remote invalid request.
    RemoteInvalidRequest,
    /// Remote access error: bad rkey, range outside the remote MR, or the
    /// remote MR lacks the access right.
    RemoteAccess,
    /// Remote operation error.
    RemoteOperation,
    /// Transport retry counter exceeded (peer gone).
    RetryExceeded,
    /// RNR retry counter exceeded (peer had no receive posted).
    RnrRetryExceeded,
    /// Remote aborted.
    RemoteAbort,
    /// Fatal error.
    Fatal,
    /// Response timeout.
    ResponseTimeout,
    /// General error.
    General,
    /// Any other value.
    Other(u32),
}

impl WcStatus {
    /// Decode a raw `ibv_wc_status`.
    pub fn from_raw(s: u32) -> Self {
        use sys::ibv_wc_status::*;
        match s {
            IBV_WC_SUCCESS => Self::Success,
            IBV_WC_LOC_LEN_ERR => Self::LocalLength,
            IBV_WC_LOC_QP_OP_ERR => Self::LocalQpOperation,
            IBV_WC_LOC_PROT_ERR => Self::LocalProtection,
            IBV_WC_WR_FLUSH_ERR => Self::WrFlush,
            IBV_WC_MW_BIND_ERR => Self::MwBind,
            IBV_WC_BAD_RESP_ERR => Self::BadResponse,
            IBV_WC_LOC_ACCESS_ERR => Self::LocalAccess,
            IBV_WC_REM_INV_REQ_ERR => Self::RemoteInvalidRequest,
            IBV_WC_REM_ACCESS_ERR => Self::RemoteAccess,
            IBV_WC_REM_OP_ERR => Self::RemoteOperation,
            IBV_WC_RETRY_EXC_ERR => Self::RetryExceeded,
            IBV_WC_RNR_RETRY_EXC_ERR => Self::RnrRetryExceeded,
            IBV_WC_REM_ABORT_ERR => Self::RemoteAbort,
            IBV_WC_FATAL_ERR => Self::Fatal,
            IBV_WC_RESP_TIMEOUT_ERR => Self::ResponseTimeout,
            IBV_WC_GENERAL_ERR => Self::General,
            other => Self::Other(other),
        }
    }

    /// True for a flush: not a fault of this request, the QP is in error.
    pub fn is_flush(self) -> bool {
        self == Self::WrFlush
    }

    /// rdma-core's text for a raw status value.
    pub fn describe(raw: u32) -> String {
        // SAFETY: ibv_wc_status_str accepts any value and returns a static string.
        let p = unsafe { sys::ibv_wc_status_str(raw) };
        if p.is_null() {
            return format!("status {raw}");
        }
        // SAFETY: non-null static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// What a successful completion was for (`ibv_wc_opcode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WcOpcode {
    /// A Send (also Send with Invalidate) completed.
    Send,
    /// An RDMA Write completed.
    RdmaWrite,
    /// An RDMA Read completed.
    RdmaRead,
    /// A local invalidate completed.
    LocalInvalidate,
    /// A receive completed.
    Recv,
    /// A receive of an RDMA Write with immediate completed.
    RecvRdmaWithImm,
    /// Any other value.
    Other(u32),
}

impl WcOpcode {
    fn from_raw(o: u32) -> Self {
        use sys::ibv_wc_opcode::*;
        match o {
            IBV_WC_SEND => Self::Send,
            IBV_WC_RDMA_WRITE => Self::RdmaWrite,
            IBV_WC_RDMA_READ => Self::RdmaRead,
            IBV_WC_LOCAL_INV => Self::LocalInvalidate,
            IBV_WC_RECV => Self::Recv,
            IBV_WC_RECV_RDMA_WITH_IMM => Self::RecvRdmaWithImm,
            other => Self::Other(other),
        }
    }
}

/// The fields that are valid only on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Success {
    opcode: WcOpcode,
    byte_len: u32,
    invalidated_rkey: Option<u32>,
}

/// A decoded work completion.
///
/// On an error completion only `wr_id`, `status`, `qp_num` and `vendor_err`
/// are valid (ibv_poll_cq(3)); the accessors for the rest return `None`
/// then, so nobody reads an opcode or length the provider left stale.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WorkCompletion {
    wr_id: u64,
    status: WcStatus,
    raw_status: u32,
    qp_num: u32,
    vendor_err: u32,
    ok: Option<Success>,
}

impl WorkCompletion {
    pub(crate) fn from_sys(wc: &sys::ibv_wc) -> Self {
        let status = WcStatus::from_raw(wc.status);
        let ok = (status == WcStatus::Success).then(|| {
            let inv = wc.wc_flags & sys::ibv_wc_flags::IBV_WC_WITH_INV.0 != 0;
            // SAFETY: both union members are plain u32s, so reading either is
            // defined; with IBV_WC_WITH_INV set it holds the invalidated rkey.
            let rkey = unsafe { wc.imm_data_invalidated_rkey_union.invalidated_rkey };
            Success {
                opcode: WcOpcode::from_raw(wc.opcode),
                byte_len: wc.byte_len,
                invalidated_rkey: inv.then_some(rkey),
            }
        });
        Self {
            wr_id: wc.wr_id,
            status,
            raw_status: wc.status,
            qp_num: wc.qp_num,
            vendor_err: wc.vendor_err,
            ok,
        }
    }

    /// The caller's work request id.
    pub fn wr_id(&self) -> u64 {
        self.wr_id
    }

    /// The status.
    pub fn status(&self) -> WcStatus {
        self.status
    }

    /// The raw `ibv_wc_status` value.
    pub fn raw_status(&self) -> u32 {
        self.raw_status
    }

    /// True on success.
    pub fn is_ok(&self) -> bool {
        self.ok.is_some()
    }

    /// The QP number the completion belongs to.
    pub fn qp_num(&self) -> u32 {
        self.qp_num
    }

    /// The vendor error code (meaningful on error only).
    pub fn vendor_err(&self) -> u32 {
        self.vendor_err
    }

    /// The opcode; `None` on an error completion.
    pub fn opcode(&self) -> Option<WcOpcode> {
        self.ok.map(|s| s.opcode)
    }

    /// Bytes received (receive completions); `None` on error.
    pub fn byte_len(&self) -> Option<u32> {
        self.ok.map(|s| s.byte_len)
    }

    /// The rkey a Send with Invalidate invalidated, on the receive side.
    pub fn invalidated_rkey(&self) -> Option<u32> {
        self.ok.and_then(|s| s.invalidated_rkey)
    }
}

impl fmt::Debug for WorkCompletion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WorkCompletion");
        d.field("wr_id", &self.wr_id).field("qp_num", &self.qp_num);
        match self.ok {
            Some(s) => d
                .field("opcode", &s.opcode)
                .field("byte_len", &s.byte_len)
                .field("invalidated_rkey", &s.invalidated_rkey),
            None => d
                .field("status", &self.status)
                .field("text", &WcStatus::describe(self.raw_status))
                .field("vendor_err", &self.vendor_err),
        };
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u32, opcode: u32) -> sys::ibv_wc {
        // SAFETY: ibv_wc is plain old data; all-zero is valid.
        let mut wc: sys::ibv_wc = unsafe { std::mem::zeroed() };
        wc.wr_id = 42;
        wc.status = status;
        wc.opcode = opcode;
        wc.byte_len = 100;
        wc.qp_num = 7;
        wc
    }

    #[test]
    fn success_decodes_opcode_and_length() {
        let wc = WorkCompletion::from_sys(&raw(0, sys::ibv_wc_opcode::IBV_WC_RECV));
        assert!(wc.is_ok());
        assert_eq!(wc.opcode(), Some(WcOpcode::Recv));
        assert_eq!(wc.byte_len(), Some(100));
        assert_eq!(wc.invalidated_rkey(), None);
    }

    #[test]
    fn error_hides_fields_that_are_not_valid() {
        let wc = WorkCompletion::from_sys(&raw(
            sys::ibv_wc_status::IBV_WC_WR_FLUSH_ERR,
            sys::ibv_wc_opcode::IBV_WC_RECV,
        ));
        assert!(!wc.is_ok());
        assert!(wc.status().is_flush());
        assert_eq!(wc.wr_id(), 42);
        assert_eq!(wc.qp_num(), 7);
        assert_eq!(wc.opcode(), None);
        assert_eq!(wc.byte_len(), None);
    }

    #[test]
    fn remote_access_error_maps() {
        assert_eq!(WcStatus::from_raw(10), WcStatus::RemoteAccess);
        assert_eq!(WcStatus::from_raw(999), WcStatus::Other(999));
        assert!(WcStatus::describe(10)
            .to_lowercase()
            .contains("remote access"));
    }
}
