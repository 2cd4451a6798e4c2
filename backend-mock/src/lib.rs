//! rdmaxprt-mock
#![no_std]
