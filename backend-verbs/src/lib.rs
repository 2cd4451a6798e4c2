//! rdmaxprt-verbs: the libibverbs/librdmacm backend of rdmaxprt.
//!
//! A safe layer over `rdma-sys` 0.3 with exactly what an svcrdma-style
//! server transport needs: open a device by name, a protection domain,
//! memory pools registered once as one MR, completion queues in event or
//! busy-poll mode, RC queue pairs connected by hand or through rdma_cm,
//! posting chains of Send / Send-with-Invalidate / RDMA Write / RDMA Read,
//! decoded work completions, and the kernel's drain.
//!
//! # Safety model
//! Objects hold reference-counted handles to what they were made from, so
//! destruction runs in the only legal order whatever order they are dropped
//! in: QP before its CQs and PD, CQ before its channel, MR (pool) before PD,
//! everything before the device context. Posting work requests is `unsafe`:
//! the memory named by the SGEs must stay registered and untouched until the
//! completion for its wr_id (or a later signaled one) has been polled. Pool
//! memory is never handed out as Rust references, only copied in and out.
//!
//! # Fork
//! See [`fork_init`]: opt-in, call it before any registration.
//!
//! # Testing without RDMA hardware
//! `tests/device.rs` selects its device from `RDMAXPRT_TEST_DEVICE` and
//! reports every test SKIPPED when it is unset. `cargo run -p xtask --
//! vm-test` runs them on Soft-RoCE (rdma_rxe) in a QEMU VM.

mod backend;
mod cm;
mod cm_listen;
mod cq;
mod device;
mod error;
mod pd;
mod pool;
mod qp;
mod wc;

pub use backend::{PoolBuf, VerbsDmaDevice, VerbsQp};
pub use cm::{
    CmConnection, CmListener, ConnParams, ConnectRequest, ResolvedRoute, MAX_ACCEPT_PRIVATE_DATA,
    MAX_CONNECT_PRIVATE_DATA,
};
pub use cm_listen::{CmConnHandle, ConnEvent, ListenerEvent};
pub use cq::{CompletionChannel, CompletionQueue};
pub use device::{device_names, fork_init, Context, DeviceAttr, Gid, PortAttr};
pub use error::{Result, VerbsError};
pub use pd::ProtectionDomain;
pub use pool::{Access, MemoryPool, RemoteBuf, Sge};
pub use qp::{
    ConnectAttr, QpCaps, QpEndpoint, QueuePair, RecvWr, SendOp, SendWr, WorkQueue,
    DRAIN_RECV_WR_ID, DRAIN_SEND_WR_ID,
};
pub use rdma_sys as sys;
/// The core's backend traits, implemented here by [`VerbsDmaDevice`] and [`VerbsQp`].
pub use rdmaxprt_core::backend as core_backend;
pub use wc::{WcOpcode, WcStatus, WorkCompletion};
