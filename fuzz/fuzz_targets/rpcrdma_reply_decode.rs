//! Arbitrary bytes as a received reply header (`decode_reply_header`,
//! including `RDMA_ERROR`). See `checks/rpcrdma.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdmaxprt_fuzz::checks::rpcrdma::check_reply_bytes;

fuzz_target!(|data: &[u8]| check_reply_bytes(data));
