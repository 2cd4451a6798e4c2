//! Receive contexts: preallocated, persistently mapped buffers posted on
//! the Receive Queue (`svc_rdma_recv_ctxt`).
//!
//! A receive completion validates its `wr_id`, queues the context on the
//! transport's receive list and sets DATA + enqueues. The worker takes
//! contexts in arrival order and lends the message to the service in
//! place; the context returns to the free list (to be reposted in
//! batches) when the call is dropped.

use crate::backend::{DmaDevice, RecvWr, Sge, WcStatus};
use crate::spin::SpinMutex;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

/// One receive buffer, mapped for its whole life.
#[doc(alias = "svc_rdma_recv_ctxt")]
pub(crate) struct RecvCtxt<B> {
    pub(crate) buf: B,
    pub(crate) sge: Sge,
}

/// What the receive side holds, all behind one short spin lock (the
/// kernel's `sc_rq_dto_lock`): contexts are few and critical sections tiny.
pub(crate) struct RecvState {
    /// Completed receives in arrival order: (ctxt index, byte_len).
    pub(crate) ready: VecDeque<(u32, u32)>,
    /// Contexts ready to be posted.
    pub(crate) free: Vec<u32>,
    /// Posted contexts (by index) so completions can be validated.
    pub(crate) posted: Vec<bool>,
    /// Number posted.
    pub(crate) posted_count: u32,
}

/// The receive contexts of one transport.
pub(crate) struct RecvQueue<D: DmaDevice> {
    ctxts: Vec<UnsafeCell<RecvCtxt<D::Buf>>>,
    st: SpinMutex<RecvState>,
    buf_size: usize,
}

// SAFETY: `st` is a lock; a context's buffer is written by the device while posted and read by exactly one
// worker after its completion moved it to `ready` and the worker took it
// under the lock, so no two threads access one buffer at once.
unsafe impl<D: DmaDevice + Sync> Sync for RecvQueue<D> where D::Buf: Send {}
// SAFETY: owning the queue owns every buffer in it.
unsafe impl<D: DmaDevice + Send> Send for RecvQueue<D> where D::Buf: Send {}

/// A receive completion's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecvVerdict {
    /// Queued for the worker.
    Queued,
    /// Flushed or failed: the connection is going down.
    Failed,
    /// The `wr_id` named no posted receive (a device bug): ignored.
    Bogus,
}

impl<D: DmaDevice> RecvQueue<D> {
    /// Allocates and maps `count` buffers of `buf_size` bytes.
    pub(crate) fn new(dev: &D, count: u32, buf_size: usize) -> Result<Self, D::Error> {
        let mut ctxts = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let buf = dev.alloc_buf(buf_size)?;
            let sge = match dev.dma_map(&buf, 0, buf_size) {
                Ok(s) => s,
                Err(e) => {
                    // Unmap what was mapped so far before reporting.
                    for c in ctxts.drain(..) {
                        let c: UnsafeCell<RecvCtxt<D::Buf>> = c;
                        let _ = dev.dma_unmap(c.into_inner().sge);
                    }
                    return Err(e);
                }
            };
            ctxts.push(UnsafeCell::new(RecvCtxt { buf, sge }));
        }
        Ok(Self {
            st: SpinMutex::new(RecvState {
                ready: VecDeque::with_capacity(count as usize),
                free: (0..count).rev().collect(),
                posted: alloc::vec![false; count as usize],
                posted_count: 0,
            }),
            ctxts,
            buf_size,
        })
    }

    /// Runs `f` on the receive state under the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut RecvState) -> R) -> R {
        f(&mut self.st.lock())
    }

    /// Takes up to `max` free contexts and returns their Receive WRs,
    /// marking them posted (undo with [`unpost`](Self::unpost)).
    #[doc(alias = "svc_rdma_recv_ctxt_get")]
    pub(crate) fn take_for_post(&self, max: u32, out: &mut Vec<RecvWr>) {
        self.with(|st| {
            while (out.len() as u32) < max {
                let Some(i) = st.free.pop() else { break };
                st.posted[i as usize] = true;
                st.posted_count += 1;
                // SAFETY: a free context is owned by the receive state; only
                // its immutable SGE is read here.
                let sge = unsafe { (*self.ctxts[i as usize].get()).sge };
                out.push(RecvWr {
                    wr_id: i as u64,
                    sge,
                });
            }
        });
    }

    /// Returns the contexts of WRs the device did not take.
    pub(crate) fn unpost(&self, wrs: &[RecvWr]) {
        self.with(|st| {
            for w in wrs {
                let i = w.wr_id as usize;
                st.posted[i] = false;
                st.posted_count -= 1;
                st.free.push(i as u32);
            }
        });
    }

    /// The receive completion handler's bookkeeping.
    pub(crate) fn complete(&self, wr_id: u64, status: WcStatus, byte_len: u32) -> RecvVerdict {
        let i = wr_id as usize;
        if wr_id >= self.ctxts.len() as u64 {
            return RecvVerdict::Bogus;
        }
        self.with(|st| {
            if !st.posted[i] {
                return RecvVerdict::Bogus;
            }
            st.posted[i] = false;
            st.posted_count -= 1;
            if status == WcStatus::Success {
                let len = byte_len.min(self.buf_size as u32);
                st.ready.push_back((i as u32, len));
                RecvVerdict::Queued
            } else {
                st.free.push(i as u32);
                RecvVerdict::Failed
            }
        })
    }

    /// Takes the oldest completed receive: `(context index, length)`. The
    /// caller holds the context until it [`put`](Self::put)s it back.
    pub(crate) fn pop_ready(&self) -> Option<(u32, u32)> {
        self.with(|st| st.ready.pop_front())
    }

    /// The received bytes of context `i`.
    ///
    /// # Safety
    /// The caller holds context `i` (took it with
    /// [`pop_ready`](Self::pop_ready) and has not put it back), so it is on
    /// no list and not posted, and `len` is what `pop_ready` gave.
    pub(crate) unsafe fn bytes(&self, i: u32, len: u32) -> &[u8] {
        // SAFETY: the context left `ready` under the lock and is on no list
        // now, so its holder is its only user; the device finished writing
        // it before the completion was polled.
        let c = unsafe { &*self.ctxts[i as usize].get() };
        &crate::backend::DmaBuf::as_slice(&c.buf)[..len as usize]
    }

    /// Returns held context `i` to the free list, to be reposted.
    #[doc(alias = "svc_rdma_recv_ctxt_put")]
    pub(crate) fn put(&self, i: u32) {
        self.with(|st| st.free.push(i));
    }

    /// Whether completed receives wait.
    pub(crate) fn has_ready(&self) -> bool {
        self.with(|st| !st.ready.is_empty())
    }

    /// Receives currently posted.
    pub(crate) fn posted(&self) -> u32 {
        self.with(|st| st.posted_count)
    }

    /// Teardown: drop pending receives and unmap every buffer. Returns the
    /// buffers still marked posted (should be 0). With `drained` false (the
    /// QP drain failed, so the device may still write into a posted
    /// receive) the posted buffers are leaked instead: never unmapped,
    /// never freed.
    #[doc(alias = "svc_rdma_flush_recv_queues")]
    pub(crate) fn destroy(self, dev: &D, drained: bool) -> u32 {
        let (posted, flags) = self.with(|st| (st.posted_count, core::mem::take(&mut st.posted)));
        for (c, was_posted) in self.ctxts.into_iter().zip(flags) {
            let c = c.into_inner();
            if was_posted && !drained {
                core::mem::forget(c);
            } else {
                let _ = dev.dma_unmap(c.sge);
            }
        }
        posted
    }
}
