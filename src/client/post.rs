//! The client's posted buffers: the send-buffer ring (mapped once, a
//! buffer reused when its Send completes) and the ring of receive buffers. The only
//! module of the client that posts, hence the only one with the posting
//! contract's `unsafe`: it owns every buffer it posts, so it alone can keep
//! it. (The other `unsafe` of the client is host access to registered
//! regions in place: `backend` declares it, `lend` uses it.)
#![allow(unsafe_code)]

use super::error::ClientError;
use rdmaxprt_core::backend::{
    DmaBuf, DmaDevice, Error as BackendError, ErrorKind, QueuePair, RecvWr, SendWr, Sge, WrOp,
};

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

struct SendSlot<B> {
    buf: B,
    /// The mapping of all of `buf`; a Send names its first bytes.
    sge: Sge,
    busy: bool,
}

/// The send-buffer ring: buffers of the inline threshold's size, mapped
/// once and reused as their Sends complete (`rpcrdma_req` send buffers,
/// which xprtrdma also maps once). A Send's `wr_id` is its slot's index.
/// The ring grows on demand up to a limit (the Send Queue depth), so it
/// holds no more buffers than Sends were ever outstanding at once.
pub(super) struct SendRing<B> {
    slots: Vec<SendSlot<B>>,
    free: Vec<usize>,
    busy: usize,
    size: usize,
    limit: usize,
    allocated: u64,
}

impl<B: DmaBuf> SendRing<B> {
    /// An empty ring of `size`-byte buffers, at most `limit` of them.
    pub(super) fn new(size: usize, limit: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            busy: 0,
            size: size.max(1),
            limit: limit.max(1),
            allocated: 0,
        }
    }

    /// Sends posted and not yet completed.
    pub(super) fn outstanding(&self) -> usize {
        self.busy
    }

    /// Buffers allocated and mapped over the ring's life (teardown
    /// releases them but does not reset the count).
    pub(super) fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Makes sure a buffer is free for [`post`](Self::post): `Ok(true)` if
    /// one is, `Ok(false)` if every buffer is busy and no more can be
    /// allocated (wait for a Send completion). A failed allocation caps the
    /// ring at its current size, unless it is empty (then it is an error).
    pub(super) fn reserve<D>(&mut self, dev: &D) -> Result<bool, ClientError>
    where
        D: DmaDevice<Buf = B>,
        D::Error: std::error::Error + Send + Sync + 'static,
    {
        if !self.free.is_empty() {
            return Ok(true);
        }
        if self.slots.len() >= self.limit {
            return Ok(false);
        }
        let buf = match dev.alloc_buf(self.size) {
            Ok(b) => b,
            Err(e) if self.slots.is_empty() => return Err(ClientError::backend("alloc_buf", e)),
            Err(e) => {
                tracing::debug!(%e, slots = self.slots.len(), "send ring stops growing");
                self.limit = self.slots.len();
                return Ok(false);
            }
        };
        let sge = dev
            .dma_map(&buf, 0, self.size)
            .map_err(|e| ClientError::backend("dma_map", e))?;
        self.allocated += 1;
        self.free.push(self.slots.len());
        self.slots.push(SendSlot {
            buf,
            sge,
            busy: false,
        });
        Ok(true)
    }

    /// Encodes a message into a free buffer with `fill` (which returns the
    /// length written, at most the buffer's size) and posts one signaled
    /// Send of it. Needs a successful [`reserve`](Self::reserve) first. On
    /// failure the buffer stays free and nothing is posted.
    pub(super) fn post<Q>(
        &mut self,
        qp: &Q,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, ClientError>,
    ) -> Result<(), ClientError>
    where
        Q: QueuePair,
        Q::Error: std::error::Error + Send + Sync + 'static,
    {
        let i = *self
            .free
            .last()
            .ok_or(ClientError::InvalidConfig("send ring used without reserve"))?;
        let slot = &mut self.slots[i];
        let buf = slot
            .buf
            .as_mut_slice()
            .get_mut(..self.size)
            .ok_or(ClientError::InvalidConfig("send buffer shorter than asked"))?;
        let n = fill(buf)?;
        let length = u32::try_from(n)
            .ok()
            .filter(|&l| l as usize <= self.size)
            .ok_or(ClientError::InvalidConfig(
                "message longer than its send buffer",
            ))?;
        let sges = [Sge { length, ..slot.sge }];
        let wr = SendWr {
            wr_id: i as u64,
            op: WrOp::Send,
            sges: &sges,
            signaled: true,
        };
        // SAFETY: 1. slot `i` was free (no Send of it outstanding) and is
        // marked busy below; it is neither written nor unmapped until
        // `complete(i)` sees the Send's completion, or `release_after_drain`
        // runs after the QP was drained; 2. on failure the single WR was
        // not consumed (a one-WR chain either posts or not), so the slot
        // stays free.
        match unsafe { qp.post_send(&[wr]) } {
            Ok(()) => {
                slot.busy = true;
                self.free.pop();
                self.busy += 1;
                Ok(())
            }
            Err(e) => Err(post_error("post_send", e.error)),
        }
    }

    /// A Send completed (successfully or not): its buffer is free again.
    /// Returns `false` for a `wr_id` that names no outstanding Send.
    pub(super) fn complete(&mut self, wr_id: u64) -> bool {
        let Some(i) = usize::try_from(wr_id)
            .ok()
            .filter(|&i| i < self.slots.len())
        else {
            return false;
        };
        let slot = &mut self.slots[i];
        if !slot.busy {
            return false;
        }
        slot.busy = false;
        self.busy -= 1;
        self.free.push(i);
        true
    }

    /// Teardown, after the QP was drained (no WR can touch any buffer):
    /// unmap and free every buffer.
    pub(super) fn release_after_drain<D: DmaDevice<Buf = B>>(&mut self, dev: &D) {
        for s in self.slots.drain(..) {
            let _ = dev.dma_unmap(s.sge);
            drop(s.buf);
        }
        self.free.clear();
        self.busy = 0;
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
    /// Slots not posted (so a poll with nothing to repost scans nothing).
    idle: usize,
}

