//! A Send that completes before its post commits (completions are polled
//! on other threads, or a NIC completes inside `post_send`): the completion
//! handler leaves the context's release to the poster, which queues it at
//! commit. The completion's wake of the SQ space queue then came before the
//! release was queued, so a worker waiting on that queue for a release
//! must be woken again after the commit, or it sleeps until the next
//! completion (with no other traffic, until the client gives up). The same
//! wait must also notice buffers another worker took back between its
//! last look at the free ones and its wait (nothing is then pending or
//! returned, and no completion may follow).
//!
//! Deterministic: the test's QP runs the transport's completion handling
//! inside `post_send` (so the completion is handled before `post`
//! commits), and its wait queue counts the waiter's failed checks, so the
//! QP knows when the waiter is asleep and when it has rechecked after the
//! completion's wake. A hang is the failure; the bound on the waiter is a
//! liveness check, not a speed claim.

#[path = "support/chunks.rs"]
mod chunks;
#[path = "transport_common.rs"]
mod common;

use chunks::Chunks;
use common::{worker, Hook, PROC_ECHO, PROC_NULL, PROG, VERS};
use rdmaxprt::client::{CallOptions, ClientConfig, RpcClient, Ticket};
use rdmaxprt::mock::{MockDevice, MockError, MockQp, QpConfig};
use rdmaxprt_core::backend::{
    Caps, DmaDevice, ErrorType, PostError, QueuePair, RecvWr, SendWr, Wc,
};
use rdmaxprt_core::lifecycle::{Deferred, SendCtxtLifecycle};
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{RecvdCall, SvcRdmaXprt, XprtConfig, XprtError};
use rdmaxprt_core::wait::{CondvarWait, WaitQueue};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How long a step may take before the test calls it stuck (liveness
/// bound only).
const STUCK: Duration = Duration::from_secs(10);

/// A [`CondvarWait`] that counts the checks that found the condition false
/// (each is followed by sleeping). `CondvarWait` checks under its mutex and
/// `wake_all` takes that mutex, so once the count moved, a wake finds the
/// waiter asleep.
#[derive(Debug, Default)]
struct CountingWait {
    inner: CondvarWait,
    misses: AtomicUsize,
}

impl CountingWait {
    fn misses(&self) -> usize {
        self.misses.load(Ordering::SeqCst)
    }
}

thread_local! {
    /// Runs (once) on this thread when it next calls `wait_until`, before
    /// the wait registers: what another worker may do in that gap.
    static BEFORE_WAIT: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
}

impl WaitQueue for CountingWait {
    fn wait_until(&self, cond: &dyn Fn() -> bool) {
        if let Some(f) = BEFORE_WAIT.with(|h| h.borrow_mut().take()) {
            f();
        }
        self.inner.wait_until(&|| {
            let ok = cond();
            if !ok {
                self.misses.fetch_add(1, Ordering::SeqCst);
            }
            ok
        });
    }
    fn wake_all(&self) {
        self.inner.wake_all();
    }
    fn has_waiters(&self) -> bool {
        self.inner.has_waiters()
    }
}

/// Where an armed `post_send` is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Before the chain goes to the NIC.
    Before,
    /// The NIC took it (and, the mock delivering inline, completed it).
    After,
}

/// The test's control over one post: armed, the next `post_send` first
/// waits for the other worker to sleep, then posts, then runs the
/// transport's completion handling and waits for the sleeper to recheck
/// and sleep again, all before `post` commits.
#[derive(Default)]
struct Race {
    armed: AtomicBool,
    /// The armed post reached the NIC's door.
    posting: AtomicBool,
    /// Completions the armed post handled before its commit.
    early: AtomicUsize,
    /// A step of the armed post timed out (the scenario went wrong).
    stuck: AtomicBool,
    hook: OnceLock<Box<dyn Fn(Phase) + Send + Sync>>,
}

impl Race {
    fn run(&self, phase: Phase) {
        if let Some(h) = self.hook.get() {
            h(phase);
        }
    }

    /// Hooks the armed post up to transport `x`.
    fn install<D>(&self, x: &Arc<Srv<D>>)
    where
        D: DmaDevice<Error = MockError> + Send + Sync + 'static,
        D::Buf: Send,
    {
        let w: Weak<Srv<D>> = Arc::downgrade(x);
        let hook = move |phase| {
            let Some(x) = w.upgrade() else { return };
            let race = &x.qp().race;
            let misses = || x.sq().space_wait().misses();
            match phase {
                Phase::Before => {
                    race.posting.store(true, Ordering::SeqCst);
                    if !wait_for(|| misses() >= 1) {
                        race.stuck.store(true, Ordering::SeqCst);
                    }
                }
                Phase::After => {
                    let before = misses();
                    // What the runtime's poller does, here before `post`
                    // commits.
                    let n = x.poll(usize::MAX).unwrap();
                    race.early.fetch_add(n, Ordering::SeqCst);
                    // The completion woke the sleeper: let it find nothing
                    // released yet and go back to sleep.
                    if !wait_for(|| misses() > before) {
                        race.stuck.store(true, Ordering::SeqCst);
                    }
                }
            }
        };
        assert!(self.hook.set(Box::new(hook)).is_ok(), "installed once");
    }
}

