//! Arbitrary bytes as a received call header (`decode_header`), with tiny,
//! default and unlimited limits: every accepted header's views are iterated
//! and checked, re-encoded and decoded again; every rejection is checked
//! against the bytes. See `checks/rpcrdma.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdmaxprt_fuzz::checks::rpcrdma::check_call_bytes;

fuzz_target!(|data: &[u8]| check_call_bytes(data));
