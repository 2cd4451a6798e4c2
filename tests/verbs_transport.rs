//! The transport suites on real verbs: the server transport and the
//! client on two RC QPs connected by hand on the device named by
//! `RDMAXPRT_TEST_DEVICE` (rxe0 in `cargo run -p xtask -- vm-test`).
//! Without it every test reports SKIPPED, never passed.
//!
//! - byte-exact echo through every path (inline, Position Zero and
//!   positional Read chunks, Write chunk, Reply chunk) at 0, 1, 1023, 1024,
//!   1025 bytes, 64 KiB and 1 MiB: once driving `SvcRdmaXprt` by hand, once
//!   through the server runtime;
//! - the idle trailing edge: a Send completion after the last
//!   `release_ctxt` is released by exactly one backstop wakeup;
//! - teardown with replies in flight, and a QP forced to error mid-stream:
//!   typed errors, `free` clean;
//! - the client's lending API: arguments written in place into a lent
//!   registered region and the Write chunk read where the server wrote it
//!   (`VerbsRegion`'s in-place bytes), byte-exact at 1, 64 KiB and 1 MiB;
//!
//! each ending with nothing live in either side's `VerbsMemory` (buffers,
//! mappings, remote regions) and a `TeardownReport` with `stuck_recvs == 0`
//! and `reclaimed_send == partial_posts`.
//!
//! A harness of our own (`harness = false`), as backend-verbs' device
//! tests: libtest cannot report a run-time skip, and device tests run one
//! at a time (rxe quirk). libtest flags are accepted and ignored; a bare
//! word filters tests by name.
#![cfg(feature = "verbs")]

/// The examples' echo program (served by the runtime test; the
/// hand-driven transport answers its NULL and ECHO procedures itself).
#[path = "../examples/common/echo.rs"]
mod echo_prog;

#[path = "../backend-verbs/tests/harness/mod.rs"]
mod harness;
#[path = "support/worker.rs"]
mod worker;
use echo_prog::{Echo, PROC_ECHO, PROC_NULL, PROC_READ, PROG, VERS};
use harness::{Skip, TestFn, TestResult};
use rdmaxprt::client::{
    CallOptions, CallPath, CallRequest, ClientConfig, ClientError, CompletionWait, ReplyBytes,
    ReplyPath, RpcClient,
};
use rdmaxprt::rdma::{MemoryConfig, VerbsMemory, VerbsWaitQp};
use rdmaxprt::runtime::{Server as Runtime, ServerConfig, ServerMode};
use rdmaxprt::service::Dispatcher;
use rdmaxprt::verbs::{
    CompletionChannel, CompletionQueue, ConnectAttr, Context, ProtectionDomain, QpCaps, QueuePair,
    VerbsError, VerbsQp,
};
use rdmaxprt_core::lifecycle::{Deferred, SendCtxtLifecycle};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{SvcRdmaXprt, TeardownReport, XprtConfig};
use rdmaxprt_core::wait::CondvarWait;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// Every payload size of the echo suites.
const SIZES: [usize; 7] = [0, 1, 1023, 1024, 1025, 64 << 10, MIB];
/// Bound on one hand-driven call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn device() -> Result<String, Skip> {
    std::env::var("RDMAXPRT_TEST_DEVICE")
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Skip("RDMAXPRT_TEST_DEVICE is not set".into()))
}

/// The enqueue hook of a hand-driven transport: counts enqueues.
#[derive(Debug, Default)]
struct Hook {
    flags: XprtFlags,
    enqueues: AtomicUsize,
}

impl Hook {
    fn enqueues(&self) -> usize {
        self.enqueues.load(Ordering::SeqCst)
    }
}

impl Enqueue for Hook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::SeqCst);
    }
}

type Server = SvcRdmaXprt<Deferred<VerbsMemory, Arc<Hook>>, VerbsWaitQp, Arc<Hook>, CondvarWait>;
type Client = RpcClient<VerbsWaitQp, VerbsMemory>;

/// One side of a connection: its memory (in its own PD) and its QP.
struct Side {
    mem: VerbsMemory,
    qp: VerbsWaitQp,
}