/// Polls `cond` until it holds (true) or [`STUCK`] passes (false).
fn wait_for(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > STUCK {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The mock QP, with [`Race`] around an armed `post_send`.
struct RaceQp {
    inner: MockQp,
    race: Race,
}

impl ErrorType for RaceQp {
    type Error = MockError;
}

impl QueuePair for RaceQp {
    fn caps(&self) -> Caps {
        self.inner.caps()
    }
    unsafe fn post_send(&self, chain: &[SendWr<'_>]) -> Result<(), PostError<MockError>> {
        let armed = self.race.armed.swap(false, Ordering::SeqCst);
        if armed {
            self.race.run(Phase::Before);
        }
        // SAFETY: forwarded under the caller's contract, unchanged.
        let res = unsafe { self.inner.post_send(chain) };
        if armed && res.is_ok() {
            self.race.run(Phase::After);
        }
        res
    }
    unsafe fn post_recv(&self, wrs: &[RecvWr]) -> Result<(), PostError<MockError>> {
        // SAFETY: forwarded under the caller's contract, unchanged.
        unsafe { self.inner.post_recv(wrs) }
    }
    fn poll_send(&self, out: &mut [Wc]) -> Result<usize, MockError> {
        self.inner.poll_send(out)
    }
    fn poll_recv(&self, out: &mut [Wc]) -> Result<usize, MockError> {
        self.inner.poll_recv(out)
    }
    fn drain_qp(&self) -> Result<(), MockError> {
        self.inner.drain_qp()
    }
}

type Srv<D> = SvcRdmaXprt<Deferred<D, Arc<Hook>>, RaceQp, Arc<Hook>, CountingWait>;
type Client = RpcClient<MockQp, MockDevice>;
/// What a worker's reply came to.
type Reply = Result<(), XprtError<MockError>>;

/// A client on `cdev` and a server transport on `dev` (a device over
/// `sdev`) whose send-context pool has `cap` contexts at most, connected
/// with inline delivery (a post's work runs inside `post_send`).
fn connect<D>(
    cdev: &MockDevice,
    sdev: &MockDevice,
    dev: D,
    cap: Option<u32>,
    xcfg: XprtConfig,
) -> (Client, Arc<Srv<D>>)
where
    D: DmaDevice<Error = MockError> + Send + Sync + 'static,
    D::Buf: Send,
{
    let (cq, sq) = MockDevice::connect_pair(cdev, sdev, QpConfig::default()).unwrap();
    let caps = sq.caps();
    let mut pool = PoolConfig::for_transport(caps.sq_depth, xcfg.credits, caps.max_send_sge);
    if let Some(cap) = cap {
        pool.cap = cap;
    }
    let hook = Arc::new(Hook::default());
    let life = Deferred::new(dev, pool, Arc::clone(&hook));
    let qp = RaceQp {
        inner: sq,
        race: Race::default(),
    };
    let x = Arc::new(SvcRdmaXprt::new(xcfg, qp, life, hook).unwrap());
    x.qp().race.install(&x);
    let c = RpcClient::new(cq, cdev.clone(), ClientConfig::default()).unwrap();
    (c, x)
}

/// Completion handlers and worker passes until `c` has the reply to `t`.
fn answer<D>(x: &Srv<D>, c: &mut Client, t: &Ticket) -> Vec<u8>
where
    D: DmaDevice<Error = MockError> + Send + Sync + 'static,
    D::Buf: Send,
{
    for _ in 0..1000 {
        worker::serve_for(x, PROG);
        if let Some(r) = c.try_wait(t) {
            return r.unwrap().results.to_vec();
        }
    }
    panic!("call never answered");
}

/// The next call, running the completion handlers as needed.
fn next_call<D>(x: &Srv<D>) -> RecvdCall<'_>
where
    D: DmaDevice<Error = MockError> + Send + Sync + 'static,
    D::Buf: Send,
{
    for _ in 0..1000 {
        x.poll(usize::MAX).unwrap();
        if let Some(call) = x.recvfrom().unwrap() {
            return call;
        }
    }
    panic!("no call arrived");
}

/// Two workers: A takes the first call and answers it only once B's reply
/// to the second is at the NIC's door (armed: B's Send completes and is
/// handled before B's `post` commits, with A asleep before and after the
/// completion's wake). Returns A's and B's results; A's is an error if it
/// did not finish within [`STUCK`] after B's post (the transport is then
/// closed to free it).
fn race<D>(x: &Srv<D>) -> (Reply, Reply)
where
    D: DmaDevice<Error = MockError> + Send + Sync + 'static,
    D::Buf: Send,
{
    let race = &x.qp().race;
    let has_call = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let call = next_call(x);
            has_call.store(true, Ordering::SeqCst);
            assert!(
                wait_for(|| race.posting.load(Ordering::SeqCst)),
                "B never posted"
            );
            let res = worker::echo_call(x, &call, PROG);
            drop(call);
            tx.send(res).unwrap();
        });
        assert!(
            wait_for(|| has_call.load(Ordering::SeqCst)),
            "A got no call"
        );
        let call_b = next_call(x);
        race.armed.store(true, Ordering::SeqCst);
        let b = worker::echo_call(x, &call_b, PROG);
        drop(call_b);
        (a_within_bound(x, &rx), b)
    })
}

