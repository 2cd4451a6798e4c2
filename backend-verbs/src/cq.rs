//! Completion queues and completion channels.
//!
//! Two modes, chosen at creation:
//! - busy poll (no channel): [`CompletionQueue::poll`] in a loop;
//! - event mode (with a [`CompletionChannel`]): [`CompletionQueue::wait`]
//!   polls until empty, arms the CQ (`ibv_req_notify_cq`), polls again (a
//!   completion may have slipped in before the arm), then sleeps on the
//!   channel's fd, and on wake-up consumes and acknowledges *every* pending
//!   channel event before polling again. That is the loop svcrdma's
//!   `ib_cq_poll_work` runs in the kernel, and the only race-free one.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdma_sys as sys;

use crate::device::Context;
use crate::error::{errno_from_ret, last_errno, Result, VerbsError};
use crate::wc::WorkCompletion;

/// A completion channel (`ibv_comp_channel`): the fd a CQ signals events on.
/// Use one channel per CQ: [`CompletionQueue::wait`] consumes every event
/// pending on the channel.
#[derive(Clone)]
pub struct CompletionChannel {
    inner: Arc<ChannelInner>,
}

struct ChannelInner {
    ch: *mut sys::ibv_comp_channel,
    _ctx: Context,
}

// SAFETY: the channel is an fd plus a context pointer; libibverbs allows its
// use from any thread, and it is destroyed only in Drop.
unsafe impl Send for ChannelInner {}
// SAFETY: as above.
unsafe impl Sync for ChannelInner {}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        // SAFETY: every CQ on this channel holds an Arc to us, so all are
        // destroyed (and their events acked) before we get here.
        let ret = unsafe { sys::ibv_destroy_comp_channel(self.ch) };
        if ret != 0 {
            tracing::warn!(ret, "ibv_destroy_comp_channel failed");
        }
    }
}

impl std::fmt::Debug for CompletionChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionChannel")
            .field("fd", &self.fd())
            .finish()
    }
}

impl CompletionChannel {
    /// `ibv_create_comp_channel`; the fd is made non-blocking.
    pub fn new(ctx: &Context) -> Result<Self> {
        // SAFETY: ctx is open while we hold a clone.
        let ch = unsafe { sys::ibv_create_comp_channel(ctx.as_raw()) };
        if ch.is_null() {
            return Err(VerbsError::CreateCompChannel(last_errno()));
        }
        let this = Self {
            inner: Arc::new(ChannelInner {
                ch,
                _ctx: ctx.clone(),
            }),
        };
        let fd = this.fd();
        // SAFETY: fd is the channel's open descriptor; F_GETFL/F_SETFL have
        // no memory effects.
        let ok = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
        };
        if !ok {
            return Err(VerbsError::CreateCompChannel(last_errno()));
        }
        Ok(this)
    }

    /// The channel's file descriptor (readable when an event is pending).
    pub fn fd(&self) -> i32 {
        // SAFETY: ch is live until Drop.
        unsafe { (*self.inner.ch).fd }
    }

    /// Reads one pending event without blocking, acknowledges it at once
    /// (so destroying its CQ never waits on this caller), and returns the
    /// `user` value of the CQ it was for ([`CompletionQueue::with_user`]);
    /// `None` when nothing is pending. The CQ is disarmed by the event:
    /// poll it empty, re-arm it, poll again.
    pub fn next_event(&self) -> Option<u64> {
        let mut cq: *mut sys::ibv_cq = std::ptr::null_mut();
        let mut user: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: the channel is live and its fd non-blocking (`new`), so
        // this returns -1 (EAGAIN) when nothing is pending; the
        // out-pointers are valid locals.
        let ret = unsafe { sys::ibv_get_cq_event(self.inner.ch, &mut cq, &mut user) };
        if ret != 0 || cq.is_null() {
            return None;
        }
        // SAFETY: `cq` is the live CQ the event was for (a CQ cannot be
        // destroyed while an event it got is unacknowledged); one event
        // read, one acknowledged.
        unsafe { sys::ibv_ack_cq_events(cq, 1) };
        Some(user as u64)
    }
}

/// A completion queue (`ibv_cq`). Cheap to clone; destroyed after the last
/// clone and every QP using it are gone (QPs hold a clone: QP before CQ).
#[derive(Clone)]
pub struct CompletionQueue {
    inner: Arc<CqInner>,
}

