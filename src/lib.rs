//! rdmaxprt facade
pub use rdmaxprt_core as core_api;
