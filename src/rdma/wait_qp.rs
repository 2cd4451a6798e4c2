//! [`VerbsWaitQp`]: a [`VerbsQp`] that can sleep until a completion is
//! pollable (event mode on completion channels, sleep-poll otherwise), and
//! arm its CQs for a poller that serves a shared channel.
#![allow(unsafe_code)]

use crate::completion::CompletionWait;
use rdmaxprt_core::backend::{self as cb, ErrorType, QueuePair};
use rdmaxprt_verbs::{sys, CmConnHandle, CompletionQueue, VerbsError, VerbsQp};
use std::time::{Duration, Instant};

/// How long a sleep-poll wait (CQs without a completion channel) sleeps
/// between polls.
pub const SLEEP_POLL: Duration = Duration::from_micros(50);

/// Longest single sleep of an event-mode wait before it re-polls anyway.
const EVENT_SLICE: Duration = Duration::from_millis(100);

/// A [`VerbsQp`] that can sleep until a completion is pollable
/// ([`CompletionWait`]): event mode on CQs with a completion channel,
/// sleep-poll otherwise (see the module docs). Completions a wait polled
/// stay in the `VerbsQp`'s stash and come out first from the next polls.
pub struct VerbsWaitQp {
    qp: VerbsQp,
    remote_invalidation: bool,
    cm: Option<CmConnHandle>,
}

impl std::fmt::Debug for VerbsWaitQp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbsWaitQp")
            .field("qp", &self.qp)
            .field("event_mode", &self.is_event_mode())
            .finish_non_exhaustive()
    }
}

/// The completion channel `cq` was created with (null: none).
fn channel_of(cq: &CompletionQueue) -> *mut sys::ibv_comp_channel {
    // SAFETY: `as_raw` is the live CQ (its owner, the QP, outlives this
    // call); `channel` is written by ibv_create_cq and never changes.
    unsafe { (*cq.as_raw()).channel }
}

/// Reads and acknowledges every event pending on `ch`.
fn consume_events(ch: *mut sys::ibv_comp_channel) {
    loop {
        let mut cq: *mut sys::ibv_cq = std::ptr::null_mut();
        let mut ctx: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: `ch` is the live channel of one of our CQs; its fd is
        // non-blocking (rdmaxprt_verbs::CompletionChannel::new makes it
        // so), so this returns -1 (EAGAIN) once nothing is pending. The
        // out-pointers are valid locals.
        let ret = unsafe { sys::ibv_get_cq_event(ch, &mut cq, &mut ctx) };
        if ret != 0 || cq.is_null() {
            return;
        }
        // SAFETY: `cq` is the live CQ the event was for; one event read,
        // one acknowledged (so its ibv_destroy_cq will not wait).
        unsafe { sys::ibv_ack_cq_events(cq, 1) };
    }
}

impl VerbsWaitQp {
    /// Wraps `qp` (separate send and receive CQs, as `VerbsQp` requires).
    pub fn new(qp: VerbsQp) -> Self {
        Self {
            qp,
            remote_invalidation: false,
            cm: None,
        }
    }

    /// The QP's rdma_cm connection: [`drain_qp`](QueuePair::drain_qp)
    /// disconnects it first (`rdma_disconnect`, as svcrdma's teardown
    /// does), so the peer learns at once that the connection is gone.
    pub fn with_cm_connection(mut self, cm: CmConnHandle) -> Self {
        self.cm = Some(cm);
        self
    }

    /// The wrapped queue pair.
    pub fn inner(&self) -> &VerbsQp {
        &self.qp
    }

    /// Posts Send-with-Invalidate as asked (default: as a plain Send): only
    /// for a peer whose chunk registrations can be invalidated remotely
    /// (see the module docs).
    pub fn allow_remote_invalidation(mut self, allow: bool) -> Self {
        self.remote_invalidation = allow;
        self
    }

    /// Whether both CQs have a completion channel (event-mode waits).
    pub fn is_event_mode(&self) -> bool {
        let q = self.qp.inner();
        !channel_of(q.send_cq()).is_null() && !channel_of(q.recv_cq()).is_null()
    }

    /// Forces the QP into the error state (a fault, not a drain): posted
    /// work requests flush, later ones fail or flush.
    pub fn force_error(&self) -> Result<(), VerbsError> {
        self.qp.inner().set_error()
    }