struct CqInner {
    cq: *mut sys::ibv_cq,
    channel: Option<CompletionChannel>,
    /// Made by `with_user`: its channel serves other CQs too, so waiting
    /// here must never read (and so steal) the channel's events.
    shared_channel: bool,
    _ctx: Context,
}

// SAFETY: ibv_poll_cq/ibv_req_notify_cq may be called from any thread
// (providers lock internally); the CQ is destroyed only in Drop.
unsafe impl Send for CqInner {}
// SAFETY: as above.
unsafe impl Sync for CqInner {}

impl Drop for CqInner {
    fn drop(&mut self) {
        // SAFETY: cq came from ibv_create_cq; QPs hold Arcs to us so none is
        // left; every channel event was acked as soon as it was read.
        let ret = unsafe { sys::ibv_destroy_cq(self.cq) };
        if ret != 0 {
            tracing::warn!(ret, "ibv_destroy_cq failed");
        }
        // The channel (field) is dropped after this: CQ before channel.
    }
}

impl std::fmt::Debug for CompletionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionQueue")
            .field("event_mode", &self.inner.channel.is_some())
            .finish_non_exhaustive()
    }
}

/// Empty polls between two clock reads of a spinning wait
/// ([`CompletionQueue::poll_until`]); its timeout is late by that many
/// polls at most.
const SPIN_CLOCK_EVERY: u32 = 1024;

/// How many completions one `ibv_poll_cq` call fetches at most.
const POLL_BATCH: usize = 16;

impl CompletionQueue {
    /// `ibv_create_cq` with room for `depth` completions; with a channel for
    /// event mode, without one for busy polling.
    pub fn new(ctx: &Context, depth: i32, channel: Option<&CompletionChannel>) -> Result<Self> {
        Self::with_user(ctx, depth, channel, 0)
    }

    /// [`new`](Self::new) with a `user` value (not 0) that
    /// [`CompletionChannel::next_event`] returns for this CQ's events, so
    /// one channel can serve many CQs (one poller thread, many QPs). The
    /// channel's events belong to whoever serves it: this CQ's own waits
    /// ([`wait`](Self::wait), [`next`](Self::next), a QP drain) poll
    /// instead of reading the channel.
    pub fn with_user(
        ctx: &Context,
        depth: i32,
        channel: Option<&CompletionChannel>,
        user: u64,
    ) -> Result<Self> {
        let ch = channel.map_or(std::ptr::null_mut(), |c| c.inner.ch);
        // SAFETY: ctx and channel are live (we keep clones); comp_vector 0
        // always exists; `user` is an opaque value libibverbs only hands
        // back.
        let cq =
            unsafe { sys::ibv_create_cq(ctx.as_raw(), depth, user as *mut libc::c_void, ch, 0) };
        if cq.is_null() {
            return Err(VerbsError::CreateCq {
                depth,
                source: last_errno(),
            });
        }
        Ok(Self {
            inner: Arc::new(CqInner {
                cq,
                channel: channel.cloned(),
                shared_channel: channel.is_some() && user != 0,
                _ctx: ctx.clone(),
            }),
        })
    }

    /// The raw `ibv_cq`.
    pub fn as_raw(&self) -> *mut sys::ibv_cq {
        self.inner.cq
    }

    /// Poll up to `max` completions (without blocking), appending them to
    /// `out`; returns how many were appended.
    pub fn poll(&self, out: &mut Vec<WorkCompletion>, max: usize) -> Result<usize> {
        let mut got = 0;
        while got < max {
            // Not zeroed: a busy poll mostly finds nothing, and clearing
            // the batch each time would cost more than the poll.
            let mut wcs = [const { MaybeUninit::<sys::ibv_wc>::uninit() }; POLL_BATCH];
            let want = (max - got).min(POLL_BATCH) as i32;
            // SAFETY: the CQ is live; wcs has room for `want` entries.
            let n = unsafe { sys::ibv_poll_cq(self.inner.cq, want, wcs.as_mut_ptr().cast()) };
            if n < 0 {
                return Err(VerbsError::PollCq(errno_from_ret(n)));
            }
            let n = (n as usize).min(want as usize);
            out.extend(wcs[..n].iter().map(|w| {
                // SAFETY: ibv_poll_cq wrote the first `n` entries.
                WorkCompletion::from_sys(unsafe { w.assume_init_ref() })
            }));
            got += n;
            if n < want as usize {
                break;
            }
        }
        Ok(got)
    }