/// Worker A's result, sent on `rx`, if it comes within [`STUCK`]; else A
/// sleeps on: the transport is closed to wake it (so its thread can be
/// joined) and the result is an error.
fn a_within_bound<D>(x: &Srv<D>, rx: &mpsc::Receiver<Reply>) -> Reply
where
    D: DmaDevice<Error = MockError> + Send + Sync + 'static,
    D::Buf: Send,
{
    rx.recv_timeout(STUCK).unwrap_or_else(|_| {
        x.close();
        let _ = rx.recv();
        Err(XprtError::Internal("A slept on until the transport closed"))
    })
}

/// The scenario happened as designed: B's completion was handled before
/// its commit, with A asleep.
fn assert_raced<D>(x: &Srv<D>)
where
    D: DmaDevice<Error = MockError> + Send + Sync + 'static,
    D::Buf: Send,
{
    let race = &x.qp().race;
    assert!(!race.stuck.load(Ordering::SeqCst), "the waiter never slept");
    assert_eq!(
        race.early.load(Ordering::SeqCst),
        1,
        "B's completion before commit"
    );
}

/// The transport's teardown finds nothing stuck and every device is clean.
fn finish<D>(x: Arc<Srv<D>>, c: Client, cdev: &MockDevice, sdev: &MockDevice)
where
    D: DmaDevice<Error = MockError> + Send + Sync + 'static,
    D::Buf: Send,
{
    let x = Arc::into_inner(x).expect("no other owner");
    let r = x.free();
    assert_eq!((r.reclaimed_send, r.bufs_held), (0, 0), "{r:?}");
    drop(c);
    cdev.assert_clean();
    sdev.assert_clean();
}

/// Worker A's reply waits in `stage` for a reply in flight to give its
/// staging buffer back (registered memory exhausted); worker B's reply,
/// which holds that buffer, completes before its post commits. A must be
/// woken once B's `post` queues the release.
#[test]
fn a_reply_waiting_for_staging_memory_wakes_when_a_send_completed_before_its_commit() {
    const BIG: usize = 64 * 1024;
    let (cdev, sdev) = (MockDevice::new(), MockDevice::new());
    // Three large chunks: two landing buffers (one per call) and one
    // staging buffer (B's reply), so A's reply finds none.
    let chunks = Chunks::new(&sdev, 3);
    let xcfg = XprtConfig {
        read_bufs: 2,
        stage_bufs: 1,
        ..XprtConfig::default()
    };
    let (mut c, x) = connect(&cdev, &sdev, chunks.clone(), None, xcfg);
    let t = c
        .start_call(PROG, VERS, PROC_NULL, &[], &CallOptions::default())
        .unwrap();
    answer(&x, &mut c, &t);
    // Echoes pulled through a Read chunk and answered through a Reply
    // chunk: each reply is copied into a staging buffer.
    let opts = CallOptions {
        reply_chunk: Some(BIG as u32 + 1024),
        ..CallOptions::default()
    };
    let args = [common::pattern(BIG, 1), common::pattern(BIG, 2)];
    let ts: Vec<Ticket> = args
        .iter()
        .map(|a| c.start_call(PROG, VERS, PROC_ECHO, a, &opts).unwrap())
        .collect();
    let (a, b) = race(&x);
    assert_raced(&x);
    b.unwrap();
    a.expect("A's reply, woken after B's commit");
    assert_eq!(common::counter(&x.counters().stage_waits), 1);
    assert_eq!(common::counter(&x.counters().reply_chunks), 2);
    for (t, want) in ts.iter().zip(&args) {
        assert_eq!(&answer(&x, &mut c, t), want);
    }
    finish(x, c, &cdev, &sdev);
    assert_eq!(chunks.live(), 0, "every chunk back");
}

