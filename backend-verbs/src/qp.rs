//! Reliable-connected queue pairs: create, connect by hand, post, drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdma_sys as sys;
use smallvec::SmallVec;

use crate::cm::CmIdHandle;
use crate::cq::CompletionQueue;
use crate::device::Gid;
use crate::error::{errno_from_ret, last_errno, Result, VerbsError};
use crate::pd::ProtectionDomain;
use crate::pool::Sge;
use crate::wc::{WcOpcode, WorkCompletion};

/// Queue sizes of a QP. After creation, [`QueuePair::caps`] holds what the
/// provider actually granted (often more than asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpCaps {
    /// Send queue depth.
    pub max_send_wr: u32,
    /// Receive queue depth.
    pub max_recv_wr: u32,
    /// SGEs per send work request.
    pub max_send_sge: u32,
    /// SGEs per receive work request.
    pub max_recv_sge: u32,
    /// Bytes of inline data per send.
    pub max_inline_data: u32,
}

impl Default for QpCaps {
    fn default() -> Self {
        Self {
            max_send_wr: 64,
            max_recv_wr: 64,
            max_send_sge: 4,
            max_recv_sge: 1,
            max_inline_data: 0,
        }
    }
}

/// What a peer needs to connect its QP to ours by hand (the out-of-band
/// exchange `ibv_rc_pingpong` does over TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpEndpoint {
    /// QP number.
    pub qp_num: u32,
    /// Initial packet sequence number of its send queue.
    pub psn: u32,
    /// Its GID (RoCE) ...
    pub gid: Gid,
    /// ... or LID (InfiniBand; 0 on RoCE).
    pub lid: u16,
}

/// Path and retry parameters for [`QueuePair::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectAttr {
    /// Local port (1 on rxe).
    pub port: u8,
    /// Local GID index to source from (the RoCEv2 IPv4 GID on rxe).
    pub gid_index: u8,
    /// Path MTU as an `ibv_mtu` value (3 = 1024, the rxe default).
    pub mtu: u32,
    /// Local ACK timeout exponent (4.096 us * 2^timeout).
    pub timeout: u8,
    /// Transport retries.
    pub retry_cnt: u8,
    /// RNR retries (7 = infinite).
    pub rnr_retry: u8,
    /// Outstanding RDMA Reads we initiate (initiator depth).
    pub max_rd_atomic: u8,
    /// Outstanding RDMA Reads we answer (responder resources).
    pub max_dest_rd_atomic: u8,
}

impl Default for ConnectAttr {
    fn default() -> Self {
        Self {
            port: 1,
            gid_index: 1,
            mtu: sys::ibv_mtu::IBV_MTU_1024,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            max_rd_atomic: 4,
            max_dest_rd_atomic: 4,
        }
    }
}

/// The operation of a send-queue work request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendOp {
    /// Send: consumes a receive at the peer.
    Send,
    /// Send with Invalidate: also invalidates `rkey` at the peer (svcrdma
    /// uses it to invalidate the client's registered buffer with the reply).
    SendWithInvalidate {
        /// The remote key to invalidate.
        rkey: u32,
    },
    /// RDMA Write of the SGEs to the remote buffer.
    RdmaWrite {
        /// Remote address.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
    },
    /// RDMA Read from the remote buffer into the SGEs.
    RdmaRead {
        /// Remote address.
        remote_addr: u64,
        /// Remote key.
        rkey: u32,
    },
}

/// One send-queue work request of a chain.
#[derive(Debug, Clone, Copy)]
pub struct SendWr<'a> {
    /// Returned in the completion.
    pub wr_id: u64,
    /// What to do.
    pub op: SendOp,
    /// Local memory (gather for Send/Write, scatter for Read).
    pub sges: &'a [Sge],
    /// Ask for a completion. Unsignaled requests complete silently when a
    /// later signaled one completes (svcrdma signals only the last WR of a
    /// chain); errors always complete.
    pub signaled: bool,
    /// Wait for prior RDMA Reads to finish before this one starts.
    pub fence: bool,
}

/// One receive-queue work request.
#[derive(Debug, Clone, Copy)]
pub struct RecvWr<'a> {
    /// Returned in the completion.
    pub wr_id: u64,
    /// Buffers to scatter the incoming message into.
    pub sges: &'a [Sge],
}

/// Which work queue of a QP a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    /// The send queue.
    Send,
    /// The receive queue.
    Recv,
}

