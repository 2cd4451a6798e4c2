//! The passes over a transport (`svc_recv` / `svc_process` / `svc_send`):
//! a worker thread's loop over the ready queue (thread pool), and the pass
//! itself, which a poll group runs on its own thread.

use super::pollgroup::RunQueue;
use super::{lock, Entry, RtError, Shared};
use rdmaxprt_core::transport::{OwnedCall, RecvdCall};
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    e.hook.enqueue();
}

pub(crate) fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut q = lock(&shared.ready);
            let mut slept = false;
            loop {
                if let Some(j) = q.pop_front() {
                    if slept {
                        shared.worker_wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                    break j;
                }
                if shared.exit.load(Ordering::Acquire) {
                    return;
                }
                q = shared.ready_cv.wait(q).unwrap_or_else(|p| p.into_inner());
                slept = true;
            }
        };
        match job {
            Job::Xprt(entry) => handle(shared, entry),
            Job::Call(entry, call) => answer(shared, &entry, &RecvdCall::from(call)),
        }
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
            received(&entry);
            if shared.handoff
                && RunQueue::on_a_group_thread()
                && shared.dispatcher.blocks(call.msg())
            {
                shared.handoffs.fetch_add(1, Ordering::Relaxed);
                // The call cannot take the transport's buffer along: its
                // message is copied out (blocking programs only).
                let call = call.detach();
                lock(&shared.ready).push_back(Job::Call(Arc::clone(&entry), call));
                shared.ready_cv.notify_one();
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

/// Dispatches a received call, sends the reply, releases (the rest of a
/// pass after `svc_xprt_received`).
fn answer(shared: &Shared, entry: &Entry, call: &RecvdCall<'_>) {
    let x = entry.xprt();
    if let Some(reply) = shared.dispatcher.dispatch(call.msg()) {
        let parts: [&[u8]; 2] = [&reply.header, &reply.body.results];
        match x.sendto(call, &parts, reply.bulk(call.msg())) {
            Ok(()) | Err(RtError::ReplyRejected(_)) | Err(RtError::Closed) => {}
            Err(e) => {
                tracing::warn!(id = entry.id, %e, "sendto failed: closing");
                x.close();
            }
        }
    }
    x.release_ctxt();
    // The reply may have grown the send-context pool.
    shared.sweeper.poke();
}