/// Two RC QPs on the test device, connected to each other by hand, each
/// in its own PD with separate send and receive CQs; event-mode CQs (one
/// completion channel per side) where asked, busy-poll CQs otherwise.
fn connected(server_event: bool, client_event: bool) -> Result<(Side, Side), Box<dyn Error>> {
    let ctx = Context::open(&device()?)?;
    let port = ctx.query_port(1)?;
    let (gid_index, gid) = ctx.ipv4_gid(1)?;
    let attr = ConnectAttr {
        gid_index: gid_index as u8,
        mtu: port.active_mtu,
        // rxe retries forever at 7 (the default): a dead peer must fail.
        retry_cnt: 6,
        ..ConnectAttr::default()
    };
    let caps = QpCaps {
        max_send_wr: 128,
        max_recv_wr: 128,
        max_send_sge: 8,
        max_recv_sge: 1,
        max_inline_data: 0,
    };
    let make = |event: bool| -> Result<(ProtectionDomain, QueuePair), VerbsError> {
        let pd = ProtectionDomain::new(&ctx)?;
        let ch = event.then(|| CompletionChannel::new(&ctx)).transpose()?;
        let scq = CompletionQueue::new(&ctx, 512, ch.as_ref())?;
        let rcq = CompletionQueue::new(&ctx, 512, ch.as_ref())?;
        let qp = QueuePair::create_rc(&pd, &scq, &rcq, caps)?;
        Ok((pd, qp))
    };
    let (spd, sqp) = make(server_event)?;
    let (cpd, cqp) = make(client_event)?;
    sqp.connect(&cqp.endpoint(gid, 0x1234), &attr, 0x4321)?;
    cqp.connect(&sqp.endpoint(gid, 0x4321), &attr, 0x1234)?;
    let side = |pd: &ProtectionDomain, qp: QueuePair| -> Result<Side, VerbsError> {
        Ok(Side {
            mem: VerbsMemory::new(pd, MemoryConfig::default())?,
            qp: VerbsWaitQp::new(VerbsQp::new(qp)?),
        })
    };
    let (s, c) = (side(&spd, sqp)?, side(&cpd, cqp)?);
    println!(
        "  {} gid[{gid_index}] {gid}; server {}, client {}",
        ctx.name(),
        if s.qp.is_event_mode() {
            "event mode"
        } else {
            "sleep-poll"
        },
        if c.qp.is_event_mode() {
            "event mode"
        } else {
            "sleep-poll"
        },
    );
    Ok((s, c))
}

/// A hand-driven server transport and a client, connected.
struct Rig {
    c: Client,
    x: Server,
    hook: Arc<Hook>,
    smem: VerbsMemory,
    cmem: VerbsMemory,
}

fn rig(server_event: bool, client_event: bool, ccfg: ClientConfig) -> Result<Rig, Box<dyn Error>> {
    let (s, c) = connected(server_event, client_event)?;
    let hook = Arc::new(Hook::default());
    let cfg = XprtConfig::default();
    let caps = rdmaxprt_core::backend::QueuePair::caps(&s.qp);
    let pool = PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge);
    let life = Deferred::new(s.mem.clone(), pool, Arc::clone(&hook));
    let x = SvcRdmaXprt::new(cfg, s.qp, life, Arc::clone(&hook))?;
    let client = RpcClient::new(c.qp, c.mem.clone(), ccfg)?;
    Ok(Rig {
        c: client,
        x,
        hook,
        smem: s.mem,
        cmem: c.mem,
    })
}

fn worker_pass(x: &Server) -> usize {
    worker::worker_pass_for(x, PROG)
}

fn serve(x: &Server) -> usize {
    worker::serve_for(x, PROG)
}

/// One call, the server driven on this thread until the reply is in.
fn echo_once(
    c: &mut Client,
    x: &Server,
    proc: u32,
    args: &[u8],
    opts: &CallOptions<'_>,
) -> Result<ReplyBytes, ClientError> {
    let t = c.start_call(PROG, VERS, proc, args, opts)?;
    let deadline = Instant::now() + CALL_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(r) = c.try_wait(&t) {
            return r;
        }
        x.qp().wait_for_completions(Duration::from_millis(2));
        serve(x);
    }
    c.wait(t)
}

/// Deterministic bytes of length `n`.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7) as u8 ^ (i >> 8) as u8)
        .collect()
}

