//! The passes over a transport (`svc_recv` / `svc_process` / `svc_send`):
//! a worker thread's loop over the ready queue (thread pool), and the pass
//! itself, which a poll group runs on its own thread.

use super::pollgroup::RunQueue;
use super::{lock, Entry, RtError, Shared};
use crate::service::ReplyBody;
use rdmaxprt_core::transport::{OwnedCall, RecvdCall};
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

thread_local! {
    /// This thread's last reply body, recycled into its next dispatch (a
    /// procedure's results reuse one `Vec`'s capacity per worker or group
    /// thread, not an allocation per call).
    static REPLY_BODY: Cell<ReplyBody> = Cell::new(ReplyBody::default());
}

/// Passes a worker (or a poll group) runs in a row on one transport whose
/// next call is already queued before it takes the queue's head (see
/// `ReadyQueue::take_after` and `RunQueue::run`).
pub(crate) const STREAK: usize = 8;

/// Work for a worker thread.
pub(crate) enum Job {
    /// A transport to run a pass on (thread pool).
    Xprt(Arc<Entry>),
    /// A received call of a blocking program to dispatch and answer
    /// (handed off by a poll group; its message copied out of the
    /// transport's buffer, which stays with the group).
    Call(Arc<Entry>, OwnedCall),
}

/// `svc_xprt_received`: let another worker take the transport.
pub(crate) fn received(e: &Entry) {
    e.hook.flags.clear(XprtFlags::BUSY);
    e.hook.enqueue_from(true);
}

pub(crate) fn worker(shared: &Shared) {
    let _registered = shared.ready.worker();
    super::poller::defer_rings();
    let mut streak = 0;
    let mut next = shared.ready.take();
    while let Some(job) = next {
        next = match job {
            Job::Xprt(entry) => {
                let id = entry.id;
                // The pass takes the worker's reference along: a worker
                // that then sleeps holds no transport.
                handle(shared, entry);
                let same = |j: &Job| matches!(j, Job::Xprt(e) if e.id == id);
                shared.ready.take_after(same, &mut streak, STREAK)
            }
            Job::Call(entry, call) => {
                // Handed off because its program blocks.
                let blocking = blocking_call(shared);
                answer(shared, &entry, &RecvdCall::from(call));
                drop(blocking);
                // Not held while this worker sleeps for its next job.
                drop(entry);
                shared.ready.take()
            }
        };
    }
}

/// One pass over a transport (a worker's in the thread pool, its group's
/// in poll-group mode): retire it on CLOSE, else take one call, let
/// another pass take the next (`svc_xprt_received`), dispatch, reply,
/// release.
pub(crate) fn handle(shared: &Shared, entry: Arc<Entry>) {
    shared.passes.fetch_add(1, Ordering::Relaxed);
    let x = entry.xprt();
    let flags = x.flags();
    if flags.test(XprtFlags::CLOSE) {
        // Keep BUSY set: nobody schedules a closing transport again. The
        // poller exits on CLOSE; the last Arc frees it.
        x.close();
        let gone = lock(&shared.registry).remove(entry.id);
        drop(gone);
        if let Some(f) = entry.on_close.get() {
            f();
        }
        return;
    }
    match x.recvfrom() {
        Ok(Some(call)) => {
            // A worker that took a call of a program that does not block
            // is back at the ready queue within one call's time and takes
            // this transport's next call itself (`ReadyQueue::take_after`),
            // so the re-enqueue wakes no idle worker for it; a blocking
            // program's call may hold this worker for long, so (marked
            // blocking first) its next call wakes another, as the kernel's
            // svc_xprt_received always does.
            let group = RunQueue::on_a_group_thread();
            let blocks = shared.dispatcher.blocks(call.msg());
            let _blocking = (blocks && !group).then(|| blocking_call(shared));
            received(&entry);
            if shared.handoff && group && blocks {
                shared.handoffs.fetch_add(1, Ordering::Relaxed);
                // The call cannot take the transport's buffer along: its
                // message is copied out (blocking programs only).
                let call = call.detach();
                shared.ready.push(Job::Call(Arc::clone(&entry), call));
                return;
            }
            answer(shared, &entry, &call);
        }
        Ok(None) => {
            received(&entry);
            x.release_ctxt();
            shared.sweeper.poke();
        }
        Err(e) => {
            tracing::debug!(id = entry.id, %e, "recvfrom failed: closing");
            x.close();
            flags.clear(XprtFlags::BUSY);
            entry.hook.enqueue();
        }
    }
}

/// Marks this worker as inside a blocking program's call (see
/// `ReadyQueue::blocking`), after ringing the doorbells it deferred: it may
/// wait long, and on anything.
fn blocking_call(shared: &Shared) -> super::pool::BlockingGuard<'_, Job> {
    super::poller::flush_rings();
    shared.ready.blocking()
}

/// Dispatches a received call, sends the reply, releases (the rest of a
/// pass after `svc_xprt_received`).
fn answer(shared: &Shared, entry: &Entry, call: &RecvdCall<'_>) {
    let x = entry.xprt();
    let body = REPLY_BODY.with(Cell::take);
    if let Some(reply) = shared.dispatcher.dispatch_reusing(call.msg(), body) {
        let parts: [&[u8]; 2] = [&reply.header, &reply.body.results];
        match x.sendto(call, &parts, reply.bulk(call.msg())) {
            Ok(()) | Err(RtError::ReplyRejected(_)) | Err(RtError::Closed) => {}
            Err(e) => {
                tracing::warn!(id = entry.id, %e, "sendto failed: closing");
                x.close();
            }
        }
        REPLY_BODY.with(|b| b.set(reply.recycle()));
    }
    x.release_ctxt();
    // The reply may have grown the send-context pool.
    shared.sweeper.poke();
}
