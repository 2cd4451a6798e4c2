//! A device whose large buffers come from a limited pool of whole chunks
//! (as the verbs listener's registered pools hand them out), for the
//! `transport_*` suites that exhaust registered memory.
#![allow(dead_code)]

use rdmaxprt::mock::{MockBuf, MockDevice, MockError};
use rdmaxprt_core::backend::{DmaBuf, DmaDevice, ErrorType, Sge};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Buffers this large or larger come from the limited pool.
pub const LARGE: usize = 32 * 1024;

/// A device whose large buffers come from a pool of `max` whole chunks;
/// small ones (headers, receives) are unlimited. Mappings go to the mock
/// device.
#[derive(Clone)]
pub struct Chunks {
    /// The mock device underneath.
    pub dev: MockDevice,
    /// Large chunks handed out and not yet dropped.
    pub live: Arc<AtomicUsize>,
    /// Most large chunks out at once.
    pub max: usize,
}

impl Chunks {
    /// A pool of `max` large chunks over `dev`.
    pub fn new(dev: &MockDevice, max: usize) -> Self {
        Self {
            dev: dev.clone(),
            live: Arc::default(),
            max,
        }
    }

    /// Large chunks out now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// A buffer of [`Chunks`]; a large one gives its chunk back when dropped.
pub struct ChunkBuf {
    buf: MockBuf,
    chunk: Option<Arc<AtomicUsize>>,
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        if let Some(live) = &self.chunk {
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl DmaBuf for ChunkBuf {
    fn as_slice(&self) -> &[u8] {
        self.buf.as_slice()
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut_slice()
    }
}

impl ErrorType for Chunks {
    type Error = MockError;
}

impl DmaDevice for Chunks {
    type Buf = ChunkBuf;
    fn alloc_buf(&self, len: usize) -> Result<ChunkBuf, MockError> {
        let chunk = if len >= LARGE {
            if self.live.fetch_add(1, Ordering::SeqCst) >= self.max {
                self.live.fetch_sub(1, Ordering::SeqCst);
                return Err(MockError::OutOfResources);
            }
            Some(Arc::clone(&self.live))
        } else {
            None
        };
        let buf = self.dev.alloc_buf(len)?;
        Ok(ChunkBuf { buf, chunk })
    }
    fn dma_map(&self, buf: &ChunkBuf, offset: usize, len: usize) -> Result<Sge, MockError> {
        self.dev.dma_map(&buf.buf, offset, len)
    }
    fn dma_unmap(&self, sge: Sge) -> Result<(), MockError> {
        self.dev.dma_unmap(sge)
    }
}
