//! The DMA-mapping tracker catches double unmaps, pages released while
//! mapped, leaks and NIC use of unmapped memory; the cost model busy-waits.
mod common;

use common::*;
use rdmaxprt_core::backend::{DmaDevice, Error, ErrorKind, Sge, WcStatus};
use rdmaxprt_mock::{DeviceConfig, MockDevice, Violation};
use std::time::{Duration, Instant};

#[test]
fn tracker_catches_double_unmap_and_unknown_unmap() {
    let dev = MockDevice::new();
    let b = dev.alloc_buf(4096).unwrap();
    let s = dev.dma_map(&b, 0, 4096).unwrap();
    dev.dma_unmap(s).unwrap();
    let e = dev.dma_unmap(s).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadMapping);
    let garbage = Sge {
        addr: 0x42,
        length: 8,
        lkey: dev.lkey(),
    };
    assert!(dev.dma_unmap(garbage).is_err());
    assert_eq!(
        dev.tracker().violations(),
        [
            Violation::BadUnmap { sge: s },
            Violation::BadUnmap { sge: garbage }
        ]
    );
    assert_eq!(dev.tracker().maps(), 1);
    assert_eq!(dev.tracker().unmaps(), 1);
    assert_eq!(dev.tracker().live_mappings(), 0);
}

#[test]
fn tracker_counts_duplicate_mappings_separately() {
    let dev = MockDevice::new();
    let b = dev.alloc_buf(64).unwrap();
    let s1 = dev.dma_map(&b, 0, 16).unwrap();
    let s2 = dev.dma_map(&b, 0, 16).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(dev.tracker().live_mappings(), 2);
    dev.dma_unmap(s1).unwrap();
    dev.dma_unmap(s2).unwrap();
    assert!(dev.dma_unmap(s1).is_err(), "a third unmap of two maps");
    assert_eq!(dev.tracker().live_mappings(), 0);
}

#[test]
fn tracker_catches_page_released_while_mapped() {
    let dev = MockDevice::new();
    let b = dev.alloc_buf(100).unwrap();
    let addr = b.addr();
    let s = dev.dma_map(&b, 10, 20).unwrap();
    drop(b);
    assert_eq!(
        dev.tracker().violations(),
        [Violation::ReleasedWhileMapped {
            addr,
            len: 100,
            live_mappings: 1
        }]
    );
    // The storage outlived the buffer handle: unmapping still works.
    dev.dma_unmap(s).unwrap();
    assert_eq!(dev.tracker().live_mappings(), 0);
}

#[test]
fn tracker_reports_leaks_and_assert_clean_panics_on_them() {
    let dev = MockDevice::new();
    let b = dev.alloc_buf(64).unwrap();
    let s = dev.dma_map(&b, 8, 8).unwrap();
    assert_eq!(dev.tracker().leaks(), [s]);
    let report = dev.tracker().check().unwrap_err();
    assert!(report.contains("1 leaked mapping"), "{report}");
    let d2 = dev.clone();
    let r = std::panic::catch_unwind(move || d2.assert_clean());
    assert!(r.is_err(), "assert_clean must panic on a leak");
    dev.dma_unmap(s).unwrap();
    dev.assert_clean();
}

#[test]
fn nic_access_after_early_unmap_is_a_violation() {
    let dev = MockDevice::new();
    let (a, b) = stepped_pair(&dev);
    let (_r, rsge) = post_recv_buf(&b, 16, 1);
    let (_s, ssge) = mapped(&dev, b"unmapped early");
    post(&a, &[send(2, &[ssge], true)]).unwrap();
    // The bug the tracker exists for: unmapping before the Send completed.
    dev.dma_unmap(ssge).unwrap();
    assert!(a.step());
    assert_eq!(ids(&poll_send(&a)), [(2, WcStatus::LocalProtection)]);
    assert_eq!(
        dev.tracker().take_violations(),
        [Violation::UnmappedAccess { sge: ssge }]
    );
    dev.dma_unmap(rsge).unwrap();
    dev.assert_clean();
}

#[test]
fn map_and_unmap_costs_busy_wait() {
    let cost = Duration::from_micros(300);
    let dev = MockDevice::with_config(DeviceConfig {
        map_cost: Duration::ZERO,
        unmap_cost: cost,
    });
    let b = dev.alloc_buf(64).unwrap();
    let sges: Vec<_> = (0..10).map(|_| dev.dma_map(&b, 0, 64).unwrap()).collect();
    let t = Instant::now();
    for s in sges {
        dev.dma_unmap(s).unwrap();
    }
    assert!(t.elapsed() >= cost * 10, "10 unmaps at {cost:?} each");
    dev.set_map_cost(cost);
    let t = Instant::now();
    let s = dev.dma_map(&b, 0, 1).unwrap();
    assert!(t.elapsed() >= cost);
    dev.set_unmap_cost(Duration::ZERO);
    dev.dma_unmap(s).unwrap();
    dev.assert_clean();
}
