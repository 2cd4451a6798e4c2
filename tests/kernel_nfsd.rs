//! The project's client against the Linux kernel's nfsd (svcrdma) over
//! rdma_cm: a server nobody here wrote (issue 9, item 9a).
//!
//! Needs an nfsd listening on RDMA with NFSv4 and no rpcbind, named by
//! `RDMAXPRT_TEST_NFSD=IP:PORT`. `cargo run -p xtask -- vm-test` sets it
//! up in the guest (xtask/guest/init.sh: `mount -t nfsd`, versions
//! `-2 -3 +4 +4.1 +4.2`, 4 threads, portlist `rdma 20149`, and the
//! `auth.unix.ip` cache entry rpc.mountd would have written, so a
//! non-NULL call is not deferred and dropped). Without the variable every
//! test reports SKIPPED, never passed (and the VM run fails on a skip).
//!
//! - NULL (NFSv4, procedure 0): an empty accepted reply;
//! - version 7: the typed PROG_MISMATCH, low 4 high 4;
//! - NFSv4 COMPOUND with no operations (minor version 0): `NFS4_OK`, an
//!   empty tag and no results (12 bytes), inline, through a Reply chunk
//!   and with the call in a Position-Zero Read chunk;
//! - transport version 2 (the test-only `ClientConfig::transport_version`):
//!   the typed `ERR_VERS` 1..1, although svcrdma's reply header echoes
//!   version 2.
//!
//! Each test opens its own connection with `connect_rdma` (RFC 8797
//! private data both ways, no Send With Invalidate offered) and checks the
//! client's memory is back to nothing live after it closes.
#![cfg(feature = "verbs")]

#[path = "../backend-verbs/tests/harness/mod.rs"]
mod harness;

use harness::{Skip, TestFn, TestResult};
use rdmaxprt::client::{
    connect_rdma, CallOptions, CallPath, ClientConfig, ClientError, ConnectConfig, ReplyBytes,
    ReplyPath, VerbsClient as Client,
};
use rdmaxprt::oncrpc::AcceptStat;
use rdmaxprt::rdma::VerbsMemory;
use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

/// NFS (RFC 1813 / RFC 7530 program number).
const NFS_PROG: u32 = 100_003;
/// NFSv4.
const NFS_V4: u32 = 4;
/// NULL.
const PROC_NULL: u32 = 0;
/// NFSv4 COMPOUND.
const PROC_COMPOUND: u32 = 1;
/// Bound on connecting and on each call.
const TIMEOUT: Duration = Duration::from_secs(20);

fn nfsd_addr() -> Result<SocketAddr, Box<dyn Error>> {
    let v = std::env::var("RDMAXPRT_TEST_NFSD")
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Skip("RDMAXPRT_TEST_NFSD (IP:PORT of a kernel nfsd on RDMA) is not set".into())
        })?;
    Ok(v.parse()
        .map_err(|e| format!("RDMAXPRT_TEST_NFSD={v}: {e}"))?)
}

/// A client connected to the nfsd by [`connect_rdma`] (rdma_cm with RFC
/// 8797 private data; svcrdma answers with its own), with its memory (to
/// check for leaks after `close`).
fn connect(cfg: ClientConfig) -> Result<(Client, VerbsMemory), Box<dyn Error>> {
    let c = connect_rdma(
        nfsd_addr()?,
        &ConnectConfig {
            client: ClientConfig {
                timeout: TIMEOUT,
                ..cfg
            },
            timeout: TIMEOUT,
            ..ConnectConfig::default()
        },
    )?;
    println!(
        "  connected: inline send threshold {} after svcrdma's answer",
        c.config().inline_threshold
    );
    let mem = c.device().clone();
    Ok((c, mem))
}

/// Closes the client and checks nothing of its memory is left live.
fn close(c: Client, mem: &VerbsMemory) -> TestResult {
    let stats = c.close();
    let acc = mem.accounting();
    if !acc.is_clean() {
        return Err(format!("client memory not clean after close: {acc:?}").into());
    }
    println!("  client: {stats:?}");
    Ok(())
}

fn null_call() -> TestResult {
    let (mut c, mem) = connect(ClientConfig::default())?;
    let r = c.call(NFS_PROG, NFS_V4, PROC_NULL, &[], &CallOptions::default())?;
    if !r.results.is_empty() || r.call_path != CallPath::Inline || r.reply_path != ReplyPath::Inline
    {
        return Err(format!("NULL reply: {r:?}").into());
    }
    println!("  NULL: ok, {} credits granted", r.credits);
    close(c, &mem)
}

