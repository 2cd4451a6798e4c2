//! rdmaxprt-core: the hardware-independent heart of rdmaxprt.
//!
//! The send-context lifecycle of the Linux server-side RPC-over-RDMA
//! transport after the 2026 deferred-release change: a Send completion only
//! pushes the context on a per-transport lock-free release list; the worker
//! drains the list between requests (unmap, chunk resources, pages, free
//! list); the push that takes the list from empty to non-empty enqueues the
//! transport so an idle connection is still drained.
//!
//! `#![no_std]` always. Features:
//! - `alloc`: the send-context pool, the lifecycle policies, anything that
//!   owns heap buffers.
//! - `std` (default, implies `alloc`): blocking waits and the `Workqueue`
//!   policy's worker threads.
//!
//! Loom: build with `RUSTFLAGS="--cfg rdmaxprt_loom"` to swap every atomic
//! for loom's model-checked one (see `tests/loom_*.rs`).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
// Without `alloc` only the lists, SQ accounting and codecs exist; the
// pool-only helpers are then unused.
#![cfg_attr(not(feature = "alloc"), allow(dead_code, unused_imports))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod spin;
mod sync;

pub mod backend;
pub mod llist;
pub mod oncrpc;
pub mod rpcrdma;
pub mod sq;
pub mod wait;
pub mod xprt;

#[cfg(feature = "alloc")]
pub mod ctxt;
#[cfg(feature = "alloc")]
pub mod lifecycle;
#[cfg(feature = "alloc")]
pub mod pool;
pub mod stats;
#[cfg(feature = "alloc")]
pub mod transport;
