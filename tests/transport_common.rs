//! Shared harness of the `transport_*` tests (each includes this file with
//! `#[path]`): a server transport on one end of a mock QP pair, driven by
//! hand (no runtime): a counting enqueue hook, a tiny echo service and the
//! worker pass (poll, recvfrom, sendto, release_ctxt), optionally on a
//! thread of its own.
#![allow(dead_code)]

use rdmaxprt::client::{ClientConfig, RpcClient};
use rdmaxprt::mock::{MockDevice, MockError, MockQp, QpConfig};
use rdmaxprt_core::backend::QueuePair;
use rdmaxprt_core::lifecycle::Deferred;
use rdmaxprt_core::oncrpc::{self, AcceptStat, ReplyStat};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{RecvdCall, SvcRdmaXprt, XprtConfig, XprtError};
use rdmaxprt_core::wait::CondvarWait;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The echo program.
pub const PROG: u32 = 0x2000_0042;
/// Its version.
pub const VERS: u32 = 1;
/// NULL: no arguments, no results.
pub const PROC_NULL: u32 = 0;
/// Echo: results = arguments, or, if the call offers a Write chunk, empty
/// results and the arguments as the bulk payload.
pub const PROC_ECHO: u32 = 1;

/// The enqueue hook: counts every `svc_xprt_enqueue`.
#[derive(Debug, Default)]
pub struct Hook {
    /// The transport's flags.
    pub flags: XprtFlags,
    /// Enqueues so far.
    pub enqueues: AtomicUsize,
}

impl Hook {
    /// Enqueues so far.
    pub fn enqueues(&self) -> usize {
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

/// The server transport under test.
pub type Server = SvcRdmaXprt<Deferred<MockDevice, Arc<Hook>>, MockQp, Arc<Hook>, CondvarWait>;

/// The mock client.
pub type Client = RpcClient<MockQp, MockDevice>;

/// A server transport on `qp` with a Deferred lifecycle mapping on `dev`.
pub fn server(dev: &MockDevice, qp: MockQp, cfg: XprtConfig) -> (Server, Arc<Hook>) {
    let hook = Arc::new(Hook::default());
    let caps = qp.caps();
    let pool = PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge);
    let life = Deferred::new(dev.clone(), pool, Arc::clone(&hook));
    let x = SvcRdmaXprt::new(cfg, qp, life, Arc::clone(&hook)).expect("server transport");
    (x, hook)
}

/// A connected client and server on `dev`.
pub fn pair(
    dev: &MockDevice,
    qcfg: QpConfig,
    xcfg: XprtConfig,
    ccfg: ClientConfig,
) -> (Client, Server, Arc<Hook>) {
    let (cq, sq) = MockDevice::connect_pair(dev, dev, qcfg).expect("qp pair");
    let (x, hook) = server(dev, sq, xcfg);
    let c = RpcClient::new(cq, dev.clone(), ccfg).expect("client");
    (c, x, hook)
}

/// The echo service: answers one call with a hand-rolled accepted-SUCCESS
/// reply. Calls that do not decode are dropped; unknown procedures get
/// PROC_UNAVAIL.
pub fn echo(x: &Server, call: &RecvdCall) -> Result<(), XprtError<MockError>> {
    let Ok(h) = oncrpc::decode_call(&call.msg) else {
        return Ok(());
    };
    let args = call.msg.get(h.args_offset..).unwrap_or_default();
    let mut hdr = [0u8; 32];
    let stat = match (h.prog, h.proc) {
        (PROG, PROC_NULL | PROC_ECHO) => ReplyStat::Accepted(AcceptStat::Success),
        (PROG, _) => ReplyStat::Accepted(AcceptStat::ProcUnavail),
        _ => ReplyStat::Accepted(AcceptStat::ProgUnavail),
    };
    let n = oncrpc::encode_reply(&mut hdr, h.xid, stat).expect("reply header fits");
    let ok = stat == ReplyStat::Accepted(AcceptStat::Success);
    let args = if ok && h.proc == PROC_ECHO { args } else { &[] };
    if !call.meta.write_list.is_empty() && !args.is_empty() {
        x.sendto(call, &[&hdr[..n]], Some(args))
    } else {
        x.sendto(call, &[&hdr[..n], args], None)
    }
}

/// Worker passes (what a runtime worker does each time the transport is
/// enqueued) until nothing moves: run the completion handlers, then
/// recvfrom -> echo -> sendto -> release_ctxt until recvfrom has nothing,
/// then release once more. Repeats because a call with Read chunks only
/// surfaces after its Read completion is handled. A fatal send error
/// closes the transport. Returns the calls served.
pub fn serve(x: &Server) -> usize {
    let mut total = 0;
    loop {
        let polled = x.poll(usize::MAX).unwrap_or(0);
        let served = worker_pass(x);
        total += served;
        if polled == 0 && served == 0 {
            return total;
        }
    }
}

/// Exactly one worker pass: recvfrom -> echo -> sendto -> release_ctxt
/// until recvfrom returns nothing, then `release_ctxt` once more.
pub fn worker_pass(x: &Server) -> usize {
    let mut n = 0;
    while let Ok(Some(call)) = x.recvfrom() {
        if let Err(e) = echo(x, &call) {
            if e.is_fatal() {
                x.close();
            }
        }
        x.release_ctxt();
        n += 1;
    }
    x.release_ctxt();
    n
}

/// Servers running [`serve`] on a thread until stopped.
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Server>>,
}

impl ServerThread {
    /// Serves every transport of `xs` round robin; sleeps on the first
    /// one's completions when a whole round found nothing.
    pub fn spawn(xs: Vec<Server>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let mut work = 0;
                for x in &xs {
                    work += serve(x);
                }
                if work == 0 {
                    match xs.first() {
                        Some(x) if xs.len() == 1 => {
                            x.qp().wait_for_completions(Duration::from_millis(2));
                        }
                        _ => std::thread::sleep(Duration::from_micros(200)),
                    }
                }
            }
            xs
        });
        Self { stop, handle }
    }

    /// Stops the thread and gives the transports back (for `free`).
    pub fn stop(self) -> Vec<Server> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("server thread panicked")
    }
}

/// Deterministic bytes of length `n` (different for different `seed`s).
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7) as u8 ^ (i >> 8) as u8)
        .collect()
}

/// A server counter.
pub fn counter(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
