#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

pub mod client;
pub mod completion;
#[cfg(feature = "verbs")]
pub mod rdma;

pub use rdmaxprt_core::{
    backend, ctxt, lifecycle, llist, oncrpc, pool, rpcrdma, sq, stats, transport, wait, xprt,
};

/// The in-memory fake NIC (feature `mock`, on by default).
#[cfg(feature = "mock")]
pub use rdmaxprt_mock as mock;

/// The libibverbs backend (feature `verbs`); the client's traits for it
/// are in [`rdma`].
#[cfg(feature = "verbs")]
pub use rdmaxprt_verbs as verbs;

/// Soft-RoCE (rdma_rxe) device provisioning (feature `rxe`).
#[cfg(feature = "rxe")]
pub use rdmaxprt_rxe as rxe;

pub mod runtime;
pub mod service;
