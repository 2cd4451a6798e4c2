#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

pub mod client;

pub use rdmaxprt_core::{
    backend, ctxt, lifecycle, llist, oncrpc, pool, rpcrdma, sq, stats, wait, xprt,
};

/// The in-memory fake NIC (feature `mock`, on by default).
#[cfg(feature = "mock")]
pub use rdmaxprt_mock as mock;

pub mod runtime;
pub mod service;
