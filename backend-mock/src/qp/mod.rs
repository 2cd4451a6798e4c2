//! Connected queue pairs: [`MockQp`], their configuration and how work
//! requests get executed ([`Delivery`]).
//!
//! Both ends of a pair share one lock, so a Send, the peer's Recv and both
//! completions happen atomically. Completions are only ever *queued*; no
//! user code runs inside `post_send`/`post_recv`: the user polls.
//!
//! Receiver-not-ready: a Send whose peer has no Recv posted waits at the
//! head of its SQ (an infinite `rnr_retry`) until a Recv is posted, blocking
//! the WRs behind it, as RC ordering requires.

mod dma;
mod exec;
#[cfg(feature = "std")]
mod nic;
mod state;

use crate::device::MockDevice;
use crate::error::MockError;
use crate::fault::{FaultConfig, FaultCounts, FaultInjector};
use crate::lock::Mutex;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};
use rdmaxprt_core::backend::{Caps, ErrorType, PostError, QueuePair, RecvWr, SendWr, Wc};
use state::{End, PairState, PendingWr};

/// When posted work requests are executed and their completions queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// During the post itself (and during the peer's `post_recv` for a Send
    /// that was waiting for a Recv): completions are pollable as soon as
    /// `post_send` returns.
    #[default]
    Inline,
    /// Only when the test calls [`MockQp::step`], [`MockQp::step_all`] or
    /// [`MockDevice::step_all`]: fully deterministic.
    Stepped,
    /// A NIC thread per pair executes each WR `latency` after its post and
    /// wakes [`MockQp::wait_for_completions`].
    #[cfg(feature = "std")]
    Thread {
        /// Delay between a post and the execution of the WR.
        latency: core::time::Duration,
    },
}

/// Limits and behaviour of a connected pair (both ends get the same).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QpConfig {
    /// SQ depth in WRs (a slot is held until its completion is polled).
    pub sq_depth: u32,
    /// RQ depth in WRs.
    pub rq_depth: u32,
    /// Most SGEs per Send Queue WR.
    pub max_send_sge: u32,
    /// Reported in [`Caps`]; a mock Recv WR always has one SGE.
    pub max_recv_sge: u32,
    /// Reported in [`Caps`]; the mock has no inline sends.
    pub max_inline: u32,
    /// When WRs execute.
    pub delivery: Delivery,
    /// Seeded fault injection, if any.
    pub faults: Option<FaultConfig>,
}

impl Default for QpConfig {
    fn default() -> Self {
        Self {
            sq_depth: 128,
            rq_depth: 128,
            max_send_sge: 16,
            max_recv_sge: 1,
            max_inline: 0,
            delivery: Delivery::Inline,
            faults: None,
        }
    }
}

impl QpConfig {
    fn caps(&self) -> Caps {
        Caps {
            sq_depth: self.sq_depth,
            rq_depth: self.rq_depth,
            max_send_sge: self.max_send_sge,
            max_recv_sge: self.max_recv_sge,
            max_inline: self.max_inline,
        }
    }
}

/// What both ends share.
pub(crate) struct Pair {
    st: Mutex<PairState>,
    devs: [MockDevice; 2],
    delivery: Delivery,
    /// Both ends' limits (fixed at creation: read without the lock).
    caps: Caps,
    handles: AtomicUsize,
    /// Pollers sleep here (`wait_for_completions`).
    #[cfg(feature = "std")]
    cq_cv: std::sync::Condvar,
    /// The NIC thread sleeps here.
    #[cfg(feature = "std")]
    work_cv: std::sync::Condvar,
    /// Threads asleep on `cq_cv` / `work_cv`, changed only under `st`: a
    /// notify with nobody asleep skips the condvar (std's always makes a
    /// futex syscall, which cost more than the mock's WR execution). A
    /// sleeper registers under `st` before it checks its condition, and a
    /// notifier changes state under `st` before it reads the count, so it
    /// never misses one that needs waking.
    #[cfg(feature = "std")]
    sleepers: [AtomicUsize; 2],
    /// Per end: called whenever completions may have been queued, so one
    /// poller can serve many QPs (see [`MockQp::set_completion_notifier`]).
    #[cfg(feature = "std")]
    notifiers: std::sync::Mutex<[Option<Notifier>; 2]>,
    /// Whether either end has a notifier (changed under `notifiers`): a
    /// pair without one rings nothing and takes no lock to find that out.
    #[cfg(feature = "std")]
    has_notifiers: core::sync::atomic::AtomicBool,
}