fn version_7_is_prog_mismatch() -> TestResult {
    let (mut c, mem) = connect(ClientConfig::default())?;
    match c.call(NFS_PROG, 7, PROC_NULL, &[], &CallOptions::default()) {
        Err(ClientError::NotSuccess(AcceptStat::ProgMismatch { low: 4, high: 4 })) => {
            println!("  version 7: PROG_MISMATCH low 4 high 4");
        }
        other => {
            return Err(format!("version 7: expected PROG_MISMATCH 4..4, got {other:?}").into())
        }
    }
    // The connection is still good.
    c.call(NFS_PROG, NFS_V4, PROC_NULL, &[], &CallOptions::default())?;
    close(c, &mem)
}

/// COMPOUND4args with an empty tag, minor version 0 and no operations.
const EMPTY_COMPOUND: [u8; 12] = [0; 12];

/// COMPOUND4res of an empty COMPOUND: NFS4_OK, the empty tag, no results.
fn check_empty_compound(what: &str, r: &ReplyBytes) -> TestResult {
    if r.results != [0u8; 12] {
        return Err(format!(
            "{what}: COMPOUND4res {:02x?}, expected 12 zero bytes",
            r.results
        )
        .into());
    }
    println!(
        "  COMPOUND {what}: NFS4_OK, no results ({:?} / {:?})",
        r.call_path, r.reply_path
    );
    Ok(())
}

fn empty_compound_inline_reply_chunk_position_zero() -> TestResult {
    let (mut c, mem) = connect(ClientConfig::default())?;
    let r = c.call(
        NFS_PROG,
        NFS_V4,
        PROC_COMPOUND,
        &EMPTY_COMPOUND,
        &CallOptions::default(),
    )?;
    check_empty_compound("inline", &r)?;
    if (r.call_path, r.reply_path) != (CallPath::Inline, ReplyPath::Inline) {
        return Err(format!(
            "inline COMPOUND travelled {:?}/{:?}",
            r.call_path, r.reply_path
        )
        .into());
    }

    let opts = CallOptions {
        reply_chunk: Some(4096),
        ..CallOptions::default()
    };
    let r = c.call(NFS_PROG, NFS_V4, PROC_COMPOUND, &EMPTY_COMPOUND, &opts)?;
    check_empty_compound("via a Reply chunk", &r)?;
    if r.reply_path != ReplyPath::ReplyChunk {
        return Err(format!("svcrdma did not use the Reply chunk offered: {r:?}").into());
    }

    let opts = CallOptions {
        force_position_zero: true,
        ..CallOptions::default()
    };
    let r = c.call(NFS_PROG, NFS_V4, PROC_COMPOUND, &EMPTY_COMPOUND, &opts)?;
    check_empty_compound("in a Position-Zero Read chunk", &r)?;
    if r.call_path != CallPath::PositionZero {
        return Err(format!("call did not go Position Zero: {r:?}").into());
    }
    let s = c.stats();
    if (s.reply_chunk_replies, s.position_zero_calls) != (1, 1) {
        return Err(format!("client counters: {s:?}").into());
    }
    close(c, &mem)
}

fn transport_version_2_is_err_vers() -> TestResult {
    let (mut c, mem) = connect(ClientConfig {
        transport_version: 2,
        ..ClientConfig::default()
    })?;
    match c.call(NFS_PROG, NFS_V4, PROC_NULL, &[], &CallOptions::default()) {
        Err(ClientError::RdmaVers { low: 1, high: 1 }) => {
            println!("  transport version 2: ERR_VERS 1..1");
        }
        other => {
            return Err(
                format!("transport version 2: expected ERR_VERS 1..1, got {other:?}").into(),
            )
        }
    }
    close(c, &mem)
}

const TESTS: &[(&str, TestFn)] = &[
    ("null_call", null_call),
    ("version_7_is_prog_mismatch", version_7_is_prog_mismatch),
    (
        "empty_compound_inline_reply_chunk_position_zero",
        empty_compound_inline_reply_chunk_position_zero,
    ),
    (
        "transport_version_2_is_err_vers",
        transport_version_2_is_err_vers,
    ),
];

fn main() {
    harness::run(
        TESTS,
        "set RDMAXPRT_TEST_NFSD=IP:PORT of a kernel nfsd on RDMA, or run `cargo run -p xtask -- vm-test`",
    );
}
