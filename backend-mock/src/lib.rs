//! rdmaxprt-mock: an in-memory RDMA NIC, good enough to run the whole
//! rdmaxprt stack (and its tests, benches and examples) without hardware.
//!
//! - [`MockDevice`] implements [`DmaDevice`](rdmaxprt_core::backend::DmaDevice):
//!   [`MockBuf`]s with unique fake device addresses, a DMA-mapping
//!   [`Tracker`] that records double unmaps, pages released while mapped,
//!   NIC accesses through unmapped SGEs and leaks, a busy-wait cost model
//!   for map/unmap (a strict IOMMU), and memory registration ([`MockMr`])
//!   for RDMA Write/Read checked by rkey, offset and length.
//! - [`MockQp`] implements [`QueuePair`](rdmaxprt_core::backend::QueuePair)
//!   as connected pairs ([`MockDevice::connect_pair`]) with real SQ/RQ
//!   depths, Send/Recv byte copies, RDMA Write/Read, Send-with-Invalidate,
//!   RC error semantics (error completion, QP to error, flush of every
//!   outstanding WR including unsignaled ones) and three [`Delivery`]
//!   modes: inline, a NIC thread with latency, or stepped by hand.
//! - A seeded [`FaultConfig`] injector (no_std RNG) and one-shot triggers
//!   ([`MockQp::inject_next_post_failure`], [`MockQp::force_error`],
//!   [`MockQp::disconnect`]).
//!
//! ```
//! use rdmaxprt_core::backend::{DmaBuf, DmaDevice, QueuePair, RecvWr, SendWr, Wc, WrOp};
//! use rdmaxprt_mock::{MockDevice, QpConfig};
//!
//! let dev = MockDevice::new();
//! let (client, server) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
//! let rbuf = dev.alloc_buf(64).unwrap();
//! let rsge = dev.dma_map(&rbuf, 0, 64).unwrap();
//! // SAFETY: `rbuf` stays alive and untouched until the completion is polled.
//! unsafe { server.post_recv(&[RecvWr { wr_id: 1, sge: rsge }]) }.unwrap();
//!
//! let mut sbuf = dev.alloc_buf(5).unwrap();
//! sbuf.as_mut_slice().copy_from_slice(b"hello");
//! let ssge = dev.dma_map(&sbuf, 0, 5).unwrap();
//! let wr = SendWr { wr_id: 2, op: WrOp::Send, sges: &[ssge], signaled: true };
//! // SAFETY: as above, for `sbuf`.
//! unsafe { client.post_send(&[wr]) }.unwrap();
//!
//! let mut wc = [Wc { wr_id: 0, status: rdmaxprt_core::backend::WcStatus::Flushed,
//!     opcode: rdmaxprt_core::backend::WcOpcode::Unknown, byte_len: 0, invalidated_rkey: None }];
//! assert_eq!(client.poll_send(&mut wc).unwrap(), 1);
//! assert_eq!(server.poll_recv(&mut wc).unwrap(), 1);
//! assert_eq!(&rbuf.as_slice()[..wc[0].byte_len as usize], b"hello");
//!
//! dev.dma_unmap(ssge).unwrap();
//! dev.dma_unmap(rsge).unwrap();
//! dev.assert_clean();
//! ```
//!
//! # Safety model
//! Buffer bytes are shared between the host and the fake NIC without a
//! guard (`DmaBuf::as_slice` returns a bare slice), exactly as with real
//! DMA. The NIC only touches memory named by a WR posted with the `unsafe`
//! `post_send`/`post_recv` (whose contract keeps the host off it until the
//! completion is polled) or memory of a registered [`MockMr`] (whose host
//! accessors lock it against the NIC). Storage stays alive while mapped, so
//! a buffer dropped too early is a recorded [`Violation`], never a
//! use-after-free. `unsafe` is confined to `region`, `buf`, `lock` (no_std)
//! and the NIC's execution module.
//!
//! # Not supported
//! Inline data, SRQs, atomics, CQ overflow, multi-SGE receives, RNR retry
//! limits (a Send waits for a Recv forever), and partial QP failure: an
//! error that real RC hardware would report to the peer only later (a
//! timeout) moves the peer to error immediately. Send-with-Invalidate of an
//! rkey the receiving device does not know is reported in the receiver's
//! completion and otherwise ignored (hardware would fail it).
//!
//! Features: `std` (default) adds the NIC thread, blocking waits and the
//! map/unmap cost model; `alloc` is the rest, no_std.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(not(feature = "alloc"))]
compile_error!("rdmaxprt-mock needs the `alloc` feature (or `std`, which implies it)");

mod buf;
mod device;
mod error;
mod fault;
mod lock;
mod qp;
mod region;
mod tracker;

pub use buf::{MockBuf, MockMr};
pub use device::{DeviceConfig, MockDevice};
pub use error::MockError;
pub use fault::{DelayConfig, FaultConfig, FaultCounts};
#[cfg(feature = "std")]
pub use qp::Notifier;
pub use qp::{Delivery, MockQp, QpConfig};
pub use tracker::{Tracker, Violation};
