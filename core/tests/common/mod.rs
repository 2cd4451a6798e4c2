//! A minimal DMA device for the core's own tests: it tracks live mappings
//! and records an event log (map, unmap, page drop) so tests can check
//! order. The full fake NIC is `rdmaxprt-mock`; this one keeps the core's
//! tests free of a dependency cycle and small enough for loom.
#![allow(dead_code)]

use rdmaxprt_core::backend::{DmaBuf, DmaDevice, ErrorKind, ErrorType, Sge};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One thing that happened to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A mapping was made.
    Map(u64),
    /// A mapping was undone.
    Unmap(u64),
    /// A buffer starting at this address was dropped.
    Drop(u64),
}

#[derive(Debug, Default)]
pub struct Log {
    pub events: Mutex<Vec<Event>>,
    pub live: Mutex<HashSet<u64>>,
    pub violations: Mutex<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeDev {
    pub log: Arc<Log>,
    next: Arc<AtomicU64>,
    pub fail_alloc: Arc<std::sync::atomic::AtomicBool>,
}

pub struct FakeBuf {
    base: u64,
    bytes: Vec<u8>,
    log: Arc<Log>,
}

impl DmaBuf for FakeBuf {
    fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for FakeBuf {
    fn drop(&mut self) {
        let end = self.base + self.bytes.len() as u64;
        let live = self.log.live.lock().unwrap();
        if live
            .iter()
            .any(|a| (self.base..end.max(self.base + 1)).contains(a))
        {
            self.log
                .violations
                .lock()
                .unwrap()
                .push(format!("buffer {:#x} released while mapped", self.base));
        }
        drop(live);
        self.log.events.lock().unwrap().push(Event::Drop(self.base));
    }
}

impl ErrorType for FakeDev {
    type Error = ErrorKind;
}

impl DmaDevice for FakeDev {
    type Buf = FakeBuf;

    fn alloc_buf(&self, len: usize) -> Result<FakeBuf, ErrorKind> {
        if self.fail_alloc.load(Ordering::Relaxed) {
            return Err(ErrorKind::OutOfResources);
        }
        let base = self.next.fetch_add(1 << 20, Ordering::Relaxed) + (1 << 20);
        Ok(FakeBuf {
            base,
            bytes: vec![0; len],
            log: self.log.clone(),
        })
    }

    fn dma_map(&self, buf: &FakeBuf, offset: usize, len: usize) -> Result<Sge, ErrorKind> {
        let addr = buf.base + offset as u64;
        if !self.log.live.lock().unwrap().insert(addr) {
            // One mapping per address keeps the tracker simple.
            return Err(ErrorKind::InvalidArgument);
        }
        self.log.events.lock().unwrap().push(Event::Map(addr));
        Ok(Sge {
            addr,
            length: len as u32,
            lkey: 1,
        })
    }

    fn dma_unmap(&self, sge: Sge) -> Result<(), ErrorKind> {
        if !self.log.live.lock().unwrap().remove(&sge.addr) {
            self.log
                .violations
                .lock()
                .unwrap()
                .push(format!("unmap of {:#x} not mapped", sge.addr));
            return Err(ErrorKind::BadMapping);
        }
        self.log.events.lock().unwrap().push(Event::Unmap(sge.addr));
        Ok(())
    }
}

impl FakeDev {
    pub fn live(&self) -> usize {
        self.log.live.lock().unwrap().len()
    }
    pub fn violations(&self) -> Vec<String> {
        self.log.violations.lock().unwrap().clone()
    }
    pub fn events(&self) -> Vec<Event> {
        self.log.events.lock().unwrap().clone()
    }
    pub fn clear_events(&self) {
        self.log.events.lock().unwrap().clear();
    }
}

/// Counts enqueues; implements the runtime side of the backstop.
#[derive(Debug, Default)]
pub struct CountingXprt {
    pub flags: rdmaxprt_core::xprt::XprtFlags,
    pub enqueues: std::sync::atomic::AtomicUsize,
}

impl rdmaxprt_core::xprt::Enqueue for CountingXprt {
    fn flags(&self) -> &rdmaxprt_core::xprt::XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::SeqCst);
    }
}