/// Worker A's `get` waits at the send-context pool's cap (one context);
/// worker B's reply, in that one context, completes before its post
/// commits. A must be woken once B's `post` queues the release.
#[test]
fn a_get_waiting_at_the_cap_wakes_when_a_send_completed_before_its_commit() {
    let dev = MockDevice::new();
    let (mut c, x) = connect(&dev, &dev, dev.clone(), Some(1), XprtConfig::default());
    let t = c
        .start_call(PROG, VERS, PROC_NULL, &[], &CallOptions::default())
        .unwrap();
    answer(&x, &mut c, &t);
    let args = [common::pattern(64, 1), common::pattern(64, 2)];
    let ts: Vec<Ticket> = args
        .iter()
        .map(|a| {
            c.start_call(PROG, VERS, PROC_ECHO, a, &CallOptions::default())
                .unwrap()
        })
        .collect();
    let (a, b) = race(&x);
    assert_raced(&x);
    b.unwrap();
    a.expect("A's reply, woken after B's commit");
    assert!(x.send_lifecycle().stats().snapshot().waits_at_cap >= 1);
    assert_eq!(x.send_ctxts(), 1, "the pool stayed at its cap");
    for (t, want) in ts.iter().zip(&args) {
        assert_eq!(&answer(&x, &mut c, t), want);
    }
    finish(x, c, &dev, &dev);
}

/// Worker A's reply finds no staging memory and decides to wait for the one
/// reply in flight that holds a staging buffer (B's); before A's wait
/// registers, B's Send completion is handled and another worker's
/// `release_ctxt` (the runtime schedules one on the release list's
/// empty -> non-empty edge) releases B's context and takes its staging
/// buffer back. Nothing is then pending or returned, and no completion
/// follows: A must notice that buffers came back since it looked.
#[test]
fn a_reply_about_to_wait_for_staging_memory_sees_buffers_taken_back_meanwhile() {
    const BIG: usize = 64 * 1024;
    let (cdev, sdev) = (MockDevice::new(), MockDevice::new());
    // Three large chunks: two landing buffers and B's staging buffer.
    let chunks = Chunks::new(&sdev, 3);
    let xcfg = XprtConfig {
        read_bufs: 2,
        stage_bufs: 1,
        ..XprtConfig::default()
    };
    let (mut c, x) = connect(&cdev, &sdev, chunks.clone(), None, xcfg);
    let t = c
        .start_call(PROG, VERS, PROC_NULL, &[], &CallOptions::default())
        .unwrap();
    answer(&x, &mut c, &t);
    let opts = CallOptions {
        reply_chunk: Some(BIG as u32 + 1024),
        ..CallOptions::default()
    };
    let args = [common::pattern(BIG, 1), common::pattern(BIG, 2)];
    let ts: Vec<Ticket> = args
        .iter()
        .map(|a| c.start_call(PROG, VERS, PROC_ECHO, a, &opts).unwrap())
        .collect();
    let (tx, rx) = mpsc::channel();
    let a = std::thread::scope(|s| {
        s.spawn(|| {
            let call_a = next_call(&x);
            // B: staged (the third chunk) and posted; its completion waits
            // in the CQ.
            let call_b = next_call(&x);
            worker::echo_call(&*x, &call_b, PROG).unwrap();
            assert_eq!(chunks.live(), 3);
            let other = Arc::clone(&x);
            BEFORE_WAIT.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || {
                    // The poller, then another worker's pass.
                    assert_eq!(other.poll(usize::MAX).unwrap(), 1);
                    other.release_ctxt();
                }));
            });
            let res = worker::echo_call(&*x, &call_a, PROG);
            // B's call keeps its landing buffer until here, so the only
            // chunk that can come back to A is B's staging buffer.
            drop((call_a, call_b));
            tx.send(res).unwrap();
        });
        a_within_bound(&x, &rx)
    });
    a.expect("A's reply, staged in the buffer B gave back");
    assert_eq!(common::counter(&x.counters().stage_waits), 1);
    for (t, want) in ts.iter().zip(&args) {
        assert_eq!(&answer(&x, &mut c, t), want);
    }
    finish(x, c, &cdev, &sdev);
    assert_eq!(chunks.live(), 0, "every chunk back");
}