fn counter(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// `free` found nothing stuck and reclaimed only partial posts; then the
/// client goes and both memories must be empty.
fn finish(r: Rig) -> TeardownReport {
    let Rig {
        c, x, smem, cmem, ..
    } = r;
    let partial = counter(&x.counters().partial_posts) as usize;
    let report = x.free();
    println!("  teardown: {report:?}, partial posts {partial}");
    assert_eq!(report.stuck_recvs, 0, "{report:?}");
    assert_eq!(report.reclaimed_send, partial, "{report:?}");
    drop(c);
    assert_clean(&smem, "server");
    assert_clean(&cmem, "client");
    report
}

fn assert_clean(m: &VerbsMemory, who: &str) {
    let a = m.accounting();
    assert!(a.is_clean(), "{who} memory not clean: {a:?}");
}

/// One call shape of the echo suites.
struct Shape<'a> {
    what: &'static str,
    /// The inline arguments.
    args: &'a [u8],
    opts: CallOptions<'a>,
    /// Expected results and bulk payload.
    results: Vec<u8>,
    bulk: Option<Vec<u8>>,
}

/// The three call shapes of the echo suites for payload `p`.
fn shapes(p: &[u8]) -> [Shape<'_>; 3] {
    let big = Some((MIB + 64) as u32);
    let mut padded = p.to_vec();
    padded.resize(p.len().div_ceil(4) * 4, 0);
    [
        // Inline or Position Zero in; inline or Reply chunk out.
        Shape {
            what: "inline/pz + reply chunk",
            args: p,
            opts: CallOptions {
                reply_chunk: big,
                ..Default::default()
            },
            results: p.to_vec(),
            bulk: None,
        },
        // A positional Read chunk behind empty inline arguments (the
        // server sees it XDR-padded).
        Shape {
            what: "read chunk + reply chunk",
            args: &[],
            opts: CallOptions {
                read_payload: Some(p),
                reply_chunk: big,
                ..Default::default()
            },
            results: padded,
            bulk: None,
        },
        // The payload back through a Write chunk.
        Shape {
            what: "write chunk",
            args: p,
            opts: CallOptions {
                write_chunk: Some(p.len().max(4) as u32),
                ..Default::default()
            },
            results: Vec::new(),
            bulk: Some(p.to_vec()),
        },
    ]
}

/// Byte-exact results and bulk, and the paths the sizes call for.
/// (`inline_call`: the arguments are not the payload, so the call is
/// inline whatever its size.)
fn check_reply(c: &Client, n: usize, sh: &Shape<'_>, reply: &ReplyBytes, inline_call: bool) {
    let (what, opts) = (sh.what, &sh.opts);
    assert!(
        reply.results == sh.results,
        "{what}, {n} bytes: results differ"
    );
    assert!(reply.bulk == sh.bulk, "{what}, {n} bytes: bulk differs");
    let call_path = match (opts.read_payload, n) {
        (Some(_), 0) => CallPath::Inline,
        (Some(_), _) => CallPath::InlineWithReadChunk,
        (None, _) if inline_call || n <= c.inline_args_limit(opts) => CallPath::Inline,
        (None, _) => CallPath::PositionZero,
    };
    assert_eq!(reply.call_path, call_path, "{what}, {n} bytes");
    if opts.write_chunk.is_none() {
        let inline = reply.results.len() <= c.inline_results_limit(opts);
        let want = if inline {
            ReplyPath::Inline
        } else {
            ReplyPath::ReplyChunk
        };
        assert_eq!(reply.reply_path, want, "{what}, {n} bytes");
    }
}

fn lent_echo_in_place() -> TestResult {
    let mut r = rig(true, false, ClientConfig::default())?;
    for (seed, n) in [1usize, 64 << 10, MIB].into_iter().enumerate() {
        let want = pattern(n, seed as u8);
        let mut a = r.c.lend(n)?;
        a.copy_from_slice(&want);
        let opts = CallOptions {
            write_chunk: Some(n as u32),
            ..CallOptions::default()
        };
        let t = r.c.start_lent(PROG, VERS, PROC_ECHO, a, &opts)?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        let reply = loop {
            if let Some(res) = r.c.try_wait_lent(&t) {
                break res?;
            }
            if Instant::now() >= deadline {
                return Err(format!("{n} bytes: no reply").into());
            }
            r.x.qp().wait_for_completions(Duration::from_millis(2));
            serve(&r.x);
        };
        drop(t);
        let want_path = if n == 1 {
            CallPath::Inline
        } else {
            CallPath::PositionZero
        };
        assert_eq!(reply.call_path, want_path, "{n} bytes");
        assert_eq!(reply.bulk(), Some(&want[..]), "{n} bytes");
        println!("  {n} bytes: lent both ways, byte-exact");
    }
    let regions = r.c.stats().chunk_regions;
    // Given back on drop: the same sizes again register nothing new.
    for n in [64 << 10, MIB] {
        let a = r.c.lend(n)?;
        drop(a);
    }
    assert_eq!(r.c.stats().chunk_regions, regions);
    finish(r);
    Ok(())
}