/// Work requests of a chain posted without a heap allocation.
const INLINE_WRS: usize = 4;
/// SGEs of a chain posted without a heap allocation.
const INLINE_SGES: usize = 8;

/// wr_id of the send-queue marker [`QueuePair::drain`] posts.
pub const DRAIN_SEND_WR_ID: u64 = u64::MAX;
/// wr_id of the receive-queue marker [`QueuePair::drain`] posts.
pub const DRAIN_RECV_WR_ID: u64 = u64::MAX - 1;

/// Who destroys the `ibv_qp`.
enum QpOwner {
    /// `ibv_create_qp`: `ibv_destroy_qp`.
    Verbs,
    /// `rdma_create_qp`: `rdma_destroy_qp`, then the id goes with the Arc.
    Cm(Arc<CmIdHandle>),
}

/// An RC queue pair. Dropping it destroys the QP before the CQs and PD it
/// uses (it holds clones of them): QP before CQ and channel, MR before PD.
pub struct QueuePair {
    qp: *mut sys::ibv_qp,
    owner: QpOwner,
    caps: QpCaps,
    send_cq: CompletionQueue,
    recv_cq: CompletionQueue,
    pd: ProtectionDomain,
}

// SAFETY: posting and modify_qp are thread safe in libibverbs (providers
// lock their queues); the QP is destroyed only in Drop.
unsafe impl Send for QueuePair {}
// SAFETY: as above.
unsafe impl Sync for QueuePair {}

impl std::fmt::Debug for QueuePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuePair")
            .field("qp_num", &self.qp_num())
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl Drop for QueuePair {
    fn drop(&mut self) {
        match &self.owner {
            QpOwner::Verbs => {
                // SAFETY: qp came from ibv_create_qp and is destroyed once.
                let ret = unsafe { sys::ibv_destroy_qp(self.qp) };
                if ret != 0 {
                    tracing::warn!(ret, "ibv_destroy_qp failed");
                }
            }
            QpOwner::Cm(id) => {
                // SAFETY: the QP was made by rdma_create_qp on this id, which
                // is alive (we hold the Arc).
                unsafe { sys::rdma_destroy_qp(id.raw()) };
            }
        }
        // Fields drop after this: CQs, then the PD, then (for CM) the id.
    }
}

pub(crate) fn init_attr(
    send_cq: &CompletionQueue,
    recv_cq: &CompletionQueue,
    caps: QpCaps,
) -> sys::ibv_qp_init_attr {
    // SAFETY: ibv_qp_init_attr is plain old data; zeroed is valid (null srq,
    // no context).
    let mut a: sys::ibv_qp_init_attr = unsafe { std::mem::zeroed() };
    a.send_cq = send_cq.as_raw();
    a.recv_cq = recv_cq.as_raw();
    a.qp_type = sys::ibv_qp_type::IBV_QPT_RC;
    a.sq_sig_all = 0;
    a.cap.max_send_wr = caps.max_send_wr;
    a.cap.max_recv_wr = caps.max_recv_wr;
    a.cap.max_send_sge = caps.max_send_sge;
    a.cap.max_recv_sge = caps.max_recv_sge;
    a.cap.max_inline_data = caps.max_inline_data;
    a
}

fn caps_from(c: &sys::ibv_qp_cap) -> QpCaps {
    QpCaps {
        max_send_wr: c.max_send_wr,
        max_recv_wr: c.max_recv_wr,
        max_send_sge: c.max_send_sge,
        max_recv_sge: c.max_recv_sge,
        max_inline_data: c.max_inline_data,
    }
}

impl QueuePair {
    /// `ibv_create_qp`: an RC QP in RESET, selective signaling.
    pub fn create_rc(
        pd: &ProtectionDomain,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
        caps: QpCaps,
    ) -> Result<Self> {
        let mut a = init_attr(send_cq, recv_cq, caps);
        // SAFETY: pd and CQs are live (we keep clones); `a` is valid and
        // gets the granted caps written back.
        let qp = unsafe { sys::ibv_create_qp(pd.as_raw(), &mut a) };
        if qp.is_null() {
            return Err(VerbsError::CreateQp(last_errno()));
        }
        Ok(Self {
            qp,
            owner: QpOwner::Verbs,
            caps: caps_from(&a.cap),
            send_cq: send_cq.clone(),
            recv_cq: recv_cq.clone(),
            pd: pd.clone(),
        })
    }

