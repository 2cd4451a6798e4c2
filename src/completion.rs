//! Sleeping until a queue pair has a completion to poll, and being told
//! when it may have one: what the server's pollers and the client's waits
//! need of a backend beyond core's
//! [`QueuePair`](rdmaxprt_core::backend::QueuePair). Implemented for the
//! mock NIC (feature `mock`) and for real verbs (`rdma::VerbsWaitQp`,
//! feature `verbs`).

use core::time::Duration;

/// Sleeping until a completion is queued, so a waiting client or a
/// server's poller does not spin.
pub trait CompletionWait {
    /// Blocks until a send or receive completion of this QP can be polled
    /// or `timeout` passes; returns whether one can.
    fn wait_for_completions(&self, timeout: Duration) -> bool;

    /// Asks the QP to call `ring` whenever a completion may have been
    /// queued, so one poller thread can sleep for many QPs. Returns whether
    /// the backend supports it (the default: no; the server runtime then
    /// gives the QP a poller thread of its own).
    fn set_completion_notifier(&self, ring: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        let _ = ring;
        false
    }

    /// Arms the QP's completion notification (`ibv_req_notify_cq` on both
    /// CQs) so the next completion signals the completion channel the CQs
    /// were created on. Returns `false` if the backend has no such channel
    /// (the default), or arming failed. A caller polls again after arming:
    /// a completion queued before the arm does not signal.
    fn arm_completions(&self) -> bool {
        false
    }
}

#[cfg(feature = "mock")]
mod mock {
    use super::CompletionWait;
    use core::time::Duration;
    use rdmaxprt_mock::MockQp;

    impl CompletionWait for MockQp {
        fn wait_for_completions(&self, timeout: Duration) -> bool {
            MockQp::wait_for_completions(self, timeout)
        }

        fn set_completion_notifier(&self, ring: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
            MockQp::set_completion_notifier(self, Some(ring));
            true
        }
    }
}