fn echo_every_path_and_size_by_hand() -> TestResult {
    let mut r = rig(true, false, ClientConfig::default())?;
    for (i, &n) in SIZES.iter().enumerate() {
        let payload = pattern(n, i as u8);
        for sh in shapes(&payload) {
            let reply = echo_once(&mut r.c, &r.x, PROC_ECHO, sh.args, &sh.opts)?;
            check_reply(&r.c, n, &sh, &reply, false);
        }
        println!("  {n} bytes: 3 paths byte-exact");
    }
    let x = &r.x;
    assert!(counter(&x.counters().read_calls) > 0, "Read chunks pulled");
    assert!(r.c.stats().reply_chunk_replies > 0, "Reply chunks used");
    assert!(r.c.stats().position_zero_calls > 0, "Position Zero calls");
    assert!(r.c.stats().read_chunk_calls > 0, "positional Read chunks");
    finish(r);
    Ok(())
}

fn idle_trailing_edge_is_drained_by_one_backstop_wakeup() -> TestResult {
    let r = rig(false, true, ClientConfig::default())?;
    let Rig {
        mut c,
        x,
        hook,
        smem,
        cmem,
    } = r;
    let pool = x.send_lifecycle().pool();
    let base_maps = smem.accounting().live_mappings;
    let base_ctxts = pool.census().allocated as usize;

    // Longer than the 512 bytes the transport pulls up into the header
    // buffer, so the reply has pages of its own, mapped until released.
    let ping = pattern(600, 9);
    let t = c.start_call(PROG, VERS, PROC_ECHO, &ping, &CallOptions::default())?;
    assert!(
        x.qp().wait_for_completions(Duration::from_secs(10)),
        "the call's receive completes"
    );
    assert!(x.poll(usize::MAX)? >= 1);
    assert_eq!(hook.enqueues(), 1, "the receive enqueued the transport");
    let call = x.recvfrom()?.ok_or("no call")?;
    worker::echo_call(&x, &call, PROG)?;
    drop(call);
    assert_eq!(
        x.release_ctxt(),
        0,
        "the reply's Send completion is not handled when the worker releases"
    );
    assert!(x.recvfrom()?.is_none());
    assert!(!x.flags().test(XprtFlags::DATA), "idle: no work pending");
    let idle = hook.enqueues();
    assert_eq!(pool.census().posted, 1);

    // Now the Send completion is handled on the idle transport.
    assert!(
        x.qp().wait_for_completions(Duration::from_secs(10)),
        "the reply's Send completes"
    );
    assert!(x.poll(usize::MAX)? >= 1);
    assert_eq!(hook.enqueues(), idle + 1, "exactly one backstop enqueue");
    assert!(x.flags().test(XprtFlags::DATA), "the backstop set DATA");
    assert_eq!(x.send_lifecycle().stats().snapshot().backstop_enqueues, 1);
    assert!(pool.has_pending_release());
    let allocated = pool.census().allocated as usize;
    assert!(
        smem.accounting().live_mappings > base_maps + allocated - base_ctxts,
        "the reply's pages are still mapped before the wakeup"
    );

    // The enqueued worker's pass: no call, just the release.
    assert!(x.recvfrom()?.is_none(), "no further RPC");
    assert_eq!(x.release_ctxt(), 1, "the trailing completion is drained");
    assert!(!pool.has_pending_release());
    assert_eq!(hook.enqueues(), idle + 1, "no further enqueue");
    let census = pool.census();
    assert_eq!(census.posted + census.owned + census.pending_release, 0);
    assert_eq!(
        smem.accounting().live_mappings,
        base_maps + census.allocated as usize - base_ctxts,
        "only persistent mappings: receive buffers and one header SGE per send context"
    );

    let deadline = Instant::now() + CALL_TIMEOUT;
    let reply = loop {
        if let Some(r) = c.try_wait(&t) {
            break r?;
        }
        assert!(Instant::now() < deadline, "no reply");
        c.qp().wait_for_completions(Duration::from_millis(5));
    };
    assert!(reply.results == ping, "echo differs");
    let report = x.free();
    println!("  teardown: {report:?}");
    assert_eq!(report.reclaimed_send, 0, "{report:?}");
    assert_eq!(report.stuck_recvs, 0, "{report:?}");
    drop(c);
    assert_clean(&smem, "server");
    assert_clean(&cmem, "client");
    Ok(())
}

