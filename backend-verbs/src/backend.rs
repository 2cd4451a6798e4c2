//! The core's backend traits ([`rdmaxprt_core::backend`]) over real verbs:
//! [`VerbsDmaDevice`] (DMA mapping = handing out chunks of one
//! pre-registered pool, so map and unmap are bookkeeping only) and
//! [`VerbsQp`] (post, poll, drain on an RC queue pair).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdmaxprt_core::backend as cb;

use crate::error::VerbsError;
use crate::pd::ProtectionDomain;
use crate::pool::{Access, MemoryPool, Sge};
use crate::qp::{QueuePair, RecvWr, SendOp, SendWr, WorkQueue};
use crate::wc::{WcOpcode, WcStatus, WorkCompletion};

fn errno_kind(e: &io::Error, otherwise: cb::ErrorKind) -> cb::ErrorKind {
    match e.raw_os_error() {
        Some(libc::ENOMEM) | Some(libc::EAGAIN) => cb::ErrorKind::OutOfResources,
        Some(libc::ENODEV) | Some(libc::ENXIO) => cb::ErrorKind::DeviceGone,
        Some(libc::EINVAL) => cb::ErrorKind::InvalidArgument,
        Some(libc::EACCES) | Some(libc::EPERM) => cb::ErrorKind::AccessDenied,
        _ => otherwise,
    }
}

impl cb::Error for VerbsError {
    fn kind(&self) -> cb::ErrorKind {
        use cb::ErrorKind as K;
        match self {
            VerbsError::SendQueueFull { .. } => K::SendQueueFull,
            VerbsError::PostRecv { source, .. } if source.raw_os_error() == Some(libc::ENOMEM) => {
                K::RecvQueueFull
            }
            VerbsError::PostSend { source, .. } | VerbsError::PostRecv { source, .. } => {
                errno_kind(source, K::QpError)
            }
            VerbsError::ModifyQp { source, .. } => errno_kind(source, K::QpError),
            VerbsError::DeviceNotFound { .. } | VerbsError::GetDeviceList(_) => K::DeviceGone,
            VerbsError::OpenDevice { source, .. } => errno_kind(source, K::DeviceGone),
            VerbsError::AllocPd(e)
            | VerbsError::CreateCompChannel(e)
            | VerbsError::CreateQp(e)
            | VerbsError::CmCreateQp(e)
            | VerbsError::CreateCq { source: e, .. }
            | VerbsError::RegMr { source: e, .. }
            | VerbsError::Mmap { source: e, .. } => errno_kind(e, K::OutOfResources),
            VerbsError::PoolExhausted { .. } => K::OutOfResources,
            VerbsError::UnknownMapping { .. } => K::BadMapping,
            VerbsError::SgeOutOfBounds { .. }
            | VerbsError::BufTooLarge { .. }
            | VerbsError::PrivateDataTooLong { .. }
            | VerbsError::SharedCq => K::InvalidArgument,
            VerbsError::CmBindAddr(_)
            | VerbsError::CmResolveAddr(_)
            | VerbsError::CmResolveRoute(_)
            | VerbsError::CmConnect(_)
            | VerbsError::CmAccept(_)
            | VerbsError::CmReject(_)
            | VerbsError::CmDisconnect(_)
            | VerbsError::CmUnexpectedEvent { .. }
            | VerbsError::CmNoDevice => K::NotConnected,
            _ => K::Other,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain bookkeeping behind;
    // keep going rather than poison every later call.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct DmaShared {
    pool: MemoryPool,
    chunk: usize,
    chunks: usize,
    free: Mutex<Vec<usize>>,
    /// (addr, len) -> times mapped; an unmap of anything else is an error.
    mapped: Mutex<HashMap<(u64, u32), usize>>,
}

/// DMA mapping over one registered [`MemoryPool`] cut into equal chunks:
/// `alloc_buf` hands out a chunk, `dma_map` is a bounds check plus the pool's
/// lkey, `dma_unmap` checks the SGE was mapped. Nothing touches the NIC
/// after construction, which is the cheapest the kernel's DMA API gets.
#[derive(Clone)]
pub struct VerbsDmaDevice {
    shared: Arc<DmaShared>,
}

impl std::fmt::Debug for VerbsDmaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsDmaDevice")
            .field("chunk", &self.shared.chunk)
            .field("chunks", &self.shared.chunks)
            .finish_non_exhaustive()
    }
}