/// Index into [`Pair::sleepers`]: pollers in `wait_for_completions`.
#[cfg(feature = "std")]
const CQ_SLEEPERS: usize = 0;
/// Index into [`Pair::sleepers`]: the NIC thread.
#[cfg(feature = "std")]
const WORK_SLEEPERS: usize = 1;

#[cfg(feature = "std")]
impl Pair {
    /// Sleeps on `cv` (the condvar of `which`) for at most `timeout`
    /// (forever if `None`), counted in `sleepers[which]` meanwhile.
    fn sleep<'a>(
        &self,
        which: usize,
        st: crate::lock::MutexGuard<'a, PairState>,
        timeout: Option<std::time::Duration>,
    ) -> crate::lock::MutexGuard<'a, PairState> {
        let cv = if which == CQ_SLEEPERS {
            &self.cq_cv
        } else {
            &self.work_cv
        };
        // Relaxed: both changes happen under `st` (field docs).
        self.sleepers[which].fetch_add(1, Ordering::Relaxed);
        let st = match timeout {
            Some(t) => crate::lock::wait_timeout(cv, st, t),
            None => crate::lock::wait(cv, st),
        };
        self.sleepers[which].fetch_sub(1, Ordering::Relaxed);
        st
    }
}

/// A completion notifier: cheap, non-blocking, callable from any thread.
#[cfg(feature = "std")]
pub type Notifier = Arc<dyn Fn() + Send + Sync>;

impl Pair {
    /// After a state change under the lock: Inline delivery runs the work now.
    fn kick(&self, st: &mut PairState) {
        if self.delivery == Delivery::Inline {
            exec::run_until_quiet(st, &self.devs);
        }
    }

    /// After the lock is dropped: wake pollers and the NIC thread.
    fn notify(&self) {
        #[cfg(feature = "std")]
        {
            // Relaxed: ordered by `st` (field docs).
            if self.sleepers[CQ_SLEEPERS].load(Ordering::Relaxed) != 0 {
                self.cq_cv.notify_all();
            }
            if self.sleepers[WORK_SLEEPERS].load(Ordering::Relaxed) != 0 {
                self.work_cv.notify_all();
            }
            self.ring_notifiers();
        }
    }

    /// Calls both ends' completion notifiers (without the pair's lock).
    #[cfg(feature = "std")]
    fn ring_notifiers(&self) {
        // Acquire: pairs with the Release store in
        // `set_completion_notifier`. A notifier set after this load missed
        // only completions queued before it was set, as with the lock.
        if !self.has_notifiers.load(Ordering::Acquire) {
            return;
        }
        let ns = self
            .notifiers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for n in ns.iter().flatten() {
            n();
        }
    }

    /// Runs every pending WR of both ends until nothing can progress.
    pub(crate) fn run_until_quiet(&self) -> usize {
        let n = exec::run_until_quiet(&mut self.st.lock(), &self.devs);
        self.notify();
        n
    }

    /// Applies `f` to the pair's state, kicks Inline delivery, notifies.
    fn change<R>(&self, f: impl FnOnce(&mut PairState) -> R) -> R {
        let mut st = self.st.lock();
        let r = f(&mut st);
        self.kick(&mut st);
        drop(st);
        self.notify();
        r
    }
}

/// One end of a connected RC queue pair on a [`MockDevice`].
pub struct MockQp {
    pair: Arc<Pair>,
    side: usize,
}

impl core::fmt::Debug for MockQp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let st = self.pair.st.lock();
        let me = &st.ends[self.side];
        f.debug_struct("MockQp")
            .field("side", &self.side)
            .field("error", &me.error)
            .field("sq_used", &me.sq_used())
            .field("rq_used", &me.rq_used())
            .finish()
    }
}

