//! One server transport of the soak, whatever its release policy: built on
//! a mock QP, served by hand (the worker pass of `tests/support/worker.rs`
//! plus a procedure the server never answers), and inspected (counters,
//! census, SQ) for the invariants.

use crate::worker;
use rdmaxprt::lifecycle::{Deferred, Inline, Policy, Workqueue, WorkqueuePool};
use rdmaxprt::mock::{MockDevice, MockQp};
use rdmaxprt_core::backend::QueuePair;
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::oncrpc;
use rdmaxprt_core::pool::{Census, PoolConfig};
use rdmaxprt_core::stats::StatsSnapshot;
use rdmaxprt_core::transport::{RecvdCall, SvcRdmaXprt, TeardownReport, XprtConfig, XprtCounters};
use rdmaxprt_core::wait::CondvarWait;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The program the soak's server answers.
pub const PROG: u32 = 0x2000_0050;
/// Its version.
pub const VERS: u32 = 1;
/// A procedure the server receives and drops without a reply: the
/// client's call times out.
pub const PROC_DROP: u32 = 9;

/// The enqueue hook: `svc_xprt_enqueue` marks the transport ready, and
/// the soak's driver runs a worker pass only on a transport marked ready
/// (as the runtime's workers only see enqueued transports), so a lost
/// wakeup shows up as a hang.
#[derive(Debug)]
pub struct Hook {
    flags: XprtFlags,
    ready: AtomicBool,
}

impl Enqueue for Hook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// A server transport and its hook.
struct Served<L: SendCtxtLifecycle> {
    x: SvcRdmaXprt<L, MockQp, Arc<Hook>, CondvarWait>,
    hook: Arc<Hook>,
}

/// What the soak does with a server transport, object-safe over the three
/// release policies.
pub trait SoakXprt: Send + Sync {
    /// Takes the transport off the "ready queue": whether it was enqueued
    /// since the last call.
    fn take_ready(&self) -> bool;
    /// Puts it back (`svc_xprt_received` with DATA still set).
    fn requeue(&self);
    /// Polls both CQs and runs the completion handlers.
    fn poll(&self) -> usize;
    /// `recvfrom`: the next call; `Err(())` once the transport is closed
    /// (a failure closes it). One caller at a time (the runtime's BUSY
    /// bit).
    fn recv_call(&self) -> Result<Option<RecvdCall<'_>>, ()>;
    /// Answers `call` (echo), or drops it (`PROC_DROP`); a fatal send
    /// error closes the transport.
    fn answer(&self, call: &RecvdCall<'_>);
    /// One worker pass: every call ready is answered or dropped, with a
    /// drain after each and one at the end. Returns the calls taken.
    fn worker_pass(&self) -> usize {
        let mut n = 0;
        while let Ok(Some(call)) = self.recv_call() {
            n += 1;
            self.answer(&call);
            self.release_ctxt();
        }
        self.release_ctxt();
        n
    }
    /// `release_ctxt`.
    fn release_ctxt(&self) -> usize;
    /// Starts closing.
    fn close(&self);
    /// The transport's flags.
    fn flags(&self) -> &XprtFlags;
    /// Whether no one waits for SQ space.
    fn has_wspace(&self) -> bool;
    /// Transport counters.
    fn counters(&self) -> &XprtCounters;
    /// Send-context census (exact when quiescent).
    fn census(&self) -> Census;
    /// Send-context counters.
    fn stats(&self) -> StatsSnapshot;
    /// Receives posted.
    fn recvs_posted(&self) -> u32;
    /// Tickets taken by senders that had to wait for SQ space
    /// (`svc_rdma_sq_wait`'s slow path).
    fn sq_waits(&self) -> u32;
    /// The server's QP.
    fn qp(&self) -> &MockQp;
    /// Teardown.
    fn free(self: Box<Self>) -> TeardownReport;
}

impl<L> SoakXprt for Served<L>
where
    L: SendCtxtLifecycle<Dev = MockDevice> + Send + Sync,
{
    fn take_ready(&self) -> bool {
        self.hook.ready.swap(false, Ordering::AcqRel)
    }
    fn requeue(&self) {
        self.hook.ready.store(true, Ordering::Release);
    }
    fn poll(&self) -> usize {
        self.x.poll(usize::MAX).unwrap_or(0)
    }
    fn recv_call(&self) -> Result<Option<RecvdCall<'_>>, ()> {
        // As the runtime's worker does: a failed recvfrom (e.g. a Read
        // post that failed) closes the transport.
        self.x.recvfrom().map_err(|_| self.x.close())
    }
    fn answer(&self, call: &RecvdCall<'_>) {
        if oncrpc::decode_call(call.msg()).is_ok_and(|h| h.proc == PROC_DROP) {
            return;
        }
        if let Err(e) = worker::echo_call(&self.x, call, PROG) {
            if e.is_fatal() {
                self.x.close();
            }
        }
    }
    fn release_ctxt(&self) -> usize {
        self.x.release_ctxt()
    }
    fn close(&self) {
        self.x.close()
    }
    fn flags(&self) -> &XprtFlags {
        self.x.flags()
    }
    fn has_wspace(&self) -> bool {
        self.x.has_wspace()
    }
    fn counters(&self) -> &XprtCounters {
        self.x.counters()
    }
    fn census(&self) -> Census {
        self.x.send_lifecycle().pool().census()
    }
    fn stats(&self) -> StatsSnapshot {
        self.x.send_lifecycle().stats().snapshot()
    }
    fn recvs_posted(&self) -> u32 {
        self.x.recvs_posted()
    }
    fn sq_waits(&self) -> u32 {
        self.x.sq().tickets_issued()
    }
    fn qp(&self) -> &MockQp {
        self.x.qp()
    }
    fn free(self: Box<Self>) -> TeardownReport {
        self.x.free()
    }
}