    /// Arm the CQ: the next completion raises a channel event.
    pub fn req_notify(&self, solicited_only: bool) -> Result<()> {
        // SAFETY: the CQ is live.
        let ret = unsafe { sys::ibv_req_notify_cq(self.inner.cq, i32::from(solicited_only)) };
        if ret != 0 {
            return Err(VerbsError::ReqNotifyCq(errno_from_ret(ret)));
        }
        Ok(())
    }

    /// Read and acknowledge every event pending on the channel; returns how
    /// many there were. Acking each one is what lets `ibv_destroy_cq` finish.
    fn consume_events(&self, ch: &CompletionChannel) -> Result<u32> {
        let mut n = 0;
        loop {
            let mut cq: *mut sys::ibv_cq = std::ptr::null_mut();
            let mut cq_ctx: *mut libc::c_void = std::ptr::null_mut();
            // SAFETY: the channel is live; out-pointers are valid. The fd is
            // non-blocking, so this returns -1/EAGAIN when nothing is pending.
            let ret = unsafe { sys::ibv_get_cq_event(ch.inner.ch, &mut cq, &mut cq_ctx) };
            if ret != 0 {
                let e = last_errno();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok(n);
                }
                return Err(VerbsError::GetCqEvent(e));
            }
            // SAFETY: cq is the CQ the event was for (live: it is on our
            // channel); one event read, one acked.
            unsafe { sys::ibv_ack_cq_events(cq, 1) };
            n += 1;
        }
    }

    /// Event mode: block until at least one completion is available (or the
    /// timeout passes), then append up to `max` to `out`.
    pub fn wait(
        &self,
        out: &mut Vec<WorkCompletion>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        let ch = self
            .inner
            .channel
            .as_ref()
            .ok_or(VerbsError::NoCompletionChannel)?;
        if self.inner.shared_channel {
            return self.poll_yielding(out, max, timeout);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.poll(out, max)?;
            if n > 0 {
                return Ok(n);
            }
            self.req_notify(false)?;
            // A completion that arrived between the poll and the arm raised
            // no event: poll once more after arming.
            let n = self.poll(out, max)?;
            if n > 0 {
                return Ok(n);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(VerbsError::Timeout {
                    what: "a completion",
                });
            }
            let mut pfd = libc::pollfd {
                fd: ch.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: pfd is a valid pollfd array of length 1.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = last_errno();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(VerbsError::GetCqEvent(e));
                }
            }
            self.consume_events(ch)?;
        }
    }

    /// Busy-poll until at least one completion is available (or the timeout
    /// passes), then append up to `max` to `out`.
    pub fn poll_until(
        &self,
        out: &mut Vec<WorkCompletion>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        self.poll_between(out, max, timeout, std::hint::spin_loop, SPIN_CLOCK_EVERY)
    }

    /// Polls until a completion (or the timeout), yielding the core between
    /// polls: the wait of a CQ whose channel belongs to someone else.
    fn poll_yielding(
        &self,
        out: &mut Vec<WorkCompletion>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        // A yield is a system call already: read the clock after each.
        self.poll_between(out, max, timeout, std::thread::yield_now, 1)
    }

    fn poll_between(
        &self,
        out: &mut Vec<WorkCompletion>,
        max: usize,
        timeout: Duration,
        between: fn(),
        clock_every: u32,
    ) -> Result<usize> {
        // The clock is read only every `clock_every` empty polls: where the
        // clocksource has no vDSO path (hpet, acpi_pm: QEMU under TCG) each
        // read is a system call, dearer than many polls, and a completion
        // that arrives meanwhile would wait for it.
        let mut deadline = None;
        let mut empty = 0u32;
        loop {
            let n = self.poll(out, max)?;
            if n > 0 {
                return Ok(n);
            }
            empty += 1;
            if empty % clock_every == 0 {
                let now = Instant::now();
                let d = *deadline.get_or_insert(now + timeout);
                if now >= d {
                    return Err(VerbsError::Timeout {
                        what: "a completion",
                    });
                }
            }
            between();
        }
    }

    /// [`wait`](Self::wait) in event mode, [`poll_until`](Self::poll_until)
    /// otherwise.
    pub fn next(
        &self,
        out: &mut Vec<WorkCompletion>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        if self.inner.shared_channel {
            self.poll_yielding(out, max, timeout)
        } else if self.inner.channel.is_some() {
            self.wait(out, max, timeout)
        } else {
            self.poll_until(out, max, timeout)
        }
    }

    pub(crate) fn same_as(&self, other: &CompletionQueue) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
