//! [`VerbsMemory`]: DMA buffers from two pre-registered pools (core's
//! `DmaDevice`) and remote regions registered one MR each (the client's
//! [`RemoteMemory`]).
#![allow(unsafe_code)]

use crate::client::{RemoteMemory, RemoteRegion};
use rdmaxprt_core::backend::{self as cb, DmaBuf, DmaDevice, ErrorType};
use rdmaxprt_verbs::{Access, MemoryPool, PoolBuf, ProtectionDomain, VerbsDmaDevice, VerbsError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Sizes of a [`VerbsMemory`]'s two registered pools. Buffers of up to
/// `small_chunk` bytes come from the small pool, larger ones (up to
/// `large_chunk`) from the large pool; each buffer takes a whole chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Bytes per small chunk (receive buffers, header buffers, inline
    /// reply pages).
    pub small_chunk: usize,
    /// Number of small chunks.
    pub small_chunks: usize,
    /// Bytes per large chunk (Read chunk sinks, staged Write and Reply
    /// chunk payloads).
    pub large_chunk: usize,
    /// Number of large chunks.
    pub large_chunks: usize,
}

impl Default for MemoryConfig {
    /// 1024 chunks of 4 KiB and 8 of 2 MiB (20 MiB registered): room for a
    /// transport's receive ring and send contexts plus a few 1 MiB calls in
    /// flight.
    fn default() -> Self {
        Self {
            small_chunk: 4096,
            small_chunks: 1024,
            large_chunk: 2 << 20,
            large_chunks: 8,
        }
    }
}

/// Live objects of a [`VerbsMemory`] (all its clones together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Buffers allocated and not yet dropped.
    pub live_bufs: usize,
    /// `dma_map`s not yet undone by a `dma_unmap`.
    pub live_mappings: usize,
    /// Remote regions registered and not yet dropped (deregistered).
    pub live_regions: usize,
    /// `dma_unmap`s of something not mapped (always a bug of the caller).
    pub bad_unmaps: usize,
}

impl Accounting {
    /// Nothing live and no bad unmap: what a clean teardown leaves.
    pub fn is_clean(&self) -> bool {
        *self == Accounting::default()
    }
}

#[derive(Debug, Default)]
struct Counters {
    bufs: AtomicUsize,
    mappings: AtomicUsize,
    regions: AtomicUsize,
    bad_unmaps: AtomicUsize,
}

struct MemInner {
    pd: ProtectionDomain,
    small: VerbsDmaDevice,
    large: VerbsDmaDevice,
    small_chunk: usize,
    large_lkey: u32,
    counters: Arc<Counters>,
}

/// Memory of one side of a verbs connection: DMA buffers from two
/// pre-registered pools (core's `DmaDevice`: mapping is bookkeeping, as
/// in `VerbsDmaDevice`) and remote regions registered one MR each (the
/// client's [`RemoteMemory`]). Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct VerbsMemory {
    inner: Arc<MemInner>,
}

impl std::fmt::Debug for VerbsMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsMemory")
            .field("pd", &self.inner.pd)
            .field("small", &self.inner.small)
            .field("large", &self.inner.large)
            .field("accounting", &self.accounting())
            .finish()
    }
}

impl VerbsMemory {
    /// Registers the two pools of `cfg` in `pd` (the PD of the QP the
    /// memory is used with).
    pub fn new(pd: &ProtectionDomain, cfg: MemoryConfig) -> Result<Self, VerbsError> {
        let small = VerbsDmaDevice::new(pd, cfg.small_chunk, cfg.small_chunks)?;
        let large = VerbsDmaDevice::new(pd, cfg.large_chunk, cfg.large_chunks.max(1))?;
        // The large pool's lkey routes an unmap: learn it from one mapping.
        let probe = large.alloc_buf(1)?;
        let sge = large.dma_map(&probe, 0, 1)?;
        large.dma_unmap(sge)?;
        drop(probe);
        Ok(Self {
            inner: Arc::new(MemInner {
                pd: pd.clone(),
                small,
                large,
                small_chunk: cfg.small_chunk.max(1),
                large_lkey: sge.lkey,
                counters: Arc::default(),
            }),
        })
    }

    /// The protection domain everything is registered in.
    pub fn pd(&self) -> &ProtectionDomain {
        &self.inner.pd
    }

    /// Live buffers, mappings and regions right now.
    pub fn accounting(&self) -> Accounting {
        let c = &self.inner.counters;
        Accounting {
            live_bufs: c.bufs.load(Ordering::SeqCst),
            live_mappings: c.mappings.load(Ordering::SeqCst),
            live_regions: c.regions.load(Ordering::SeqCst),
            bad_unmaps: c.bad_unmaps.load(Ordering::SeqCst),
        }
    }

