//! rdmaxprt-core
#![no_std]
pub mod oncrpc;
