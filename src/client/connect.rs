//! Connecting an [`RpcClient`] to an RPC-over-RDMA server over rdma_cm
//! (feature `verbs`), with RFC 8797 private data both ways.
//!
//! The client offers its inline thresholds (send: `inline_threshold`,
//! receive: [`ClientConfig::recv_threshold`]) and whether it takes Send
//! With Invalidate; it then honours the server's answer: it sends inline no
//! more than the server can receive, and keeps receive buffers as large as
//! it offered (the server sends no more than that). A server that answers
//! with no or unusable private data is an RFC 8166 server: 1024 bytes each
//! way.

use super::{ClientConfig, ClientError, RpcClient};
use crate::rdma::{MemoryConfig, VerbsMemory, VerbsWaitQp};
use rdmaxprt_core::rpcrdma::connect_private::{self, ConnectPrivate};
use rdmaxprt_verbs::{
    CompletionChannel, CompletionQueue, ConnParams, ProtectionDomain, QpCaps, ResolvedRoute,
    VerbsError, VerbsQp,
};
use std::net::SocketAddr;
use std::time::Duration;

/// An [`RpcClient`] over real verbs.
pub type VerbsClient = RpcClient<VerbsWaitQp, VerbsMemory>;

/// How [`connect_rdma`] sets up a connection.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// The client's own settings (credits, thresholds offered, timeouts).
    pub client: ClientConfig,
    /// Registered memory of this connection.
    pub memory: MemoryConfig,
    /// Send queue depth.
    pub sq_depth: u32,
    /// rdma_cm parameters. `rnr_retry_count` is how often this client
    /// retries a Send the server answered with RNR: a server that posts its
    /// receives before accepting (svcrdma, this crate's) tells the client 0
    /// in its accept, which overrides it; against other servers 7 (retry
    /// forever) is the safe choice.
    pub conn: ConnParams,
    /// Offer to take Send With Invalidate. Only for memory that can be
    /// invalidated remotely; [`VerbsMemory`] registers plain MRs, so off.
    pub offer_remote_invalidation: bool,
    /// Address, route and connect timeout (each step).
    pub timeout: Duration,
    /// Completion channel for event-mode waits (else sleep-poll).
    pub event_mode: bool,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            memory: MemoryConfig::default(),
            sq_depth: 128,
            conn: ConnParams {
                retry_count: 6,
                ..ConnParams::default()
            },
            offer_remote_invalidation: false,
            timeout: Duration::from_secs(5),
            event_mode: true,
        }
    }
}

fn backend(op: &'static str, e: VerbsError) -> ClientError {
    use rdmaxprt_core::backend::Error as _;
    ClientError::Backend {
        op,
        kind: e.kind(),
        source: Box::new(e),
    }
}

/// What the client may use after reading the server's answer.
pub(crate) fn apply_answer(cfg: &mut ClientConfig, ours: &ConnectPrivate, answer: &[u8]) {
    let peer = connect_private::decode(answer).ok();
    let n = connect_private::negotiate(ours, peer.as_ref());
    cfg.inline_threshold = n.max_inline_send;
    // Keep the receive buffers we offered: the server sends no more.
    cfg.inline_recv_threshold = Some(ours.recv_size as usize);
}

/// Resolves `addr`, connects with RFC 8797 private data, and returns a
/// client whose thresholds follow the server's answer.
pub fn connect_rdma(addr: SocketAddr, cfg: &ConnectConfig) -> Result<VerbsClient, ClientError> {
    let route = ResolvedRoute::resolve(addr, cfg.timeout).map_err(|e| backend("resolve", e))?;
    let ctx = route.context().map_err(|e| backend("context", e))?;
    let pd = ProtectionDomain::new(&ctx).map_err(|e| backend("alloc_pd", e))?;
    let ch = cfg
        .event_mode
        .then(|| CompletionChannel::new(&ctx))
        .transpose()
        .map_err(|e| backend("create_comp_channel", e))?;
    let mut client = cfg.client.clone();
    let recv = client.recv_threshold();
    let credits = client.credits.max(1);
    let depth = |n: u32| i32::try_from(n.saturating_mul(2).saturating_add(1)).unwrap_or(i32::MAX);
    let scq = CompletionQueue::new(&ctx, depth(cfg.sq_depth), ch.as_ref())
        .map_err(|e| backend("create_cq", e))?;
    let rcq = CompletionQueue::new(&ctx, depth(credits), ch.as_ref())
        .map_err(|e| backend("create_cq", e))?;
    let caps = QpCaps {
        max_send_wr: cfg.sq_depth,
        max_recv_wr: credits,
        max_send_sge: 4,
        max_recv_sge: 1,
        max_inline_data: 0,
    };
    let size = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let ours = ConnectPrivate {
        remote_invalidation: cfg.offer_remote_invalidation,
        send_size: size(client.inline_threshold),
        recv_size: size(recv),
    };
    let conn = route
        .connect_with(
            &pd,
            &scq,
            &rcq,
            caps,
            &ours.encode(),
            &cfg.conn,
            cfg.timeout,
        )
        .map_err(|e| backend("connect", e))?;
    apply_answer(&mut client, &ours, conn.peer_private_data());
    let mem = VerbsMemory::new(&pd, cfg.memory).map_err(|e| backend("register", e))?;
    let handle = conn.handle();
    let (qp, _) = conn.into_parts();
    let qp = VerbsWaitQp::new(VerbsQp::new(qp).map_err(|e| backend("qp", e))?)
        .with_cm_connection(handle);
    RpcClient::new(qp, mem, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_follows_the_servers_answer() {
        let ours = ConnectPrivate {
            remote_invalidation: false,
            send_size: 4096,
            recv_size: 4096,
        };
        let mut c = ClientConfig {
            inline_threshold: 4096,
            ..ClientConfig::default()
        };
        // Server: sends up to 4 KiB, receives only 2 KiB.
        let answer = ConnectPrivate {
            remote_invalidation: false,
            send_size: 4096,
            recv_size: 2048,
        };
        apply_answer(&mut c, &ours, &answer.encode());
        assert_eq!(c.inline_threshold, 2048);
        assert_eq!(c.recv_threshold(), 4096);
        // No answer: RFC 8166 defaults for what we send.
        let mut c = ClientConfig {
            inline_threshold: 4096,
            ..ClientConfig::default()
        };
        apply_answer(&mut c, &ours, &[]);
        assert_eq!(c.inline_threshold, 1024);
        assert_eq!(c.recv_threshold(), 4096);
    }
}