impl MockDevice {
    /// Creates a connected pair: the first QP on `a`, the second on `b`
    /// (`a` and `b` may be the same device). With [`Delivery::Thread`] this
    /// starts the pair's NIC thread, which exits when both QPs are dropped.
    pub fn connect_pair(
        a: &MockDevice,
        b: &MockDevice,
        cfg: QpConfig,
    ) -> Result<(MockQp, MockQp), MockError> {
        if cfg.sq_depth == 0 || cfg.rq_depth == 0 || cfg.max_send_sge == 0 || cfg.max_recv_sge == 0
        {
            return Err(MockError::InvalidConfig);
        }
        let end = |i| End::new(cfg.caps(), cfg.faults.map(|f| FaultInjector::new(f, i)));
        let pair = Arc::new(Pair {
            st: Mutex::new(PairState {
                ends: [end(0), end(1)],
                shutdown: false,
                pieces: dma::Pieces::default(),
            }),
            devs: [a.clone(), b.clone()],
            delivery: cfg.delivery,
            caps: cfg.caps(),
            handles: AtomicUsize::new(2),
            #[cfg(feature = "std")]
            cq_cv: std::sync::Condvar::new(),
            #[cfg(feature = "std")]
            work_cv: std::sync::Condvar::new(),
            #[cfg(feature = "std")]
            sleepers: [AtomicUsize::new(0), AtomicUsize::new(0)],
            #[cfg(feature = "std")]
            notifiers: std::sync::Mutex::new([None, None]),
            #[cfg(feature = "std")]
            has_notifiers: core::sync::atomic::AtomicBool::new(false),
        });
        #[cfg(feature = "std")]
        if let Delivery::Thread { .. } = cfg.delivery {
            nic::spawn(Arc::clone(&pair)).map_err(|_| MockError::OutOfResources)?;
        }
        a.add_pair(&pair);
        b.add_pair(&pair);
        let qa = MockQp {
            pair: Arc::clone(&pair),
            side: 0,
        };
        Ok((qa, MockQp { pair, side: 1 }))
    }
}

impl MockQp {
    /// The device this end's memory is mapped on.
    pub fn device(&self) -> &MockDevice {
        &self.pair.devs[self.side]
    }

    /// Executes the head WR of this QP's SQ (any delivery mode); `false` if
    /// nothing is pending or the head Send waits for a peer Recv.
    pub fn step(&self) -> bool {
        let ran = exec::step_one(&mut self.pair.st.lock(), &self.pair.devs, self.side);
        self.pair.notify();
        ran == exec::Step::Ran
    }

    /// Runs both ends of this pair until nothing can progress; returns how
    /// many WRs were processed.
    pub fn step_all(&self) -> usize {
        self.pair.run_until_quiet()
    }

    /// Moves this QP to the error state now: every outstanding WR flushes,
    /// later posts fail with [`MockError::QpError`].
    pub fn force_error(&self) {
        self.pair.change(|st| st.ends[self.side].flush());
    }

    /// Connection loss: both ends go to error and flush.
    pub fn disconnect(&self) {
        self.pair.change(|st| {
            st.ends[0].flush();
            st.ends[1].flush();
        });
    }

    /// Makes the next `post_send` fail with
    /// [`MockError::InjectedPostFailure`] after accepting `consumed` WRs
    /// (clamped to `chain.len() - 1`, so a failure always leaves at least
    /// the last WR unposted).
    pub fn inject_next_post_failure(&self, consumed: usize) {
        self.pair.st.lock().ends[self.side].next_post_failure = Some(consumed);
    }

    /// Replaces this end's fault injector (`None` turns faults off, e.g. for
    /// an orderly teardown after a chaos run).
    pub fn set_faults(&self, faults: Option<FaultConfig>) {
        self.pair.st.lock().ends[self.side].faults =
            faults.map(|f| FaultInjector::new(f, self.side));
    }

    /// The faults this end's injector has injected so far (zero without
    /// one; [`set_faults`](Self::set_faults) starts a new count).
    pub fn fault_counts(&self) -> FaultCounts {
        self.pair.st.lock().ends[self.side]
            .faults
            .as_ref()
            .map_or_else(FaultCounts::default, FaultInjector::counts)
    }

    /// Whether this QP is in the error state.
    pub fn is_error(&self) -> bool {
        self.pair.st.lock().ends[self.side].error
    }

    /// SQ slots in use: posted WRs whose covering completion has not been
    /// polled yet.
    pub fn sq_outstanding(&self) -> u32 {
        self.pair.st.lock().ends[self.side].sq_used()
    }

    /// RQ slots in use.
    pub fn rq_outstanding(&self) -> u32 {
        self.pair.st.lock().ends[self.side].rq_used()
    }

    /// Whether a send or receive completion is queued (it may still be held
    /// back for a few polls by the fault injector's delay).
    pub fn has_completions(&self) -> bool {
        self.pair.st.lock().ends[self.side].has_completions()
    }