    /// Wrap the QP `rdma_create_qp` made on `id`.
    pub(crate) fn from_cm(
        id: Arc<CmIdHandle>,
        caps: &sys::ibv_qp_cap,
        pd: &ProtectionDomain,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
    ) -> Self {
        Self {
            qp: id.qp(),
            owner: QpOwner::Cm(id),
            caps: caps_from(caps),
            send_cq: send_cq.clone(),
            recv_cq: recv_cq.clone(),
            pd: pd.clone(),
        }
    }

    /// The QP number.
    pub fn qp_num(&self) -> u32 {
        // SAFETY: qp is live until Drop.
        unsafe { (*self.qp).qp_num }
    }

    /// The granted queue sizes.
    pub fn caps(&self) -> QpCaps {
        self.caps
    }

    /// The CQ of the send queue.
    pub fn send_cq(&self) -> &CompletionQueue {
        &self.send_cq
    }

    /// The CQ of the receive queue.
    pub fn recv_cq(&self) -> &CompletionQueue {
        &self.recv_cq
    }

    /// True when the send and receive queues share one CQ.
    pub fn has_shared_cq(&self) -> bool {
        self.send_cq.same_as(&self.recv_cq)
    }

    /// The PD the QP was created in.
    pub fn pd(&self) -> &ProtectionDomain {
        &self.pd
    }

    /// The raw `ibv_qp`.
    pub fn as_raw(&self) -> *mut sys::ibv_qp {
        self.qp
    }

    /// Our side of a by-hand connection.
    pub fn endpoint(&self, gid: Gid, psn: u32) -> QpEndpoint {
        QpEndpoint {
            qp_num: self.qp_num(),
            psn: psn & 0x00ff_ffff,
            gid,
            lid: 0,
        }
    }

    fn modify(
        &self,
        attr: &mut sys::ibv_qp_attr,
        mask: sys::ibv_qp_attr_mask,
        state: &'static str,
    ) -> Result<()> {
        // SAFETY: the QP is live; attr is a valid ibv_qp_attr for the mask.
        let ret = unsafe { sys::ibv_modify_qp(self.qp, attr, mask.0 as i32) };
        if ret != 0 {
            return Err(VerbsError::ModifyQp {
                state,
                source: errno_from_ret(ret),
            });
        }
        Ok(())
    }

    /// Connect by hand: RESET -> INIT -> RTR -> RTS towards `remote`, with
    /// our send PSN `local_psn`. Grants remote read and write access.
    pub fn connect(&self, remote: &QpEndpoint, attr: &ConnectAttr, local_psn: u32) -> Result<()> {
        use sys::ibv_qp_attr_mask as M;
        // SAFETY: ibv_qp_attr is plain old data; zeroed is valid.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_INIT;
        a.pkey_index = 0;
        a.port_num = attr.port;
        a.qp_access_flags = crate::pool::Access::ALL.bits();
        self.modify(
            &mut a,
            M::IBV_QP_STATE | M::IBV_QP_PKEY_INDEX | M::IBV_QP_PORT | M::IBV_QP_ACCESS_FLAGS,
            "INIT",
        )?;

        // SAFETY: as above.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_RTR;
        a.path_mtu = attr.mtu;
        a.dest_qp_num = remote.qp_num;
        a.rq_psn = remote.psn;
        a.max_dest_rd_atomic = attr.max_dest_rd_atomic;
        a.min_rnr_timer = 12;
        a.ah_attr.dlid = remote.lid;
        a.ah_attr.port_num = attr.port;
        if !remote.gid.is_zero() {
            a.ah_attr.is_global = 1;
            a.ah_attr.grh.dgid = remote.gid.to_sys();
            a.ah_attr.grh.sgid_index = attr.gid_index;
            a.ah_attr.grh.hop_limit = 1;
        }
        self.modify(
            &mut a,
            M::IBV_QP_STATE
                | M::IBV_QP_AV
                | M::IBV_QP_PATH_MTU
                | M::IBV_QP_DEST_QPN
                | M::IBV_QP_RQ_PSN
                | M::IBV_QP_MAX_DEST_RD_ATOMIC
                | M::IBV_QP_MIN_RNR_TIMER,
            "RTR",
        )?;

        // SAFETY: as above.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_RTS;
        a.timeout = attr.timeout;
        a.retry_cnt = attr.retry_cnt;
        a.rnr_retry = attr.rnr_retry;
        a.sq_psn = local_psn & 0x00ff_ffff;
        a.max_rd_atomic = attr.max_rd_atomic;
        self.modify(
            &mut a,
            M::IBV_QP_STATE
                | M::IBV_QP_TIMEOUT
                | M::IBV_QP_RETRY_CNT
                | M::IBV_QP_RNR_RETRY
                | M::IBV_QP_SQ_PSN
                | M::IBV_QP_MAX_QP_RD_ATOMIC,
            "RTS",
        )
    }

