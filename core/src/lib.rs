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
//!
//! # Kernel names
//!
//! Each item carries its kernel name as a `#[doc(alias)]`, so rustdoc's
//! search and `grep` find it by the name a svcrdma reader knows.
//!
//! | Linux (`net/sunrpc/xprtrdma/svc_rdma*.c`) | rdmaxprt-core |
//! |---|---|
//! | `struct svcxprt_rdma` | [`transport::SvcRdmaXprt`] |
//! | `svc_rdma_accept` (transport set-up, receives posted) | [`transport::SvcRdmaXprt::new`] |
//! | `svc_rdma_recvfrom` | [`transport::SvcRdmaXprt::recvfrom`] |
//! | `svc_rdma_sendto` | [`transport::SvcRdmaXprt::sendto`] |
//! | `svc_rdma_send_error_msg` | [`transport::SvcRdmaXprt::send_error`] |
//! | `svc_rdma_release_ctxt` (`xpo_release_ctxt`) | [`transport::SvcRdmaXprt::release_ctxt`] |
//! | `svc_rdma_free` | [`transport::SvcRdmaXprt::free`] |
//! | `svc_xprt_close` | [`transport::SvcRdmaXprt::close`] |
//! | `svc_xprt_deferred_close` | `SvcRdmaXprt::deferred_close` (crate-private) |
//! | `svc_rdma_has_wspace` | [`transport::SvcRdmaXprt::has_wspace`], [`sq::SqAccount::has_wspace`] |
//! | `svc_rdma_wc_send` | [`transport::SvcRdmaXprt::handle_send_wc`] |
//! | `svc_rdma_wc_receive` | [`transport::SvcRdmaXprt::handle_recv_wc`] |
//! | `svc_rdma_wc_read_done` | `SvcRdmaXprt::read_done` (crate-private; called by `handle_send_wc`) |
//! | `svc_rdma_process_read_list` | `SvcRdmaXprt::start_reads` (crate-private, `transport/read.rs`) |
//! | `svc_rdma_post_send` | `SvcRdmaXprt::post_chain` (crate-private, `transport/send.rs`) |
//! | `svc_rdma_sq_wait` | [`sq::SqAccount::reserve`] (and the transport's `reserve`, which drains after a wait) |
//! | `svc_rdma_wake_send_waiters` | [`sq::SqAccount::wake_send_waiters`] |
//! | `svc_rdma_post_recvs`, `svc_rdma_refresh_recvs` | `SvcRdmaXprt::post_recvs`, `refresh_recvs` (crate-private) |
//! | `struct svc_rdma_recv_ctxt`, `svc_rdma_recv_ctxt_get` / `_put` | `transport/recv.rs`: `RecvCtxt`, `RecvQueue::take_for_post` / `take_ready` |
//! | `svc_rdma_flush_recv_queues` | `RecvQueue::destroy` (crate-private) |
//! | `struct svc_rdma_send_ctxt` | [`ctxt::SendCtxt`] |
//! | `svc_rdma_send_ctxt_alloc` | `SendCtxtPool::alloc` (crate-private) |
//! | `svc_rdma_send_ctxt_get` | [`lifecycle::SendCtxtLifecycle::get`] |
//! | `svc_rdma_send_ctxt_put` | [`lifecycle::SendCtxtLifecycle::put`] (validate, claim) then [`lifecycle::SendCtxtLifecycle::complete`] (the policy's action) |
//! | `svc_rdma_send_ctxts_drain` (the seed's worker-side drain) | [`lifecycle::SendCtxtLifecycle::drain`] |
//! | `svc_rdma_send_ctxt_release` | `SendCtxtPool::send_ctxt_release` (crate-private) |
//! | `svc_rdma_send_ctxt_unmap` | [`lifecycle::SendCtxtLifecycle::unmap`] |
//! | `svc_xprt_enqueue` | [`xprt::Enqueue::enqueue`] |
//! | `XPT_DATA`, `XPT_CLOSE`, `XPT_BUSY`, `XPT_CONN` | [`xprt::XprtFlags::DATA`], [`CLOSE`](xprt::XprtFlags::CLOSE), [`BUSY`](xprt::XprtFlags::BUSY), [`CONN_PENDING`](xprt::XprtFlags::CONN_PENDING) |
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
// - `ctxt` (one item): `SendCtxt::hold`, whose tokens the transport
//   trusts when a released context hands them back;
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
