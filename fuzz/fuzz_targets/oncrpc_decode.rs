//! Arbitrary bytes as an ONC RPC CALL and REPLY header. See
//! `checks/oncrpc.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdmaxprt_fuzz::checks::oncrpc::check_bytes;

fuzz_target!(|data: &[u8]| check_bytes(data));