    /// Installs (or with `None` removes) a function called whenever a
    /// completion may have been queued for this end, from whichever thread
    /// queued it (a poster, the NIC thread). It must be cheap and must not
    /// call back into this QP: ring a doorbell, nothing more.
    #[cfg(feature = "std")]
    pub fn set_completion_notifier(&self, f: Option<Notifier>) {
        let mut ns = self
            .pair
            .notifiers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        ns[self.side] = f;
        // Release: a ring that sees `true` sees the notifier too (it
        // takes the lock after the load anyway).
        self.pair
            .has_notifiers
            .store(ns.iter().any(Option::is_some), Ordering::Release);
    }

    /// Sleeps until this QP has a queued completion or `timeout` passes;
    /// returns whether one is there. For pollers that must not spin.
    #[cfg(feature = "std")]
    pub fn wait_for_completions(&self, timeout: core::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.pair.st.lock();
        loop {
            if st.ends[self.side].has_completions() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.pair.sleep(CQ_SLEEPERS, st, Some(deadline - now));
        }
    }
}

impl Drop for MockQp {
    fn drop(&mut self) {
        // AcqRel: the last handle's shutdown follows every other handle's
        // use of the pair.
        if self.pair.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.pair.st.lock().shutdown = true;
            self.pair.notify();
        }
    }
}

impl ErrorType for MockQp {
    type Error = MockError;
}

fn post_err(consumed: usize, error: MockError) -> PostError<MockError> {
    PostError { consumed, error }
}

// `unsafe` here is only the trait's posting contract (see the crate's
// safety model); the bodies themselves do nothing unsafe.
#[allow(unsafe_code)]
impl QueuePair for MockQp {
    fn caps(&self) -> Caps {
        self.pair.caps
    }

    unsafe fn post_send(&self, chain: &[SendWr<'_>]) -> Result<(), PostError<MockError>> {
        #[cfg(feature = "std")]
        let due = match self.pair.delivery {
            Delivery::Thread { latency } => Some(std::time::Instant::now() + latency),
            _ => None,
        };
        self.pair.change(|st| {
            let me = &mut st.ends[self.side];
            if me.error {
                return Err(post_err(0, MockError::QpError));
            }
            let fail_at = match me.next_post_failure.take() {
                Some(k) => Some(k.min(chain.len().saturating_sub(1))),
                None => me.faults.as_mut().and_then(|f| f.on_post(chain.len())),
            };
            for (i, wr) in chain.iter().enumerate() {
                if fail_at == Some(i) {
                    return Err(post_err(i, MockError::InjectedPostFailure));
                }
                if wr.sges.len() > me.caps.max_send_sge as usize {
                    let e = MockError::TooManySges {
                        max: me.caps.max_send_sge,
                        got: wr.sges.len(),
                    };
                    return Err(post_err(i, e));
                }
                if me.sq_full() {
                    return Err(post_err(i, MockError::SendQueueFull));
                }
                me.accept_send(PendingWr {
                    wr_id: wr.wr_id,
                    op: wr.op,
                    sges: smallvec::SmallVec::from_slice(wr.sges),
                    signaled: wr.signaled,
                    #[cfg(feature = "std")]
                    due,
                });
            }
            Ok(())
        })
    }

    unsafe fn post_recv(&self, wrs: &[RecvWr]) -> Result<(), PostError<MockError>> {
        self.pair.change(|st| {
            let me = &mut st.ends[self.side];
            if me.error {
                return Err(post_err(0, MockError::QpError));
            }
            for (i, wr) in wrs.iter().enumerate() {
                if me.rq_full() {
                    return Err(post_err(i, MockError::RecvQueueFull));
                }
                me.accept_recv(*wr);
            }
            Ok(())
        })
    }

    fn poll_send(&self, out: &mut [Wc]) -> Result<usize, MockError> {
        Ok(self.pair.st.lock().ends[self.side].poll_send(out))
    }

    fn poll_recv(&self, out: &mut [Wc]) -> Result<usize, MockError> {
        Ok(self.pair.st.lock().ends[self.side].poll_recv(out))
    }

    fn drain_qp(&self) -> Result<(), MockError> {
        // Execution happens under the pair lock, so once we hold it no WR
        // is mid-flight: flushing here leaves every completion in the CQs.
        self.force_error();
        Ok(())
    }
}
