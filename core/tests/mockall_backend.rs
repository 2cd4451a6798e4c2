//! Expectations on the backend trait with mockall: the completion path
//! never unmaps or releases pages; drain unmaps each mapped SGE exactly once
//! (never SGE 0) and only then releases the pages.
#![cfg(not(rdmaxprt_loom))]

mod common;

use common::CountingXprt;
use mockall::{mock, predicate};
use rdmaxprt_core::backend::{DmaBuf, DmaDevice, ErrorKind, ErrorType, PostError, Sge};
use rdmaxprt_core::lifecycle::{Deferred, Inline, SendCtxtLifecycle};
use rdmaxprt_core::pool::PoolConfig;
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<String>>>;

/// A buffer that logs its release.
pub struct TBuf {
    name: String,
    bytes: Vec<u8>,
    log: Log,
}

impl DmaBuf for TBuf {
    fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for TBuf {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(format!("drop {}", self.name));
    }
}

mock! {
    pub Dev {}
    impl ErrorType for Dev {
        type Error = ErrorKind;
    }
    impl DmaDevice for Dev {
        type Buf = TBuf;
        fn alloc_buf(&self, len: usize) -> Result<TBuf, ErrorKind>;
        fn dma_map(&self, buf: &TBuf, offset: usize, len: usize) -> Result<Sge, ErrorKind>;
        fn dma_unmap(&self, sge: Sge) -> Result<(), ErrorKind>;
    }
}

const HDR: u64 = 0x1000;

fn page(name: &str, log: &Log) -> TBuf {
    TBuf {
        name: name.into(),
        bytes: vec![0; 64],
        log: log.clone(),
    }
}

/// A mock device whose header buffer maps at `HDR` and pages at 0x2000+.
fn dev(log: &Log) -> MockDev {
    let mut d = MockDev::new();
    let l = log.clone();
    d.expect_alloc_buf().times(1).returning(move |len| {
        Ok(TBuf {
            name: "hdr".into(),
            bytes: vec![0; len],
            log: l.clone(),
        })
    });
    d.expect_dma_map().returning(|buf, _, len| {
        let addr = match buf.name.as_str() {
            "hdr" => HDR,
            n => 0x2000 + n.trim_start_matches('p').parse::<u64>().unwrap() * 0x100,
        };
        Ok(Sge {
            addr,
            length: len as u32,
            lkey: 5,
        })
    });
    d
}

fn cfg() -> PoolConfig {
    PoolConfig {
        cap: 4,
        hdr_size: 128,
        max_sges: 4,
        xprt_id: 1,
    }
}

fn post_two_pages<L: SendCtxtLifecycle<Dev = MockDev>>(life: &L, log: &Log) -> u64 {
    let mut c = life.get().unwrap();
    for n in ["p1", "p2"] {
        let i = c.add_page(page(n, log));
        let d = c.device();
        c.map_page(d, i, 0, 64).unwrap();
    }
    let mut id = 0;
    c.post(|w, built| {
        assert_eq!(built.sges().len(), 3);
        id = w;
        Ok::<_, PostError<ErrorKind>>(())
    })
    .unwrap();
    id
}

#[test]
fn deferred_put_never_unmaps_and_drain_unmaps_each_sge_once_before_pages() {
    let log: Log = Arc::default();
    let mut d = dev(&log);
    let l = log.clone();
    // Exactly the two page SGEs, never the header, each once.
    d.expect_dma_unmap()
        .with(predicate::function(|s: &Sge| s.addr != HDR))
        .times(2)
        .returning(move |s| {
            l.lock().unwrap().push(format!("unmap {:#x}", s.addr));
            Ok(())
        });
    // The header is unmapped only at pool destruction, once.
    d.expect_dma_unmap()
        .with(predicate::function(|s: &Sge| s.addr == HDR))
        .times(1)
        .returning(|_| Ok(()));
    let x = CountingXprt::default();
    let life: Deferred<_, _> = Deferred::new(d, cfg(), &x);
    let id = post_two_pages(&life, &log);

    log.lock().unwrap().clear();
    life.put(id).unwrap();
    assert!(
        log.lock().unwrap().is_empty(),
        "put unmapped or released: {:?}",
        log.lock().unwrap()
    );

    assert_eq!(life.drain(), 1);
    let got = log.lock().unwrap().clone();
    assert_eq!(got, ["unmap 0x2100", "unmap 0x2200", "drop p1", "drop p2"]);
}

#[test]
fn inline_put_does_unmap_on_the_completion_path() {
    // The counter-example: proves the expectation above can fail.
    let log: Log = Arc::default();
    let mut d = dev(&log);
    d.expect_dma_unmap().times(3).returning(|_| Ok(()));
    let life: Inline<_> = Inline::new(d, cfg());
    let id = post_two_pages(&life, &log);
    log.lock().unwrap().clear();
    life.put(id).unwrap();
    assert_eq!(*log.lock().unwrap(), ["drop p1", "drop p2"]);
}