fn teardown_with_replies_in_flight_is_clean() -> TestResult {
    let mut r = rig(true, false, ClientConfig::default())?;
    // One round trip for the credit grant.
    echo_once(&mut r.c, &r.x, PROC_NULL, b"", &CallOptions::default())?;
    let args = pattern(MIB, 42);
    let opts = CallOptions {
        write_chunk: Some(MIB as u32),
        ..Default::default()
    };
    let tickets: Vec<_> = (0..4)
        .map(|_| r.c.start_call(PROG, VERS, PROC_ECHO, &args, &opts))
        .collect::<Result<_, _>>()?;
    // Serve until all four replies (1 MiB RDMA Write + Send each) are
    // posted; the last one's completion is never handled before free().
    let deadline = Instant::now() + CALL_TIMEOUT;
    while counter(&r.x.counters().replies) < 5 {
        assert!(Instant::now() < deadline, "replies not posted in time");
        r.x.qp().wait_for_completions(Duration::from_millis(2));
        r.x.poll(usize::MAX)?;
        worker_pass(&r.x);
    }
    let census = r.x.send_lifecycle().pool().census();
    println!("  at free: {census:?}");
    assert!(census.posted >= 1, "a reply is in flight: {census:?}");
    assert!(r.smem.accounting().live_mappings > 0);
    drop(tickets);
    finish(r);
    Ok(())
}

fn qp_error_mid_stream_fails_calls_with_typed_errors() -> TestResult {
    let ccfg = ClientConfig {
        timeout: Duration::from_secs(40),
        ..ClientConfig::default()
    };
    let mut r = rig(false, false, ccfg)?;
    for i in 0..3u8 {
        let reply = echo_once(&mut r.c, &r.x, PROC_ECHO, &[i; 4], &CallOptions::default())?;
        assert_eq!(reply.results, [i; 4]);
    }
    let t =
        r.c.start_call(PROG, VERS, PROC_ECHO, b"lost", &CallOptions::default())?;
    r.x.qp().force_error()?;
    let deadline = Instant::now() + CALL_TIMEOUT;
    while !r.x.flags().test(XprtFlags::CLOSE) {
        assert!(Instant::now() < deadline, "the flushes did not close");
        r.x.qp().wait_for_completions(Duration::from_millis(5));
        serve(&r.x);
    }
    assert!(
        r.x.recvfrom().is_err(),
        "a closed transport hands up nothing"
    );
    // The server's QP is in error: the client's next Send is never acked
    // (retries exhausted: RETRY_CNT below rxe's "7 = forever"), which
    // fails the connection and every call.
    let t0 = Instant::now();
    let t2 =
        r.c.start_call(PROG, VERS, PROC_ECHO, b"next", &CallOptions::default())
            .ok();
    let e = r.c.wait(t).unwrap_err();
    println!(
        "  call in flight: {e} ({:.2}s after the next call)",
        t0.elapsed().as_secs_f64()
    );
    assert!(matches!(e, ClientError::Disconnected), "{e:?}");
    if let Some(t2) = t2 {
        let e = r.c.wait(t2).unwrap_err();
        assert!(matches!(e, ClientError::Disconnected), "{e:?}");
    }
    assert!(r.c.is_broken());
    assert!(matches!(
        r.c.start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default()),
        Err(ClientError::Disconnected)
    ));
    finish(r);
    Ok(())
}

fn echo_every_path_and_size_through_the_runtime() -> TestResult {
    through_the_runtime(ServerMode::ThreadPool)
}

/// The same through poll groups (a QP accepted by hand, no completion
/// channel: a group of its own).
fn echo_every_path_and_size_through_poll_groups() -> TestResult {
    through_the_runtime(ServerMode::PollGroup)
}