    /// Move the QP to the error state: outstanding and later work requests
    /// complete with [`WcStatus::WrFlush`](crate::WcStatus::WrFlush).
    pub fn set_error(&self) -> Result<()> {
        // SAFETY: ibv_qp_attr is plain old data.
        let mut a: sys::ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = sys::ibv_qp_state::IBV_QPS_ERR;
        self.modify(&mut a, sys::ibv_qp_attr_mask::IBV_QP_STATE, "ERR")
    }

    /// Post a chain of send-queue work requests with one `ibv_post_send`.
    ///
    /// On failure nothing from the returned index on was posted (requests
    /// before it were, and will complete). ENOMEM, a full send queue, is
    /// [`VerbsError::SendQueueFull`].
    ///
    /// # Safety
    /// - Every SGE must lie in a registration (pool) that stays registered,
    ///   and whose bytes the caller does not reuse, until the completion of
    ///   this work request has been polled, or, for an unsignaled request,
    ///   the completion of a later signaled request on this QP (or a flush).
    /// - For RDMA Read/Write, the remote range must be one the peer gave us
    ///   for this purpose (a wrong one fails with a remote access error; it
    ///   is not memory unsafety locally, but it is at the peer's discretion).
    pub unsafe fn post_send(&self, chain: &[SendWr<'_>]) -> Result<()> {
        if chain.is_empty() {
            return Ok(());
        }
        // On the stack for short chains (no heap allocation per post); the
        // buffers are not moved after their addresses are taken.
        let mut sges: SmallVec<[sys::ibv_sge; INLINE_SGES]> = chain
            .iter()
            .flat_map(|w| w.sges.iter().map(|s| s.to_sys()))
            .collect();
        // SAFETY: ibv_send_wr is plain old data; zeroed means no next, no
        // SGEs, opcode RDMA_WRITE (overwritten below).
        let mut wrs: SmallVec<[sys::ibv_send_wr; INLINE_WRS]> = (0..chain.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        let mut sge_at = 0usize;
        let sge_base = sges.as_mut_ptr();
        for (i, w) in chain.iter().enumerate() {
            let wr = &mut wrs[i];
            wr.wr_id = w.wr_id;
            // In bounds by construction; only stored (`sges` does not move).
            wr.sg_list = if w.sges.is_empty() {
                std::ptr::null_mut()
            } else {
                sge_base.wrapping_add(sge_at)
            };
            wr.num_sge = w.sges.len() as i32;
            sge_at += w.sges.len();
            let mut flags = 0;
            if w.signaled {
                flags |= sys::ibv_send_flags::IBV_SEND_SIGNALED.0;
            }
            if w.fence {
                flags |= sys::ibv_send_flags::IBV_SEND_FENCE.0;
            }
            wr.send_flags = flags;
            match w.op {
                SendOp::Send => wr.opcode = sys::ibv_wr_opcode::IBV_WR_SEND,
                SendOp::SendWithInvalidate { rkey } => {
                    wr.opcode = sys::ibv_wr_opcode::IBV_WR_SEND_WITH_INV;
                    wr.imm_data_invalidated_rkey_union.invalidated_rkey = rkey;
                }
                SendOp::RdmaWrite { remote_addr, rkey } => {
                    wr.opcode = sys::ibv_wr_opcode::IBV_WR_RDMA_WRITE;
                    wr.wr.rdma = sys::rdma_t { remote_addr, rkey };
                }
                SendOp::RdmaRead { remote_addr, rkey } => {
                    wr.opcode = sys::ibv_wr_opcode::IBV_WR_RDMA_READ;
                    wr.wr.rdma = sys::rdma_t { remote_addr, rkey };
                }
            }
        }
        let base = wrs.as_mut_ptr();
        for i in 0..wrs.len() - 1 {
            // SAFETY: i + 1 < len; `wrs` does not move while we post.
            wrs[i].next = unsafe { base.add(i + 1) };
        }
        let mut bad: *mut sys::ibv_send_wr = std::ptr::null_mut();
        // SAFETY: the chain and its SGE arrays are valid for the call; the
        // caller guarantees the memory they describe (see # Safety).
        let ret = unsafe { sys::ibv_post_send(self.qp, base, &mut bad) };
        if ret != 0 {
            let index = if bad.is_null() {
                0
            } else {
                // SAFETY: the provider sets bad to an element of our array.
                unsafe { bad.offset_from(base) }.max(0) as usize
            };
            let source = errno_from_ret(ret);
            if source.raw_os_error() == Some(libc::ENOMEM) {
                return Err(VerbsError::SendQueueFull { index });
            }
            return Err(VerbsError::PostSend { index, source });
        }
        Ok(())
    }

    /// Post one SEND whose payload the provider copies into the work
    /// request (`IBV_SEND_INLINE`): `data` may be reused as soon as this
    /// returns, so no registration is involved and the call is safe.
    /// `data` must fit the QP's [`QpCaps::max_inline_data`] (the provider
    /// rejects a larger one: [`VerbsError::PostSend`]).
    pub fn post_send_inline(&self, wr_id: u64, data: &[u8], signaled: bool) -> Result<()> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if len > self.caps.max_inline_data {
            return Err(VerbsError::PostSend {
                index: 0,
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        let mut sge = sys::ibv_sge {
            addr: data.as_ptr() as u64,
            length: len,
            lkey: 0,
        };
        // SAFETY: ibv_send_wr is plain old data; zeroed means no next.
        let mut wr: sys::ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = wr_id;
        wr.opcode = sys::ibv_wr_opcode::IBV_WR_SEND;
        wr.sg_list = &mut sge;
        wr.num_sge = 1;
        wr.send_flags = sys::ibv_send_flags::IBV_SEND_INLINE.0
            | if signaled {
                sys::ibv_send_flags::IBV_SEND_SIGNALED.0
            } else {
                0
            };
        let mut bad: *mut sys::ibv_send_wr = std::ptr::null_mut();
        // SAFETY: wr and sge are valid for the call; with IBV_SEND_INLINE
        // the provider copies `data` (which `len` bytes bound) during the
        // call and keeps no reference to it, and the lkey is not used.
        let ret = unsafe { sys::ibv_post_send(self.qp, &mut wr, &mut bad) };
        if ret != 0 {
            let source = errno_from_ret(ret);
            if source.raw_os_error() == Some(libc::ENOMEM) {
                return Err(VerbsError::SendQueueFull { index: 0 });
            }
            return Err(VerbsError::PostSend { index: 0, source });
        }
        Ok(())
    }

    /// Post receive work requests with one `ibv_post_recv`.
    ///
    /// # Safety
    /// Every SGE must lie in a registration that stays registered, and whose
    /// bytes the caller neither reads as a message nor reuses, until the
    /// completion of this receive has been polled (a flush included).
    pub unsafe fn post_recv(&self, chain: &[RecvWr<'_>]) -> Result<()> {
        if chain.is_empty() {
            return Ok(());
        }
        let mut sges: SmallVec<[sys::ibv_sge; INLINE_SGES]> = chain
            .iter()
            .flat_map(|w| w.sges.iter().map(|s| s.to_sys()))
            .collect();
        let sge_base = sges.as_mut_ptr();
        let mut sge_at = 0usize;
        let mut wrs: SmallVec<[sys::ibv_recv_wr; INLINE_WRS]> = chain
            .iter()
            .map(|w| {
                let wr = sys::ibv_recv_wr {
                    wr_id: w.wr_id,
                    next: std::ptr::null_mut(),
                    // In bounds by construction (see post_send).
                    sg_list: if w.sges.is_empty() {
                        std::ptr::null_mut()
                    } else {
                        sge_base.wrapping_add(sge_at)
                    },
                    num_sge: w.sges.len() as i32,
                };
                sge_at += w.sges.len();
                wr
            })
            .collect();
        let base = wrs.as_mut_ptr();
        for i in 0..wrs.len() - 1 {
            // SAFETY: i + 1 < len; `wrs` does not move while we post.
            wrs[i].next = unsafe { base.add(i + 1) };
        }
        let mut bad: *mut sys::ibv_recv_wr = std::ptr::null_mut();
        // SAFETY: the chain is valid for the call; memory per # Safety.
        let ret = unsafe { sys::ibv_post_recv(self.qp, base, &mut bad) };
        if ret != 0 {
            let index = if bad.is_null() {
                0
            } else {
                // SAFETY: bad points into our array.
                unsafe { bad.offset_from(base) }.max(0) as usize
            };
            return Err(VerbsError::PostRecv {
                index,
                source: errno_from_ret(ret),
            });
        }
        Ok(())
    }

    /// Drain the QP, like the kernel's `ib_drain_qp`: move it to the error
    /// state and wait until a marker on the send queue ([`DRAIN_SEND_WR_ID`])
    /// and, if `recv_too`, one on the receive queue ([`DRAIN_RECV_WR_ID`])
    /// have flushed. Queues complete in order, so everything posted before
    /// has completed then; those completions (success or flush, for any QP
    /// sharing the CQs) are returned, the markers are not.
    ///
    /// The receive marker is posted *before* the transition to error (the
    /// kernel posts it after): a user-space rxe QP flushes its receive queue
    /// only at the transition, so a receive posted later never completes.
    /// Posted first, it could consume one last incoming message (completing
    /// with an error for lack of buffers), which a drain discards anyway.
    ///
    /// After a drain no completion for this QP will arrive any more, so every
    /// resource still held for its work requests can be released.
    pub fn drain(&self, recv_too: bool, timeout: Duration) -> Result<Vec<WorkCompletion>> {
        self.post_drain_markers(recv_too)?;
        self.wait_for_markers(recv_too, timeout)
    }

    /// Like [`drain`](Self::drain), but each completion is tagged with the
    /// queue it came from: the CQ it was polled from when the QP has
    /// separate send and receive CQs; with one shared CQ, by opcode (an
    /// error completion on a shared CQ is tagged [`WorkQueue::Send`], as
    /// nothing else tells).
    pub fn drain_by_queue(
        &self,
        recv_too: bool,
        timeout: Duration,
    ) -> Result<Vec<(WorkQueue, WorkCompletion)>> {
        self.post_drain_markers(recv_too)?;
        self.tagged_markers(recv_too, timeout)
    }

    fn post_drain_markers(&self, recv_too: bool) -> Result<()> {
        if recv_too {
            // SAFETY: the marker carries no SGEs, so no memory is referenced.
            unsafe {
                self.post_recv(&[RecvWr {
                    wr_id: DRAIN_RECV_WR_ID,
                    sges: &[],
                }])?
            };
        }
        self.set_error()?;
        let marker = SendWr {
            wr_id: DRAIN_SEND_WR_ID,
            op: SendOp::Send,
            sges: &[],
            signaled: true,
            fence: false,
        };
        // SAFETY: the marker carries no SGEs, so no memory is referenced.
        unsafe { self.post_send(&[marker])? };
        Ok(())
    }

    fn wait_for_markers(&self, recv_too: bool, timeout: Duration) -> Result<Vec<WorkCompletion>> {
        Ok(self
            .tagged_markers(recv_too, timeout)?
            .into_iter()
            .map(|(_, wc)| wc)
            .collect())
    }

    fn tagged_markers(
        &self,
        recv_too: bool,
        timeout: Duration,
    ) -> Result<Vec<(WorkQueue, WorkCompletion)>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut send_done = false;
        let mut recv_done = !recv_too;
        let shared = self.send_cq.same_as(&self.recv_cq);
        let (mut s, mut r) = (Vec::new(), Vec::new());
        while !(send_done && recv_done) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(VerbsError::Timeout {
                    what: if send_done {
                        "the receive-queue drain marker"
                    } else {
                        "the send-queue drain marker"
                    },
                });
            }
            let slice = left.min(Duration::from_millis(50));
            let tolerate = |r: Result<usize>| match r {
                Ok(_) | Err(VerbsError::Timeout { .. }) => Ok(()),
                Err(e) => Err(e),
            };
            if !send_done || shared {
                tolerate(self.send_cq.next(&mut s, 64, slice))?;
            }
            if !shared && !recv_done {
                if send_done {
                    tolerate(self.recv_cq.next(&mut r, 64, slice))?;
                } else {
                    self.recv_cq.poll(&mut r, 64)?;
                }
            }
            let tagged = s
                .drain(..)
                .map(|wc| {
                    let q = match wc.opcode() {
                        Some(WcOpcode::Recv | WcOpcode::RecvRdmaWithImm) if shared => {
                            WorkQueue::Recv
                        }
                        _ => WorkQueue::Send,
                    };
                    (q, wc)
                })
                .chain(r.drain(..).map(|wc| (WorkQueue::Recv, wc)));
            for (q, wc) in tagged {
                match (wc.wr_id(), wc.qp_num() == self.qp_num()) {
                    (DRAIN_SEND_WR_ID, true) => send_done = true,
                    (DRAIN_RECV_WR_ID, true) => recv_done = true,
                    _ => out.push((q, wc)),
                }
            }
        }
        Ok(out)
    }
}