/// A server transport on `qp` with `policy`'s lifecycle, mapping on `dev`
/// (`wq`: the shared release workqueue, for the Workqueue policy;
/// `wq_cap`: its pool cap instead of the transport's default, as the
/// runtime's `ServerConfig::workqueue_cap`).
pub fn server(
    policy: Policy,
    dev: &MockDevice,
    qp: MockQp,
    cfg: XprtConfig,
    wq: &Arc<WorkqueuePool>,
    wq_cap: Option<u32>,
) -> Box<dyn SoakXprt> {
    // Ready from the start: the runtime enqueues a new transport once.
    let hook = Arc::new(Hook {
        flags: XprtFlags::new(),
        ready: AtomicBool::new(true),
    });
    let caps = qp.caps();
    let pool = PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge);
    let dev = dev.clone();
    fn build<L>(cfg: XprtConfig, qp: MockQp, life: L, hook: Arc<Hook>) -> Box<dyn SoakXprt>
    where
        L: SendCtxtLifecycle<Dev = MockDevice> + Send + Sync + 'static,
    {
        let x = SvcRdmaXprt::new(cfg, qp, life, Arc::clone(&hook))
            .expect("a server transport on a fresh mock QP");
        Box::new(Served { x, hook })
    }
    match policy {
        Policy::Deferred => {
            let life: Deferred<MockDevice, Arc<Hook>> = Deferred::new(dev, pool, Arc::clone(&hook));
            build(cfg, qp, life, hook)
        }
        Policy::Workqueue => {
            let pool = PoolConfig {
                cap: wq_cap.unwrap_or(pool.cap),
                ..pool
            };
            let life: Workqueue<MockDevice> = Workqueue::new(dev, pool, Arc::clone(wq));
            build(cfg, qp, life, hook)
        }
        Policy::Inline => {
            let life: Inline<MockDevice> = Inline::new(dev, pool);
            build(cfg, qp, life, hook)
        }
    }
}
