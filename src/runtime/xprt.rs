//! What the runtime needs of a transport, object-safe so one server can
//! mix backends and release policies.

use rdmaxprt_core::backend::{DmaDevice, ErrorKind, QueuePair};
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::pool::Census;
use rdmaxprt_core::stats::StatsSnapshot;
use rdmaxprt_core::transport::{
    RecvdCall, SvcRdmaXprt, TeardownReport, XprtCountersSnapshot, XprtError,
};
use rdmaxprt_core::wait::WaitQueue;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::time::Duration;

pub use crate::completion::CompletionWait;

/// A transport failure as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtError {
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
    /// The reply could not be sent but the connection lives (the client
    /// was answered with RDMA_ERROR).
    #[error("reply not sent: {0}")]
    ReplyRejected(String),
    /// A backend failure that ends the connection.
    #[error("backend failure ({kind}): {msg}")]
    Fatal {
        /// Backend-independent class.
        kind: ErrorKind,
        /// The backend's message.
        msg: String,
    },
}

fn rt_err<E: rdmaxprt_core::backend::Error>(e: XprtError<E>) -> RtError {
    match e {
        XprtError::Closed => RtError::Closed,
        XprtError::Backend(b) => RtError::Fatal {
            kind: b.kind(),
            msg: b.to_string(),
        },
        e @ (XprtError::ReplyTooLarge { .. } | XprtError::WriteChunkTooSmall { .. }) => {
            RtError::ReplyRejected(e.to_string())
        }
        e => RtError::Fatal {
            kind: ErrorKind::Other,
            msg: e.to_string(),
        },
    }
}

/// The transport operations a worker and a poller use.
pub trait ServerXprt: Send + Sync {
    /// Transport flags.
    fn flags(&self) -> &XprtFlags;
    /// Whether the SQ has room (no one waiting for space).
    fn has_wspace(&self) -> bool;
    /// Next call, if any (caller holds BUSY).
    fn recvfrom(&self) -> Result<Option<RecvdCall<'_>>, RtError>;
    /// Sends a reply.
    fn sendto(
        &self,
        call: &RecvdCall<'_>,
        reply: &[&[u8]],
        payload: Option<&[u8]>,
    ) -> Result<(), RtError>;
    /// Drains the send release list.
    fn release_ctxt(&self) -> usize;
    /// Polls completions.
    fn poll(&self, budget: usize) -> Result<usize, RtError>;
    /// Sleeps until completions may be pollable.
    fn wait_for_completions(&self, timeout: Duration) -> bool;
    /// Has the QP call `ring` when completions may be pollable; `false` if
    /// the backend cannot (see [`CompletionWait::set_completion_notifier`]).
    fn set_completion_notifier(&self, ring: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool;
    /// Arms completion notification on the QP's completion channel (see
    /// [`CompletionWait::arm_completions`]).
    fn arm_completions(&self) -> bool;
    /// Starts closing.
    fn close(&self);
    /// Send-context counters.
    fn stats(&self) -> StatsSnapshot;
    /// Transport counters (calls, error replies, drops, partial posts).
    fn counters(&self) -> XprtCountersSnapshot;
    /// Where the send contexts are right now (walks the pool: a report,
    /// not a hot path).
    fn census(&self) -> Census;
    /// Tears down (QP drain, release, unmap).
    fn free(self: Box<Self>) -> TeardownReport;
    /// A counter that moves whenever a send context is used (see
    /// [`SvcRdmaXprt::activity`]); 0 if the transport does not track it.
    fn activity(&self) -> u64 {
        0
    }
    /// The idle shrink (see [`SvcRdmaXprt::shrink_idle`]); 0 if the
    /// transport does not shrink.
    fn shrink_idle(&self) -> usize {
        0
    }
    /// Whether the send-context pool is above its idle floor.
    fn above_idle_floor(&self) -> bool {
        false
    }
}

type DevErr<L> = <<L as SendCtxtLifecycle>::Dev as rdmaxprt_core::backend::ErrorType>::Error;

impl<L, Q, E, W> ServerXprt for SvcRdmaXprt<L, Q, E, W>
where
    W: WaitQueue,
    L: SendCtxtLifecycle,
    L::Dev: DmaDevice + Send + Sync,
    <L::Dev as DmaDevice>::Buf: Send,
    DevErr<L>: Send,
    Q: QueuePair<Error = DevErr<L>> + CompletionWait + Send + Sync,
    E: Enqueue,
{
    fn flags(&self) -> &XprtFlags {
        SvcRdmaXprt::flags(self)
    }
    fn has_wspace(&self) -> bool {
        SvcRdmaXprt::has_wspace(self)
    }
    fn recvfrom(&self) -> Result<Option<RecvdCall<'_>>, RtError> {
        SvcRdmaXprt::recvfrom(self).map_err(rt_err)
    }
    fn sendto(
        &self,
        call: &RecvdCall<'_>,
        reply: &[&[u8]],
        payload: Option<&[u8]>,
    ) -> Result<(), RtError> {
        SvcRdmaXprt::sendto(self, call, reply, payload).map_err(rt_err)
    }
    fn release_ctxt(&self) -> usize {
        SvcRdmaXprt::release_ctxt(self)
    }
    fn poll(&self, budget: usize) -> Result<usize, RtError> {
        SvcRdmaXprt::poll(self, budget).map_err(rt_err)
    }
    fn wait_for_completions(&self, timeout: Duration) -> bool {
        self.qp().wait_for_completions(timeout)
    }
    fn set_completion_notifier(&self, ring: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        self.qp().set_completion_notifier(ring)
    }
    fn arm_completions(&self) -> bool {
        self.qp().arm_completions()
    }
    fn close(&self) {
        SvcRdmaXprt::close(self)
    }
    fn stats(&self) -> StatsSnapshot {
        self.send_lifecycle().stats().snapshot()
    }
    fn counters(&self) -> XprtCountersSnapshot {
        SvcRdmaXprt::counters(self).snapshot()
    }
    fn census(&self) -> Census {
        self.send_lifecycle().pool().census()
    }
    fn free(self: Box<Self>) -> TeardownReport {
        SvcRdmaXprt::free(*self)
    }
    fn activity(&self) -> u64 {
        SvcRdmaXprt::activity(self)
    }
    fn shrink_idle(&self) -> usize {
        SvcRdmaXprt::shrink_idle(self)
    }
    fn above_idle_floor(&self) -> bool {
        SvcRdmaXprt::above_idle_floor(self)
    }
}
