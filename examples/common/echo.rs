//! The echo program the examples serve (ONC RPC over RPC-over-RDMA).
//!
//! - `NULL` (0): no arguments, no results.
//! - `ECHO` (1): results = the arguments; if the call offered a Write
//!   chunk, the arguments come back as bulk payload through it instead.
//! - `READ` (2): argument = a 4-byte big-endian length N; returns N bytes of
//!   a known pattern as bulk payload (Write chunk).
//! - `ECHO_BULK` (3): the arguments come back as bulk payload (through the
//!   call's Write chunk), whatever `bulk_echo` says.
//!
//! Shared by the examples, the runtime and verbs tests, and the benches
//! (each includes this file with `#[path]`).
#![allow(dead_code)]

use rdmaxprt::service::{Bulk, CallContext, ProcError, ReplyBody, Service};
use std::ops::RangeInclusive;

/// Program number (transient range).
pub const PROG: u32 = 0x2000_0099;
/// Version.
pub const VERS: u32 = 1;
/// NULL.
pub const PROC_NULL: u32 = 0;
/// ECHO.
pub const PROC_ECHO: u32 = 1;
/// READ.
pub const PROC_READ: u32 = 2;
/// ECHO_BULK.
pub const PROC_ECHO_BULK: u32 = 3;

/// The byte at `i` of a READ reply.
pub fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

/// The echo service. `bulk_echo`: send ECHO results back as bulk payload.
#[derive(Debug, Default)]
pub struct Echo {
    /// Whether ECHO returns its arguments as bulk payload (through the
    /// client's Write chunk) rather than inline results.
    pub bulk_echo: bool,
}

impl Service for Echo {
    fn program(&self) -> u32 {
        PROG
    }
    fn versions(&self) -> RangeInclusive<u32> {
        VERS..=VERS
    }
    fn call(
        &self,
        ctx: &CallContext<'_>,
        args: &[u8],
        out: &mut ReplyBody,
    ) -> Result<(), ProcError> {
        match ctx.proc {
            PROC_NULL => Ok(()),
            // The arguments go back lent, not copied: from a pulled Read
            // chunk straight into the client's Write chunk.
            PROC_ECHO_BULK => {
                out.bulk = Some(Bulk::Args(0..args.len()));
                Ok(())
            }
            PROC_ECHO if self.bulk_echo => {
                out.bulk = Some(Bulk::Args(0..args.len()));
                Ok(())
            }
            PROC_ECHO => {
                out.results.extend_from_slice(args);
                Ok(())
            }
            PROC_READ => {
                let n = args.get(..4).ok_or(ProcError::GarbageArgs)?;
                let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
                if n > 4 << 20 {
                    return Err(ProcError::GarbageArgs);
                }
                out.bulk = Some(Bulk::Owned((0..n).map(pattern).collect()));
                Ok(())
            }
            _ => Err(ProcError::ProcUnavail),
        }
    }
}