    /// Polls both CQs ahead (into the `VerbsQp`'s own stashes, handed out
    /// first by the next polls); whether a completion is pollable. A poll
    /// error counts as pollable: the caller's poll will report it.
    fn fill(&self) -> bool {
        self.qp.poll_ahead().unwrap_or(true)
    }

    /// One event-mode sleep of at most `left`: arm both CQs, re-poll, then
    /// sleep on the channel fds and consume their events. Whether a
    /// completion is stashed.
    fn event_sleep(&self, left: Duration) -> bool {
        let q = self.qp.inner();
        if q.send_cq().req_notify(false).is_err() || q.recv_cq().req_notify(false).is_err() {
            std::thread::sleep(left.min(SLEEP_POLL));
            return self.fill();
        }
        if self.fill() {
            return true;
        }
        let mut chans = vec![channel_of(q.send_cq())];
        let recv_ch = channel_of(q.recv_cq());
        if recv_ch != chans[0] {
            chans.push(recv_ch);
        }
        let mut fds: Vec<libc::pollfd> = chans
            .iter()
            .map(|&ch| libc::pollfd {
                // SAFETY: `ch` is the live channel of one of our CQs.
                fd: unsafe { (*ch).fd },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.min(EVENT_SLICE).as_millis().max(1) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r > 0 {
            for (fd, &ch) in fds.iter().zip(&chans) {
                if fd.revents != 0 {
                    consume_events(ch);
                }
            }
        }
        self.fill()
    }
}

impl CompletionWait for VerbsWaitQp {
    fn arm_completions(&self) -> bool {
        let q = self.qp.inner();
        self.is_event_mode()
            && q.send_cq().req_notify(false).is_ok()
            && q.recv_cq().req_notify(false).is_ok()
    }

    fn wait_for_completions(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let event = self.is_event_mode();
        loop {
            if self.fill() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if event {
                if self.event_sleep(left) {
                    return true;
                }
            } else {
                std::thread::sleep(left.min(SLEEP_POLL));
            }
        }
    }
}

impl ErrorType for VerbsWaitQp {
    type Error = VerbsError;
}

impl QueuePair for VerbsWaitQp {
    fn caps(&self) -> cb::Caps {
        self.qp.caps()
    }

    unsafe fn post_send(&self, chain: &[cb::SendWr<'_>]) -> Result<(), cb::PostError<VerbsError>> {
        let inv = |w: &cb::SendWr<'_>| matches!(w.op, cb::WrOp::SendInv { .. });
        if self.remote_invalidation || !chain.iter().any(inv) {
            // SAFETY: the caller upholds the trait's contract, which is ours.
            return unsafe { self.qp.post_send(chain) };
        }
        let plain: Vec<cb::SendWr<'_>> = chain
            .iter()
            .map(|w| cb::SendWr {
                op: if inv(w) { cb::WrOp::Send } else { w.op },
                ..*w
            })
            .collect();
        // SAFETY: the same work requests over the same memory as the
        // caller's (only the opcode differs), so the caller's guarantees
        // cover them.
        unsafe { self.qp.post_send(&plain) }
    }

    unsafe fn post_recv(&self, wrs: &[cb::RecvWr]) -> Result<(), cb::PostError<VerbsError>> {
        // SAFETY: the caller upholds the trait's contract, which is ours.
        unsafe { self.qp.post_recv(wrs) }
    }

    fn poll_send(&self, out: &mut [cb::Wc]) -> Result<usize, VerbsError> {
        self.qp.poll_send(out)
    }

    fn poll_recv(&self, out: &mut [cb::Wc]) -> Result<usize, VerbsError> {
        self.qp.poll_recv(out)
    }

    fn drain_qp(&self) -> Result<(), VerbsError> {
        if let Some(cm) = &self.cm {
            // Already disconnected (by the peer, or an earlier drain) is
            // fine: the QP is in error either way.
            if let Err(e) = cm.disconnect() {
                tracing::debug!(%e, "rdma_disconnect before the drain");
            }
        }
        // The drained completions join the VerbsQp's stash, after any
        // polled ahead: order is kept.
        self.qp.drain_qp()
    }
}
