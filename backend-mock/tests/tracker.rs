//! The DMA-mapping tracker catches double unmaps, pages released while
//! mapped, leaks and NIC use of unmapped memory; the cost model busy-waits.
mod common;

use common::*;
use rdmaxprt_core::backend::{DmaDevice, Error, ErrorKind, QueuePair, Sge, WcStatus};
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

/// The tracker finds a buffer by its address window (no ordered walk), so
/// check that every access still resolves to exactly the mapped bytes of
/// the right buffer: many buffers live at once, SGEs just past a mapping,
/// spanning its end, in a window with nothing mapped, or with another
/// device's lkey are all unmapped accesses, and an unmap must name a
/// mapping exactly.
#[test]
fn nic_access_resolves_the_right_buffer_and_only_mapped_bytes() {
    let dev = MockDevice::new();
    let other = MockDevice::new();
    let (a, b) = stepped_pair(&dev);
    // Ten live buffers; buffer i holds byte i, mapped at 8..24 only.
    let bufs: Vec<_> = (0..10u8)
        .map(|i| {
            let (buf, all) = mapped(&dev, &[i; 64]);
            dev.dma_unmap(all).unwrap();
            let part = dev.dma_map(&buf, 8, 16).unwrap();
            (buf, part)
        })
        .collect();
    // An unmapped buffer between them: its window resolves to nothing.
    let idle = dev.alloc_buf(64).unwrap();
    let (_r, rsge) = post_recv_buf(&b, 64, 1);
    post(&a, &[send(7, &[bufs[7].1], true)]).unwrap();
    assert!(a.step());
    assert_eq!(ids(&poll_send(&a)), [(7, WcStatus::Success)]);
    let wc = poll_recv(&b);
    assert_eq!(wc[0].byte_len, 16);
    let bad = [
        // Just past the mapping, inside the buffer.
        Sge {
            addr: bufs[3].1.addr + 16,
            length: 1,
            lkey: dev.lkey(),
        },
        // Spanning the mapping's end.
        Sge {
            length: 17,
            ..bufs[3].1
        },
        // Before the mapping.
        Sge {
            addr: bufs[3].1.addr - 1,
            length: 2,
            lkey: dev.lkey(),
        },
        // A buffer with no mapping.
        Sge {
            addr: idle.addr(),
            length: 1,
            lkey: dev.lkey(),
        },
        // Past the buffer's end, far into its window.
        Sge {
            addr: bufs[3].0.addr() + (1 << 20),
            length: 1,
            lkey: dev.lkey(),
        },
        // Another device's lkey.
        Sge {
            lkey: other.lkey(),
            ..bufs[3].1
        },
    ];
    for (i, &sge) in bad.iter().enumerate() {
        // A failed Send breaks its QP: a fresh pair per SGE.
        let (a2, b2) = stepped_pair(&dev);
        let (_r2, rs2) = post_recv_buf(&b2, 64, 1);
        post(&a2, &[send(20, &[sge], true)]).unwrap();
        assert!(a2.step());
        assert_eq!(
            ids(&poll_send(&a2)),
            [(20, WcStatus::LocalProtection)],
            "SGE {i}: {sge:?}"
        );
        assert_eq!(
            dev.tracker().take_violations(),
            [Violation::UnmappedAccess { sge }],
            "SGE {i}"
        );
        let _ = b2.drain_qp();
        dev.dma_unmap(rs2).unwrap();
    }
    // Unmap must name a mapping exactly: a sub-range or shifted range of
    // a live mapping is a bad unmap and leaves the mapping alone.
    let shifted = Sge {
        addr: bufs[2].1.addr + 1,
        ..bufs[2].1
    };
    let shorter = Sge {
        length: 8,
        ..bufs[2].1
    };
    assert!(dev.dma_unmap(shifted).is_err());
    assert!(dev.dma_unmap(shorter).is_err());
    assert_eq!(
        dev.tracker().take_violations(),
        [
            Violation::BadUnmap { sge: shifted },
            Violation::BadUnmap { sge: shorter }
        ]
    );
    assert_eq!(dev.tracker().live_mappings(), 11);
    let mut leaks = dev.tracker().leaks();
    assert!(
        leaks.windows(2).all(|w| w[0].addr < w[1].addr),
        "by address"
    );
    leaks.retain(|l| *l != rsge);
    assert_eq!(leaks, bufs.iter().map(|b| b.1).collect::<Vec<_>>());
    let _ = a.drain_qp();
    for (_, s) in &bufs {
        dev.dma_unmap(*s).unwrap();
    }
    dev.dma_unmap(rsge).unwrap();
    drop(idle);
    dev.assert_clean();
    other.assert_clean();
}
