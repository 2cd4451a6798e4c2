//! End to end: the core's deferred send-context lifecycle on a MockDevice
//! and MockQp, with the DMA tracker checking every unmap.
mod common;

use common::*;
use rdmaxprt_core::backend::{DmaBuf, DmaDevice, QueuePair, SendWr, WcStatus, WrOp};
use rdmaxprt_core::lifecycle::{Deferred, SendCtxtLifecycle};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use rdmaxprt_mock::{MockDevice, QpConfig};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
struct Xprt {
    flags: XprtFlags,
    enqueues: AtomicUsize,
}

impl Enqueue for Xprt {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn deferred_lifecycle_on_the_mock_unmaps_everything_but_the_header_until_teardown() {
    let dev = MockDevice::new();
    let (server, client) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let (rbuf, rsge) = post_recv_buf(&client, 8192, 1);

    let xprt = Xprt::default();
    let cfg = PoolConfig {
        hdr_size: 256,
        ..PoolConfig::for_transport(16, 8, 4)
    };
    let life: Deferred<MockDevice, &Xprt> = Deferred::new(dev.clone(), cfg, &xprt);

    let mut ctxt = life.get().unwrap();
    ctxt.header_buf()[..4].copy_from_slice(b"HDR:");
    ctxt.set_header_len(4).unwrap();
    let mut page = dev.alloc_buf(4096).unwrap();
    page.as_mut_slice()[..5].copy_from_slice(b"reply");
    let p = ctxt.add_page(page);
    ctxt.map_page(&dev, p, 0, 5).unwrap();
    assert_eq!(ctxt.sges().len(), 2);
    assert_eq!(dev.tracker().live_mappings(), 3, "header + page + recv");

    ctxt.post(|wr_id, c| {
        let wr = SendWr {
            wr_id,
            op: WrOp::Send,
            sges: c.sges(),
            signaled: true,
        };
        // SAFETY: the context (header and pages) stays untouched until
        // its completion is put and drained below.
        unsafe { server.post_send(&[wr]) }
    })
    .unwrap();

    let wc = poll_send(&server);
    assert_eq!(wc.len(), 1);
    assert_eq!(wc[0].status, WcStatus::Success);
    let r = poll_recv(&client);
    assert_eq!(r[0].byte_len, 9);
    assert_eq!(&rbuf.as_slice()[..9], b"HDR:reply");

    life.put(wc[0].wr_id).unwrap();
    assert_eq!(
        xprt.enqueues.load(Ordering::Relaxed),
        1,
        "empty->non-empty enqueue"
    );
    assert!(
        life.put(wc[0].wr_id).is_err(),
        "a duplicate completion is rejected"
    );
    assert_eq!(life.drain(), 1);
    assert_eq!(
        dev.tracker().live_mappings(),
        2,
        "only the persistent header SGE and the client's recv stay mapped"
    );
    assert!(dev.tracker().violations().is_empty());

    // The recycled context is the same one: header still mapped, no new map.
    let maps = dev.tracker().maps();
    drop(life.get().unwrap());
    assert_eq!(dev.tracker().maps(), maps);

    server.drain_qp().unwrap();
    client.drain_qp().unwrap();
    drop(life);
    dev.dma_unmap(rsge).unwrap();
    drop(rbuf);
    assert_eq!(dev.tracker().live_mappings(), 0);
    dev.assert_clean();
}