impl VerbsDmaDevice {
    /// A pool of `chunks` buffers of `chunk` bytes each, registered in `pd`
    /// for local write and remote read/write.
    pub fn new(pd: &ProtectionDomain, chunk: usize, chunks: usize) -> Result<Self, VerbsError> {
        let chunk = chunk.max(1);
        let pool = MemoryPool::new(pd, chunk * chunks.max(1), Access::ALL)?;
        Ok(Self {
            shared: Arc::new(DmaShared {
                pool,
                chunk,
                chunks,
                free: Mutex::new((0..chunks).rev().collect()),
                mapped: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The pool's remote key (for a peer's RDMA Read/Write into buffers).
    pub fn rkey(&self) -> u32 {
        self.shared.pool.rkey()
    }
}

/// A chunk of a [`VerbsDmaDevice`]'s pool; returned to it on drop.
pub struct PoolBuf {
    shared: Arc<DmaShared>,
    index: usize,
    len: usize,
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuf")
            .field("index", &self.index)
            .field("len", &self.len)
            .finish()
    }
}

impl PoolBuf {
    fn offset(&self) -> usize {
        self.index * self.shared.chunk
    }

    /// The buffer's device address (for advertising it to a peer).
    pub fn addr(&self) -> u64 {
        self.shared.pool.addr() + self.offset() as u64
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        lock(&self.shared.free).push(self.index);
    }
}

impl cb::DmaBuf for PoolBuf {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: the chunk lies inside the live pool (index < chunks, len <=
        // chunk) and belongs to this PoolBuf alone. The device writes it only
        // while a receive or RDMA Read targeting it is posted, and the post
        // contract (QueuePair::post_* # Safety) forbids host access then.
        unsafe { std::slice::from_raw_parts(self.shared.pool.ptr_at(self.offset()), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice; `&mut self` makes this the only host view.
        unsafe { std::slice::from_raw_parts_mut(self.shared.pool.ptr_at(self.offset()), self.len) }
    }
}

impl cb::ErrorType for VerbsDmaDevice {
    type Error = VerbsError;
}

impl cb::DmaDevice for VerbsDmaDevice {
    type Buf = PoolBuf;

    fn alloc_buf(&self, len: usize) -> Result<PoolBuf, VerbsError> {
        if len > self.shared.chunk {
            return Err(VerbsError::BufTooLarge {
                len,
                chunk: self.shared.chunk,
            });
        }
        let index = lock(&self.shared.free)
            .pop()
            .ok_or(VerbsError::PoolExhausted {
                chunks: self.shared.chunks,
            })?;
        Ok(PoolBuf {
            shared: Arc::clone(&self.shared),
            index,
            len,
        })
    }

    fn dma_map(&self, buf: &PoolBuf, offset: usize, len: usize) -> Result<cb::Sge, VerbsError> {
        let oob = VerbsError::SgeOutOfBounds {
            offset,
            len,
            pool_len: buf.len,
        };
        if offset.checked_add(len).map_or(true, |end| end > buf.len)
            || !Arc::ptr_eq(&buf.shared, &self.shared)
        {
            return Err(oob);
        }
        let len32 = u32::try_from(len).map_err(|_| oob)?;
        let sge = self.shared.pool.sge(buf.offset() + offset, len32)?;
        *lock(&self.shared.mapped)
            .entry((sge.addr, sge.length))
            .or_insert(0) += 1;
        Ok(cb::Sge {
            addr: sge.addr,
            length: sge.length,
            lkey: sge.lkey,
        })
    }

    fn dma_unmap(&self, sge: cb::Sge) -> Result<(), VerbsError> {
        let mut mapped = lock(&self.shared.mapped);
        let key = (sge.addr, sge.length);
        match mapped.get_mut(&key) {
            Some(n) if sge.lkey == self.shared.pool.lkey() => {
                *n -= 1;
                if *n == 0 {
                    mapped.remove(&key);
                }
                Ok(())
            }
            _ => Err(VerbsError::UnknownMapping {
                addr: sge.addr,
                len: sge.length,
            }),
        }
    }
}

/// How long [`cb::QueuePair::drain_qp`] waits for the drain markers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The core's queue-pair trait over a [`QueuePair`] with separate send and
/// receive CQs. Completions a drain collects are kept and handed out by the
/// next polls, so they stay pollable as the trait requires.
pub struct VerbsQp {
    qp: QueuePair,
    send_stash: Mutex<VecDeque<cb::Wc>>,
    recv_stash: Mutex<VecDeque<cb::Wc>>,
}

impl std::fmt::Debug for VerbsQp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsQp")
            .field("qp", &self.qp)
            .finish_non_exhaustive()
    }
}

impl VerbsQp {
    /// Wrap `qp`; its send and receive queues must have separate CQs.
    pub fn new(qp: QueuePair) -> Result<Self, VerbsError> {
        if qp.has_shared_cq() {
            return Err(VerbsError::SharedCq);
        }
        Ok(Self {
            qp,
            send_stash: Mutex::new(VecDeque::new()),
            recv_stash: Mutex::new(VecDeque::new()),
        })
    }

    /// The wrapped queue pair.
    pub fn inner(&self) -> &QueuePair {
        &self.qp
    }

    /// Polls both CQs ahead into the stashes that the next
    /// `poll_send`/`poll_recv` hand out first (in order), and says whether a
    /// completion is now pollable. A CQ cannot be peeked; this is how a
    /// waiter asks without losing what it polled.
    pub fn poll_ahead(&self) -> Result<bool, VerbsError> {
        let mut fresh = Vec::with_capacity(16);
        for (stash, cq) in [
            (&self.send_stash, self.qp.send_cq()),
            (&self.recv_stash, self.qp.recv_cq()),
        ] {
            fresh.clear();
            cq.poll(&mut fresh, 16)?;
            lock(stash).extend(fresh.iter().map(to_core_wc));
        }
        Ok(!lock(&self.send_stash).is_empty() || !lock(&self.recv_stash).is_empty())
    }

    fn poll_into(
        &self,
        stash: &Mutex<VecDeque<cb::Wc>>,
        cq: &crate::cq::CompletionQueue,
        out: &mut [cb::Wc],
    ) -> Result<usize, VerbsError> {
        let mut n = 0;
        {
            let mut st = lock(stash);
            while n < out.len() {
                let Some(wc) = st.pop_front() else { break };
                out[n] = wc;
                n += 1;
            }
        }
        if n < out.len() {
            let mut fresh = Vec::with_capacity(out.len() - n);
            cq.poll(&mut fresh, out.len() - n)?;
            for wc in fresh {
                out[n] = to_core_wc(&wc);
                n += 1;
            }
        }
        Ok(n)
    }
}

fn to_core_wc(wc: &WorkCompletion) -> cb::Wc {
    let status = match wc.status() {
        WcStatus::Success => cb::WcStatus::Success,
        WcStatus::WrFlush => cb::WcStatus::Flushed,
        WcStatus::LocalLength => cb::WcStatus::LocalLength,
        WcStatus::LocalProtection => cb::WcStatus::LocalProtection,
        WcStatus::RemoteAccess => cb::WcStatus::RemoteAccess,
        WcStatus::RemoteOperation => cb::WcStatus::RemoteOp,
        WcStatus::RetryExceeded => cb::WcStatus::RetryExceeded,
        _ => cb::WcStatus::Other(wc.raw_status()),
    };
    let opcode = match wc.opcode() {
        Some(WcOpcode::Send) => cb::WcOpcode::Send,
        Some(WcOpcode::RdmaWrite) => cb::WcOpcode::Write,
        Some(WcOpcode::RdmaRead) => cb::WcOpcode::Read,
        Some(WcOpcode::Recv) => cb::WcOpcode::Recv,
        _ => cb::WcOpcode::Unknown,
    };
    cb::Wc {
        wr_id: wc.wr_id(),
        status,
        opcode,
        byte_len: wc.byte_len().unwrap_or(0),
        invalidated_rkey: wc.invalidated_rkey(),
    }
}

fn to_sge(s: &cb::Sge) -> Sge {
    Sge {
        addr: s.addr,
        length: s.length,
        lkey: s.lkey,
    }
}

fn post_error(e: VerbsError) -> cb::PostError<VerbsError> {
    let consumed = match &e {
        VerbsError::SendQueueFull { index }
        | VerbsError::PostSend { index, .. }
        | VerbsError::PostRecv { index, .. } => *index,
        _ => 0,
    };
    cb::PostError { consumed, error: e }
}

impl cb::ErrorType for VerbsQp {
    type Error = VerbsError;
}

impl cb::QueuePair for VerbsQp {
    fn caps(&self) -> cb::Caps {
        let c = self.qp.caps();
        cb::Caps {
            sq_depth: c.max_send_wr,
            rq_depth: c.max_recv_wr,
            max_send_sge: c.max_send_sge,
            max_recv_sge: c.max_recv_sge,
            max_inline: c.max_inline_data,
        }
    }

    unsafe fn post_send(&self, chain: &[cb::SendWr<'_>]) -> Result<(), cb::PostError<VerbsError>> {
        let sges: Vec<Vec<Sge>> = chain
            .iter()
            .map(|w| w.sges.iter().map(to_sge).collect())
            .collect();
        let wrs: Vec<SendWr<'_>> = chain
            .iter()
            .zip(&sges)
            .map(|(w, s)| SendWr {
                wr_id: w.wr_id,
                op: match w.op {
                    cb::WrOp::Send => SendOp::Send,
                    cb::WrOp::SendInv { rkey } => SendOp::SendWithInvalidate { rkey },
                    cb::WrOp::Write { remote_addr, rkey } => {
                        SendOp::RdmaWrite { remote_addr, rkey }
                    }
                    cb::WrOp::Read { remote_addr, rkey } => SendOp::RdmaRead { remote_addr, rkey },
                },
                sges: s,
                signaled: w.signaled,
                fence: false,
            })
            .collect();
        // SAFETY: the caller upholds the trait's contract, which is ours.
        unsafe { self.qp.post_send(&wrs) }.map_err(post_error)
    }

    unsafe fn post_recv(&self, wrs: &[cb::RecvWr]) -> Result<(), cb::PostError<VerbsError>> {
        let sges: Vec<[Sge; 1]> = wrs.iter().map(|w| [to_sge(&w.sge)]).collect();
        let ours: Vec<RecvWr<'_>> = wrs
            .iter()
            .zip(&sges)
            .map(|(w, s)| RecvWr {
                wr_id: w.wr_id,
                sges: s,
            })
            .collect();
        // SAFETY: the caller upholds the trait's contract, which is ours.
        unsafe { self.qp.post_recv(&ours) }.map_err(post_error)
    }

    fn poll_send(&self, out: &mut [cb::Wc]) -> Result<usize, VerbsError> {
        self.poll_into(&self.send_stash, self.qp.send_cq(), out)
    }

    fn poll_recv(&self, out: &mut [cb::Wc]) -> Result<usize, VerbsError> {
        self.poll_into(&self.recv_stash, self.qp.recv_cq(), out)
    }

    fn drain_qp(&self) -> Result<(), VerbsError> {
        let got = self.qp.drain_by_queue(true, DRAIN_TIMEOUT)?;
        let (mut s, mut r) = (lock(&self.send_stash), lock(&self.recv_stash));
        for (q, wc) in got {
            match q {
                WorkQueue::Send => s.push_back(to_core_wc(&wc)),
                WorkQueue::Recv => r.push_back(to_core_wc(&wc)),
            }
        }
        Ok(())
    }
}