fn through_the_runtime(mode: ServerMode) -> TestResult {
    let (s, cs) = connected(true, true)?;
    let smem = s.mem.clone();
    let cmem = cs.mem.clone();
    let server = Runtime::start(
        ServerConfig {
            mode,
            workers: 2,
            ..ServerConfig::default()
        },
        Dispatcher::new().with(Echo::default()),
    );
    server.accept(s.mem, s.qp)?;
    let mut c = RpcClient::new(cs.qp, cs.mem, ClientConfig::default())?;
    for (i, &n) in SIZES.iter().enumerate() {
        let payload = pattern(n, 100 + i as u8);
        let [inline, read, write] = shapes(&payload);
        // The service's READ returns n bytes of its pattern as the bulk.
        let len = (n as u32).to_be_bytes();
        let write = Shape {
            args: &len,
            bulk: Some((0..n).map(echo_prog::pattern).collect()),
            ..write
        };
        for (proc, sh) in [(PROC_ECHO, inline), (PROC_ECHO, read), (PROC_READ, write)] {
            let reply = c.call(PROG, VERS, proc, sh.args, &sh.opts)?;
            check_reply(&c, n, &sh, &reply, proc == PROC_READ);
        }
        println!("  {n} bytes: 3 paths byte-exact");
    }
    // A batch in flight at once, every shape mixed.
    let payloads: Vec<Vec<u8>> = (0..16).map(|i| pattern(500 * i, i as u8)).collect();
    let reqs: Vec<CallRequest<'_>> = payloads
        .iter()
        .map(|p| CallRequest {
            prog: PROG,
            vers: VERS,
            proc: PROC_ECHO,
            args: p,
            opts: CallOptions {
                reply_chunk: Some(16 << 10),
                ..Default::default()
            },
        })
        .collect();
    for (i, (r, p)) in c.call_many(&reqs).into_iter().zip(&payloads).enumerate() {
        let r = r.map_err(|e| {
            // Say where the server stands before failing.
            println!("  batched call {i} ({} bytes): {e}", p.len());
            println!("  server transports: {:?}", server.transports());
            println!("  server report: {:?}", server.report());
            println!("  server memory: {:?}", smem.accounting());
            e
        })?;
        assert!(r.results == *p, "batched echo differs");
    }
    let stats = c.close();
    println!("  client: {stats:?}");
    assert!(stats.max_in_flight > 1, "the batch overlapped");
    let report = server.shutdown();
    println!(
        "  server: freed {}, reclaimed {}, stuck recvs {}, backstop enqueues {}",
        report.freed, report.reclaimed_send, report.stuck_recvs, report.stats.backstop_enqueues
    );
    assert_eq!(report.freed, 1);
    assert_eq!(report.reclaimed_send, 0, "{report:?}");
    assert_eq!(report.stuck_recvs, 0, "{report:?}");
    if mode == ServerMode::PollGroup {
        assert_eq!(
            (report.handoffs, report.worker_wakeups),
            (0, 0),
            "{report:?}"
        );
    }
    assert_clean(&smem, "server");
    assert_clean(&cmem, "client");
    Ok(())
}

const TESTS: &[(&str, TestFn)] = &[
    (
        "echo_every_path_and_size_by_hand",
        echo_every_path_and_size_by_hand,
    ),
    (
        "echo_every_path_and_size_through_the_runtime",
        echo_every_path_and_size_through_the_runtime,
    ),
    (
        "echo_every_path_and_size_through_poll_groups",
        echo_every_path_and_size_through_poll_groups,
    ),
    (
        "idle_trailing_edge_is_drained_by_one_backstop_wakeup",
        idle_trailing_edge_is_drained_by_one_backstop_wakeup,
    ),
    ("lent_echo_in_place", lent_echo_in_place),
    (
        "teardown_with_replies_in_flight_is_clean",
        teardown_with_replies_in_flight_is_clean,
    ),
    (
        "qp_error_mid_stream_fails_calls_with_typed_errors",
        qp_error_mid_stream_fails_calls_with_typed_errors,
    ),
];

fn main() {
    harness::run(
        TESTS,
        "set RDMAXPRT_TEST_DEVICE, or run `cargo run -p xtask -- vm-test`",
    );
}
