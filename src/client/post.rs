//! The client's posted buffers: Send buffers (one per call, unmapped when
//! its completion arrives) and the ring of receive buffers. The only
//! module of the client that posts, hence the only one with `unsafe`: it
//! owns every buffer it posts, so it alone can keep the posting contract.
#![allow(unsafe_code)]

use super::error::ClientError;
use rdmaxprt_core::backend::{
    DmaBuf, DmaDevice, Error as BackendError, ErrorKind, QueuePair, RecvWr, SendWr, Sge, WrOp,
};
use std::collections::HashMap;

/// The error of a failed post: a queue pair that is in the error state,
/// not connected or gone means the connection is lost
/// ([`ClientError::Disconnected`], as a flushed completion reports it);
/// anything else is a backend error of operation `op`.
fn post_error<E>(op: &'static str, e: E) -> ClientError
where
    E: BackendError + std::error::Error + Send + Sync + 'static,
{
    match e.kind() {
        ErrorKind::QpError | ErrorKind::NotConnected | ErrorKind::DeviceGone => {
            tracing::debug!(op, %e, "posting on a broken connection");
            ClientError::Disconnected
        }
        _ => ClientError::backend(op, e),
    }
}

/// Send buffers whose Send has not completed yet, by `wr_id`.
pub(super) struct SendBufs<B> {
    live: HashMap<u64, (B, Sge)>,
    next_wr_id: u64,
}

impl<B: DmaBuf> SendBufs<B> {
    pub(super) fn new() -> Self {
        Self {
            live: HashMap::new(),
            next_wr_id: 1,
        }
    }

    /// Sends posted and not yet completed.
    pub(super) fn outstanding(&self) -> usize {
        self.live.len()
    }

    /// Copies `bytes` into a new mapped buffer and posts one signaled Send
    /// of it. On failure nothing stays mapped or posted.
    pub(super) fn post<D, Q>(&mut self, dev: &D, qp: &Q, bytes: &[u8]) -> Result<(), ClientError>
    where
        D: DmaDevice<Buf = B>,
        Q: QueuePair,
        D::Error: std::error::Error + Send + Sync + 'static,
        Q::Error: std::error::Error + Send + Sync + 'static,
    {
        let mut buf = dev
            .alloc_buf(bytes.len())
            .map_err(|e| ClientError::backend("alloc_buf", e))?;
        buf.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        let sge = dev
            .dma_map(&buf, 0, bytes.len())
            .map_err(|e| ClientError::backend("dma_map", e))?;
        let wr_id = self.next_wr_id;
        self.next_wr_id = self.next_wr_id.wrapping_add(1).max(1);
        let sges = [sge];
        let wr = SendWr {
            wr_id,
            op: WrOp::Send,
            sges: &sges,
            signaled: true,
        };
        // SAFETY: 1. `buf` moves into `self.live` below and is neither
        // written nor unmapped until `complete(wr_id)` sees the Send's
        // completion, or `release_after_drain` runs after the QP was
        // drained; 2. on failure the single WR was not consumed (a
        // one-WR chain either posts or not), so unmapping it here is safe.
        match unsafe { qp.post_send(&[wr]) } {
            Ok(()) => {
                self.live.insert(wr_id, (buf, sge));
                Ok(())
            }
            Err(e) => {
                let _ = dev.dma_unmap(sge);
                drop(buf);
                Err(post_error("post_send", e.error))
            }
        }
    }

    /// A Send completed (successfully or not): unmap and free its buffer.
    /// Returns `false` for a `wr_id` this client never posted.
    pub(super) fn complete<D: DmaDevice<Buf = B>>(&mut self, dev: &D, wr_id: u64) -> bool {
        match self.live.remove(&wr_id) {
            Some((buf, sge)) => {
                let _ = dev.dma_unmap(sge);
                drop(buf);
                true
            }
            None => false,
        }
    }

    /// Teardown, after the QP was drained (no WR can touch any buffer):
    /// unmap and free every buffer whose completion was never polled.
    pub(super) fn release_after_drain<D: DmaDevice<Buf = B>>(&mut self, dev: &D) {
        for (_, (buf, sge)) in self.live.drain() {
            let _ = dev.dma_unmap(sge);
            drop(buf);
        }
    }
}

struct RecvSlot<B> {
    buf: B,
    sge: Sge,
    posted: bool,
}

/// The receive buffers, one inline reply each, persistently mapped.
pub(super) struct RecvRing<B> {
    slots: Vec<RecvSlot<B>>,
}

impl<B: DmaBuf> RecvRing<B> {
    pub(super) fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// Allocates and maps one more buffer of `size` bytes (not posted).
    pub(super) fn add<D>(&mut self, dev: &D, size: usize) -> Result<(), ClientError>
    where
        D: DmaDevice<Buf = B>,
        D::Error: std::error::Error + Send + Sync + 'static,
    {
        let buf = dev
            .alloc_buf(size)
            .map_err(|e| ClientError::backend("alloc_buf", e))?;
        let sge = dev
            .dma_map(&buf, 0, size)
            .map_err(|e| ClientError::backend("dma_map", e))?;
        self.slots.push(RecvSlot {
            buf,
            sge,
            posted: false,
        });
        Ok(())
    }

    /// Number of buffers.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Posts every buffer not posted yet.
    #[doc(alias = "rpcrdma_post_recvs")]
    pub(super) fn post_idle<Q>(&mut self, qp: &Q) -> Result<(), ClientError>
    where
        Q: QueuePair,
        Q::Error: std::error::Error + Send + Sync + 'static,
    {
        let idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| !self.slots[i].posted)
            .collect();
        if idle.is_empty() {
            return Ok(());
        }
        let wrs: Vec<RecvWr> = idle
            .iter()
            .map(|&i| RecvWr {
                wr_id: i as u64,
                sge: self.slots[i].sge,
            })
            .collect();
        // SAFETY: each buffer stays mapped and owned by `self.slots`; it is
        // marked posted below and read only after `complete` saw its
        // completion, or unmapped by `release_after_drain` after the QP was
        // drained.
        let res = unsafe { qp.post_recv(&wrs) };
        let consumed = match &res {
            Ok(()) => wrs.len(),
            Err(e) => e.consumed.min(wrs.len()),
        };
        for &i in &idle[..consumed] {
            self.slots[i].posted = true;
        }
        res.map_err(|e| post_error("post_recv", e.error))
    }

    /// A receive completed: returns its bytes (up to `byte_len`), or `None`
    /// for a `wr_id` that names no posted buffer. The buffer is no longer
    /// posted; [`post_idle`](Self::post_idle) reposts it.
    pub(super) fn complete(&mut self, wr_id: u64, byte_len: Option<u32>) -> Option<Vec<u8>> {
        let slot = usize::try_from(wr_id)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .filter(|s| s.posted)?;
        slot.posted = false;
        let data = slot.buf.as_slice();
        let n = byte_len.map_or(0, |n| (n as usize).min(data.len()));
        Some(data[..n].to_vec())
    }

    /// Teardown, after the QP was drained: unmap and free every buffer.
    pub(super) fn release_after_drain<D: DmaDevice<Buf = B>>(&mut self, dev: &D) {
        for s in self.slots.drain(..) {
            let _ = dev.dma_unmap(s.sge);
            drop(s.buf);
        }
    }
}
