//! Teardown: draining the QP so no work request can touch the client's
//! memory, then unmapping and deregistering it (`rpcrdma_xprt_disconnect`,
//! `rpcrdma_ep_destroy`).

use super::RpcClient;
use crate::client::backend::RemoteMemory;
use crate::completion::CompletionWait;
use rdmaxprt_core::backend::QueuePair;

impl<Q, D> RpcClient<Q, D>
where
    Q: QueuePair + CompletionWait,
    D: RemoteMemory,
{
    /// Moves the QP to error and waits for every posted WR to complete or
    /// flush, then polls until the flushed completions stop coming (a
    /// fault injector may hold some back for a few polls): each Send
    /// buffer is unmapped as its completion is seen, each receive buffer
    /// marked unposted. Replies still queued are not processed: the calls
    /// fail anyway.
    pub(super) fn drain_and_reap(&mut self) {
        if let Err(e) = self.qp.drain_qp() {
            tracing::warn!(%e, "client drain_qp failed");
        }
        let mut wcs = [super::EMPTY_WC; 16];
        let mut quiet = 0;
        while quiet < 8 {
            let n = self.qp.poll_send(&mut wcs).unwrap_or(0);
            for wc in &wcs[..n] {
                self.sends.complete(wc.wr_id);
            }
            let m = self.qp.poll_recv(&mut wcs).unwrap_or(0);
            for wc in &wcs[..m] {
                self.recvs.complete(wc.wr_id, None, &mut self.rx);
            }
            quiet = if n + m == 0 { quiet + 1 } else { 0 };
        }
    }

    /// Teardown: drain the QP (unless a failure already did), then unmap
    /// every buffer and deregister every region. Idempotent.
    pub(super) fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        if !self.broken {
            self.broken = true;
            self.drain_and_reap();
        }
        self.torn_down = true;
        // The QP is drained: no WR can touch any of this memory now.
        self.sends.release_after_drain(&self.dev);
        self.recvs.release_after_drain(&self.dev);
        // Lent regions given back from now on are deregistered at once.
        self.chunks.close();
        self.calls.clear();
        self.in_flight = 0;
    }
}

impl<Q, D> Drop for RpcClient<Q, D>
where
    Q: QueuePair + CompletionWait,
    D: RemoteMemory,
{
    fn drop(&mut self) {
        self.teardown();
    }
}