impl<B: DmaBuf> RecvRing<B> {
    pub(super) fn new() -> Self {
        Self {
            slots: Vec::new(),
            idle: 0,
        }
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
        self.idle += 1;
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
        // Small batches on the stack: one receive per reply is the usual.
        const BATCH: usize = 16;
        let mut i = 0;
        while self.idle != 0 && i < self.slots.len() {
            let mut wrs = [RecvWr {
                wr_id: 0,
                sge: self.slots[0].sge,
            }; BATCH];
            let mut idx = [0usize; BATCH];
            let mut n = 0;
            while i < self.slots.len() && n < BATCH {
                if !self.slots[i].posted {
                    wrs[n] = RecvWr {
                        wr_id: i as u64,
                        sge: self.slots[i].sge,
                    };
                    idx[n] = i;
                    n += 1;
                }
                i += 1;
            }
            if n == 0 {
                break;
            }
            // SAFETY: each buffer stays mapped and owned by `self.slots`; it
            // is marked posted below and read only after `complete` saw its
            // completion, or unmapped by `release_after_drain` after the QP
            // was drained.
            let res = unsafe { qp.post_recv(&wrs[..n]) };
            let consumed = match &res {
                Ok(()) => n,
                Err(e) => e.consumed.min(n),
            };
            for &j in &idx[..consumed] {
                self.slots[j].posted = true;
            }
            self.idle -= consumed;
            res.map_err(|e| post_error("post_recv", e.error))?;
        }
        Ok(())
    }

    /// A receive completed: copies its bytes (up to `byte_len`) into `out`
    /// (replacing what it held) and returns `true`, or returns `false` for a
    /// `wr_id` that names no posted buffer. The buffer is no longer posted;
    /// [`post_idle`](Self::post_idle) reposts it.
    pub(super) fn complete(
        &mut self,
        wr_id: u64,
        byte_len: Option<u32>,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(slot) = usize::try_from(wr_id)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .filter(|s| s.posted)
        else {
            return false;
        };
        slot.posted = false;
        self.idle += 1;
        let data = slot.buf.as_slice();
        let n = byte_len.map_or(0, |n| (n as usize).min(data.len()));
        out.clear();
        out.extend_from_slice(&data[..n]);
        true
    }

    /// Teardown, after the QP was drained: unmap and free every buffer.
    pub(super) fn release_after_drain<D: DmaDevice<Buf = B>>(&mut self, dev: &D) {
        for s in self.slots.drain(..) {
            let _ = dev.dma_unmap(s.sge);
            drop(s.buf);
        }
        self.idle = 0;
    }
}
