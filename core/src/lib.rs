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
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
// Without `alloc` only the lists, SQ accounting and codecs exist; the
// pool-only helpers are then unused.
#![cfg_attr(not(feature = "alloc"), allow(dead_code, unused_imports))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod sync;

// `unsafe` is denied crate-wide; these modules hold the unsafe seams and
// allow it, each block with its `// SAFETY:` argument:
// - `backend`: the posting contract (`unsafe fn post_send`/`post_recv`);
// - `spin`: the one spin lock's `Sync` and guard;
// - `pool`: the context arena's slots, owned through the state machine;
// - `lifecycle`: releasing claimed slots, the `OwnedCtxt` guard;
// - `transport`: posting WRs whose memory the transport keeps alive, and
//   the receive buffers the device writes.
#[allow(unsafe_code)]
pub mod backend;
pub mod llist;
pub mod oncrpc;
pub mod rpcrdma;
#[allow(unsafe_code)]
pub mod spin;
pub mod sq;
pub mod wait;
pub mod xprt;

#[cfg(feature = "alloc")]
pub mod ctxt;
#[cfg(feature = "alloc")]
#[allow(unsafe_code)]
pub mod lifecycle;
#[cfg(feature = "alloc")]
#[allow(unsafe_code)]
pub mod pool;
pub mod stats;
#[cfg(feature = "alloc")]
#[allow(unsafe_code)]
pub mod transport;
