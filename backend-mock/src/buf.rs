//! Host-side handles to mock memory: [`MockBuf`] (a page or pool chunk the
//! transport maps for DMA) and [`MockMr`] (a buffer registered for remote
//! RDMA Write/Read by the peer).
#![allow(unsafe_code)]

use crate::device::DevShared;
use crate::region::Region;
use alloc::sync::Arc;
use core::fmt;
use rdmaxprt_core::backend::DmaBuf;

/// An owned buffer of a [`MockDevice`](crate::MockDevice), with its own
/// fake device address range.
///
/// Dropping it while a DMA mapping into it is live records
/// [`Violation::ReleasedWhileMapped`](crate::Violation) on its device's
/// tracker (the storage itself stays alive until the last mapping goes, so
/// the NIC never touches freed memory).
pub struct MockBuf {
    pub(crate) region: Arc<Region>,
    pub(crate) dev: Arc<DevShared>,
}

impl MockBuf {
    pub(crate) fn new(dev: Arc<DevShared>, len: usize) -> Self {
        Self {
            region: Arc::new(Region::new(len)),
            dev,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.region.len() == 0
    }

    /// The fake device address of byte 0 (an SGE for offset `o` of a
    /// mapping has `addr == self.addr() + o`).
    pub fn addr(&self) -> u64 {
        self.region.base()
    }
}

impl fmt::Debug for MockBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockBuf")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len())
            .finish()
    }
}

impl DmaBuf for MockBuf {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: 1. the NIC writes this buffer only for a WR posted with
        // `unsafe post_send/post_recv`, whose contract forbids host access
        // until the completion is polled or the QP drained, so no NIC write
        // overlaps this borrow in a correct program; 2. a `host_bytes_mut`
        // slice needs `&mut self`, which this `&self` borrow excludes.
        unsafe { self.region.host_bytes() }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: 1. as in `as_slice` for the NIC; 2. `&mut self` is the
        // only host handle (MockBuf is not Clone; an MR owns its buffer).
        unsafe { self.region.host_bytes_mut() }
    }
}

impl Drop for MockBuf {
    fn drop(&mut self) {
        self.dev.tracker.buf_released(&self.region);
    }
}

/// A buffer registered for remote access: the peer reaches it with RDMA
/// Write/Read by [`rkey`](MockMr::rkey), an address in
/// `addr()..addr() + len()`, and a length. Host access goes through
/// [`read`](MockMr::read)/[`write`](MockMr::write), which exclude NIC
/// access for their duration. Dropping it deregisters the rkey.
pub struct MockMr {
    pub(crate) buf: Option<MockBuf>,
    pub(crate) rkey: u32,
}

impl MockMr {
    fn buf(&self) -> &MockBuf {
        match &self.buf {
            Some(b) => b,
            None => panic!("MockMr invariant: the buffer is present until deregister"),
        }
    }

    /// The remote key the peer names this region with.
    pub fn rkey(&self) -> u32 {
        self.rkey
    }

    /// Device address of the first byte (what the peer puts in
    /// `remote_addr`, plus an offset).
    pub fn addr(&self) -> u64 {
        self.buf().addr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf().len()
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.buf().is_empty()
    }

    /// Whether the rkey is still valid (a peer's Send-with-Invalidate
    /// naming it invalidates it).
    pub fn is_valid(&self) -> bool {
        self.buf().dev.mr_lookup(self.rkey).is_some_and(|(_, v)| v)
    }

    /// Runs `f` on the bytes; no RDMA touches them meanwhile. `f` must not
    /// post, step or drain a QP, nor access this MR again (the NIC waits on
    /// the lock `f` runs under: that would deadlock).
    pub fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        self.buf().region.with_locked(|b| f(b))
    }

    /// Runs `f` on the bytes, writable; no RDMA touches them meanwhile.
    /// Same restrictions on `f` as [`read`](MockMr::read).
    pub fn write<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.buf().region.with_locked(f)
    }

    /// The bytes in place, without the NIC lock [`read`](MockMr::read)
    /// takes: for a host that keeps a slice across posts and polls (a
    /// registered region lent to a caller).
    ///
    /// # Safety
    /// While the slice lives 1. no RDMA Write by the peer may target this
    /// region (no WR the peer posts names its rkey for a Write), and 2. the
    /// host must not write it through [`write`](MockMr::write) (from any
    /// thread).
    pub unsafe fn host_bytes(&self) -> &[u8] {
        // SAFETY: the only writers of the region are the peer's NIC (duty
        // 1), `write` (duty 2) and `host_bytes_mut`, which needs `&mut
        // self` and so cannot overlap this borrow; NIC reads may overlap
        // (both sides only read).
        unsafe { self.buf().region.host_bytes() }
    }

    /// The bytes in place, writable, without the NIC lock.
    ///
    /// # Safety
    /// While the slice lives no RDMA Read or Write by the peer may target
    /// this region.
    pub unsafe fn host_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: 1. the caller keeps the peer's NIC away (this fn's
        // contract); 2. `&mut self` excludes every other host access
        // through this MR, the only host handle of its buffer.
        unsafe { self.buf().region.host_bytes_mut() }
    }

    /// Deregisters the rkey and gives the buffer back.
    pub fn deregister(mut self) -> MockBuf {
        let buf = self.buf.take();
        match buf {
            Some(b) => {
                b.dev.deregister(self.rkey);
                b
            }
            None => panic!("MockMr invariant: the buffer is present until deregister"),
        }
    }
}

impl fmt::Debug for MockMr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockMr")
            .field("rkey", &format_args!("{:#x}", self.rkey))
            .field("buf", &self.buf)
            .finish()
    }
}

impl Drop for MockMr {
    fn drop(&mut self) {
        if let Some(b) = &self.buf {
            b.dev.deregister(self.rkey);
        }
    }
}