    fn pool_of(&self, large: bool) -> &VerbsDmaDevice {
        if large {
            &self.inner.large
        } else {
            &self.inner.small
        }
    }
}

/// A chunk of one of a [`VerbsMemory`]'s pools; returned on drop.
pub struct VerbsBuf {
    buf: PoolBuf,
    large: bool,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for VerbsBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsBuf")
            .field("buf", &self.buf)
            .field("large", &self.large)
            .finish()
    }
}

impl VerbsBuf {
    /// The buffer's device address.
    pub fn addr(&self) -> u64 {
        self.buf.addr()
    }
}

impl Drop for VerbsBuf {
    fn drop(&mut self) {
        self.counters.bufs.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DmaBuf for VerbsBuf {
    fn as_slice(&self) -> &[u8] {
        self.buf.as_slice()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut_slice()
    }
}

impl ErrorType for VerbsMemory {
    type Error = VerbsError;
}

impl DmaDevice for VerbsMemory {
    type Buf = VerbsBuf;

    fn alloc_buf(&self, len: usize) -> Result<VerbsBuf, VerbsError> {
        let large = len > self.inner.small_chunk;
        let buf = self.pool_of(large).alloc_buf(len)?;
        self.inner.counters.bufs.fetch_add(1, Ordering::SeqCst);
        Ok(VerbsBuf {
            buf,
            large,
            counters: Arc::clone(&self.inner.counters),
        })
    }

    fn dma_map(&self, buf: &VerbsBuf, offset: usize, len: usize) -> Result<cb::Sge, VerbsError> {
        let sge = self.pool_of(buf.large).dma_map(&buf.buf, offset, len)?;
        self.inner.counters.mappings.fetch_add(1, Ordering::SeqCst);
        Ok(sge)
    }

    fn dma_unmap(&self, sge: cb::Sge) -> Result<(), VerbsError> {
        let large = sge.lkey == self.inner.large_lkey;
        match self.pool_of(large).dma_unmap(sge) {
            Ok(()) => {
                self.inner.counters.mappings.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                self.inner
                    .counters
                    .bad_unmaps
                    .fetch_add(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

/// Memory registered for remote Read and Write: its own mapping and MR,
/// deregistered on drop.
pub struct VerbsRegion {
    mr: MemoryPool,
    len: usize,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for VerbsRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsRegion")
            .field("mr", &self.mr)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for VerbsRegion {
    fn drop(&mut self) {
        self.counters.regions.fetch_sub(1, Ordering::SeqCst);
    }
}

impl VerbsRegion {
    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }
}

impl RemoteMemory for VerbsMemory {
    type Region = VerbsRegion;

    fn register_remote(&self, len: usize) -> Result<VerbsRegion, VerbsError> {
        // A fresh anonymous mapping is zeroed; REMOTE_WRITE needs LOCAL_WRITE.
        let mr = MemoryPool::new(&self.inner.pd, len.max(1), Access::ALL)?;
        self.inner.counters.regions.fetch_add(1, Ordering::SeqCst);
        Ok(VerbsRegion {
            mr,
            len,
            counters: Arc::clone(&self.inner.counters),
        })
    }
}

impl RemoteRegion for VerbsRegion {
    fn rkey(&self) -> u32 {
        self.mr.rkey()
    }

    fn addr(&self) -> u64 {
        self.mr.addr()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn write_at(&self, offset: usize, data: &[u8]) -> bool {
        self.in_bounds(offset, data.len()) && self.mr.write(offset, data).is_ok()
    }

    fn read_at(&self, offset: usize, out: &mut [u8]) -> bool {
        self.in_bounds(offset, out.len()) && self.mr.read(offset, out).is_ok()
    }

    unsafe fn host_bytes(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `self.len <= mr.len()` bytes
        // while `self.mr` lives (as long as `&self`); the caller keeps the
        // peer's writes and `write_at` away meanwhile (this fn's contract),
        // and `host_bytes_mut` needs `&mut self`, which this borrow
        // excludes.
        unsafe { std::slice::from_raw_parts(self.mr.as_mut_ptr(), self.len) }
    }

    unsafe fn host_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: valid for `self.len` bytes as above; `&mut self`
        // excludes every other host access; the caller keeps the peer
        // away (this fn's contract).
        unsafe { std::slice::from_raw_parts_mut(self.mr.as_mut_ptr(), self.len) }
    }
}
