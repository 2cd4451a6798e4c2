//! rdmaxprt-core
#![no_std]
