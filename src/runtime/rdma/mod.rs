//! Serving RPC-over-RDMA clients over rdma_cm (feature `verbs`), the way
//! svcrdma accepts them.
//!
//! [`Server::listen_rdma`] binds an rdma_cm listener and starts one thread
//! that reads every CM event of the listener and of the connections it
//! accepted (one event channel, as the kernel's CM handler). For each
//! connect request it:
//! 1. refuses it (`rdma_reject`) if [`ListenConfig::max_connections`]
//!    transports are live;
//! 2. reads the client's RFC 8797 private data and negotiates this
//!    connection's inline thresholds and remote invalidation (no or
//!    malformed data: the RFC 8166 defaults, counted, never an error);
//! 3. takes the device's shared resources (context, PD, registered memory:
//!    one set per device, made at the first connection), creates the QP
//!    with its two CQs on a poller thread's completion channel;
//! 4. builds the transport, which posts its receives, and only then
//!    `rdma_accept`s with the server's private data and
//!    `rnr_retry_count` 0 (the client never needs an RNR retry: receives
//!    are always posted before its first Send can arrive).
//!
//! Later events close the transport: DISCONNECTED, DEVICE_REMOVAL,
//! TIMEWAIT_EXIT and connection errors set CLOSE and enqueue it; a worker
//! retires it and the last holder frees it in svc_rdma_free's order
//! (disconnect, drain the QP, drain the release list, unmap, destroy). A
//! dead client keeps nothing.
//!
//! Threads: one CM thread per listener, `ServerConfig::pollers` completion
//! poller threads per device (each sleeping on its channel, no timer), and
//! the workers. None per connection.

mod group;
mod wake;

pub(crate) use group::ChannelGroup;

use super::{lock, Placement, Server, ServerMode};
use crate::rdma::{Accounting, MemoryConfig, VerbsMemory, VerbsWaitQp};
use rdmaxprt_core::rpcrdma::connect_private::{self, ConnectPrivate};
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_verbs::{
    CmListener, CompletionChannel, CompletionQueue, ConnEvent, ConnParams, ConnectRequest, Context,
    ListenerEvent, ProtectionDomain, QpCaps, VerbsError, VerbsQp,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use wake::{wait_readable, Wake};

/// How a listener accepts connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenConfig {
    /// Live transports above which connect requests are rejected.
    pub max_connections: usize,
    /// Largest inline message the server will send (offered to clients in
    /// the accept's private data; 4096, svcrdma's default).
    pub inline_send: u32,
    /// Largest inline message the server can receive (its receive buffer
    /// size; 4096).
    pub inline_recv: u32,
    /// Send queue depth per connection.
    pub sq_depth: u32,
    /// Most RDMA Reads in flight per connection (and served for the peer),
    /// capped by what the peer offers.
    pub max_rd_atomic: u8,
    /// Registered memory per device, shared by its connections (default:
    /// 4,096 chunks of 4 KiB and 8 of 2 MiB, 32 MiB; a connection with 64
    /// credits keeps about 140 small chunks posted for receives).
    pub memory: MemoryConfig,
    /// `rdma_listen` backlog.
    pub backlog: i32,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            inline_send: 4096,
            inline_recv: 4096,
            sq_depth: 128,
            max_rd_atomic: 16,
            memory: MemoryConfig {
                small_chunk: 4096,
                small_chunks: 4096,
                large_chunk: 2 << 20,
                large_chunks: 8,
            },
            backlog: 128,
        }
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// rdma_cm or verbs refused (bind, listen, channel).
    #[error("rdma_cm listener: {0}")]
    Verbs(#[from] VerbsError),
    /// A thread or eventfd could not be created.
    #[error("listener thread: {0}")]
    Io(#[from] std::io::Error),
    /// The transport could not be built on the new connection.
    #[error("transport setup: {0}")]
    Transport(#[from] super::RtError),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Stopped,
}

/// What a listener did, readable at run time ([`RdmaListener::counters`]).
#[derive(Debug, Default)]
pub struct ListenCounters {
    /// Connect requests received (each ends accepted, rejected at the
    /// limit, or failed).
    pub requests: AtomicU64,
    /// Connect requests accepted.
    pub accepted: AtomicU64,
    /// Connect requests rejected at `max_connections`.
    pub rejected_limit: AtomicU64,
    /// Connect requests that failed while being set up (rejected).
    pub setup_failed: AtomicU64,
    /// Requests that carried no RFC 8797 private data (RFC 8166 defaults).
    pub private_data_absent: AtomicU64,
    /// Requests whose private data was unusable (RFC 8166 defaults).
    pub private_data_malformed: AtomicU64,
    /// Connections that reached ESTABLISHED.
    pub established: AtomicU64,
    /// Transports closed by a CM event (disconnect, device removal, error).
    pub closed_by_cm: AtomicU64,
}

/// A running rdma_cm listener of a [`Server`]; it stops when the server
/// shuts down.
#[derive(Debug)]
pub struct RdmaListener {
    addr: SocketAddr,
    counters: Arc<ListenCounters>,
    memories: Arc<Mutex<Vec<VerbsMemory>>>,
}

impl ListenCounters {
    /// Whether every connect request received so far has been dealt with
    /// (none is being set up right now).
    pub fn settled(&self) -> bool {
        let l = |c: &AtomicU64| c.load(Ordering::Acquire);
        l(&self.requests) == l(&self.accepted) + l(&self.rejected_limit) + l(&self.setup_failed)
    }
}

impl RdmaListener {
    /// The address it was bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn counters(&self) -> &ListenCounters {
        &self.counters
    }

    /// Buffers and mappings live in the registered memory of the devices
    /// it serves (summed): with no connection live, what the server itself
    /// keeps; after connections come and go it must return to that.
    pub fn memory(&self) -> Accounting {
        let mut a = Accounting::default();
        for m in lock(&self.memories).iter() {
            let b = m.accounting();
            a.live_bufs += b.live_bufs;
            a.live_mappings += b.live_mappings;
            a.live_regions += b.live_regions;
            a.bad_unmaps += b.bad_unmaps;
        }
        a
    }
}

/// The server's handle on a listener thread.
pub(crate) struct ListenerStop {
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    thread: JoinHandle<()>,
}

impl ListenerStop {
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.wake.ring();
        let _ = self.thread.join();
    }
}

/// One device's shared resources.
struct DeviceRes {
    ctx: Context,
    pd: ProtectionDomain,
    mem: VerbsMemory,
    groups: Vec<Arc<ChannelGroup>>,
}

/// The listener thread's state.
struct CmServer {
    server: Weak<Server>,
    cfg: ListenConfig,
    counters: Arc<ListenCounters>,
    devices: HashMap<usize, DeviceRes>,
    memories: Arc<Mutex<Vec<VerbsMemory>>>,
}

impl Server {
    /// Listens for RPC-over-RDMA clients on `addr` (rdma_cm; on rxe the
    /// address of the netdev carrying the device, not loopback) and serves
    /// every connection it accepts, the way svcrdma does. For each connect
    /// request it rejects at [`ListenConfig::max_connections`], negotiates
    /// the inline thresholds and remote invalidation from the client's RFC
    /// 8797 private data (none or unusable: the RFC 8166 defaults,
    /// counted), builds the QP and the transport (posting its receives)
    /// on the device's shared PD and registered memory, and only then
    /// accepts, with `rnr_retry_count` 0. DISCONNECTED, DEVICE_REMOVAL,
    /// TIMEWAIT_EXIT and connection errors close the transport, which is
    /// then freed in svc_rdma_free's order. Completions are served by
    /// `ServerConfig::pollers` threads per device, sleeping on completion
    /// channels; CM events by one thread per listener. Returns once the
    /// listener is bound (and a bound device is set up).
    pub fn listen_rdma(
        self: &Arc<Self>,
        addr: SocketAddr,
        cfg: ListenConfig,
    ) -> Result<RdmaListener, ListenError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(ListenError::Stopped);
        }
        let listener = CmListener::bind(addr, cfg.backlog)?;
        let counters = Arc::new(ListenCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Wake::new()?);
        let memories = Arc::new(Mutex::new(Vec::new()));
        let mut cm = CmServer {
            server: Arc::downgrade(self),
            cfg,
            counters: counters.clone(),
            devices: HashMap::new(),
            memories: memories.clone(),
        };
        // Bound to a device's address: set the device up now (its memory
        // registration is the slow part), not in the first client's
        // connect.
        if let Some(ctx) = listener.context() {
            cm.device(self, ctx)?;
        }
        let (s, w) = (stop.clone(), wake.clone());
        let thread = std::thread::Builder::new()
            .name("rdmaxprt-cm".into())
            .spawn(move || cm.run(&listener, &s, &w))?;
        lock(&self.listeners).push(ListenerStop { stop, wake, thread });
        Ok(RdmaListener {
            addr,
            counters,
            memories,
        })
    }

    /// Starts a completion-poller thread on a new channel of `ctx`.
    fn spawn_channel_group(&self, ctx: &Context) -> Result<Arc<ChannelGroup>, ListenError> {
        let poll_group = self.cfg.mode == ServerMode::PollGroup;
        let group = Arc::new(ChannelGroup::new(CompletionChannel::new(ctx)?, poll_group)?);
        let (g, shared) = (group.clone(), self.shared.clone());
        let budget = self.cfg.poll_budget;
        let n = lock(&self.chan_groups).len();
        let t = std::thread::Builder::new()
            .name(format!("rdmaxprt-cq{n}"))
            .spawn(move || g.run(&shared, budget))?;
        lock(&self.pollers).push(t);
        lock(&self.chan_groups).push(group.clone());
        Ok(group)
    }
}

impl CmServer {
    fn run(&mut self, listener: &CmListener, stop: &AtomicBool, wake: &Wake) {
        let fds = [listener.fd(), wake.fd()];
        while !stop.load(Ordering::Acquire) {
            wake.reset();
            loop {
                match listener.next_event() {
                    Ok(Some(ev)) => self.on_event(ev),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(%e, "reading rdma_cm events failed: listener stops");
                        return;
                    }
                }
            }
            if stop.load(Ordering::Acquire) {
                break;
            }
            wait_readable(&fds);
        }
    }

    fn on_event(&mut self, ev: ListenerEvent) {
        match ev {
            ListenerEvent::ConnectRequest(req) => self.on_request(req),
            ListenerEvent::Connection { token, event } => {
                if event == ConnEvent::Established {
                    self.counters.established.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tracing::debug!(id = token, ?event, "connection event: closing");
                let closed = self
                    .server
                    .upgrade()
                    .is_some_and(|s| s.close_transport(token));
                if closed {
                    self.counters.closed_by_cm.fetch_add(1, Ordering::Relaxed);
                }
            }
            ListenerEvent::Listener { event, status } => {
                tracing::warn!(%event, status, "event on the listening id");
            }
            _ => {}
        }
    }

    fn on_request(&mut self, req: ConnectRequest) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let Some(server) = self.server.upgrade() else {
            let _ = req.reject(&[]);
            return;
        };
        if server.live_transports() >= self.cfg.max_connections {
            self.counters.rejected_limit.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                limit = self.cfg.max_connections,
                "connection limit: rejected"
            );
            let _ = req.reject(&[]);
            return;
        }
        match self.setup(&server, &req) {
            Ok((id, reply, params)) => match req.accept_with(&params, &reply) {
                Ok(()) => {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(id, %e, "rdma_accept failed");
                    self.counters.setup_failed.fetch_add(1, Ordering::Relaxed);
                    server.close_transport(id);
                }
            },
            Err(e) => {
                tracing::warn!(%e, "connection setup failed: rejected");
                self.counters.setup_failed.fetch_add(1, Ordering::Relaxed);
                let _ = req.reject(&[]);
            }
        }
    }

    /// The client's private data, counted when absent or unusable.
    fn peer_private(&self, data: &[u8]) -> Option<ConnectPrivate> {
        // A CM may pad absent data with zeros: that is "none" too.
        if data.iter().all(|&b| b == 0) {
            self.counters
                .private_data_absent
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match connect_private::decode(data) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(%e, "unusable private data: RFC 8166 defaults");
                self.counters
                    .private_data_malformed
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn device(&mut self, server: &Server, ctx: Context) -> Result<&DeviceRes, ListenError> {
        let key = ctx.as_raw() as usize;
        if !self.devices.contains_key(&key) {
            let pd = ProtectionDomain::new(&ctx)?;
            let mem = VerbsMemory::new(&pd, self.cfg.memory)?;
            lock(&self.memories).push(mem.clone());
            let threads = match server.cfg.mode {
                ServerMode::PollGroup => server.cfg.group_threads(),
                _ => server.cfg.pollers.max(1),
            };
            let groups = (0..threads)
                .map(|_| server.spawn_channel_group(&ctx))
                .collect::<Result<Vec<_>, _>>()?;
            tracing::info!(device = ctx.name(), pollers = groups.len(), "device set up");
            self.devices.insert(
                key,
                DeviceRes {
                    ctx,
                    pd,
                    mem,
                    groups,
                },
            );
        }
        Ok(&self.devices[&key])
    }

    /// Negotiates, builds the QP and the transport (receives posted);
    /// returns the id, the accept's private data and parameters.
    fn setup(
        &mut self,
        server: &Server,
        req: &ConnectRequest,
    ) -> Result<(u64, [u8; 8], ConnParams), ListenError> {
        let cfg = self.cfg;
        let peer = self.peer_private(req.private_data());
        let ours = ConnectPrivate {
            remote_invalidation: false,
            send_size: cfg.inline_send,
            recv_size: cfg.inline_recv,
        };
        let neg = connect_private::negotiate(&ours, peer.as_ref());
        let dev = self.device(server, req.context()?)?;
        // The least loaded poller thread of the device.
        let group = dev
            .groups
            .iter()
            .min_by_key(|g| g.len())
            .cloned()
            .ok_or(ListenError::Stopped)?;
        let id = server.alloc_id()?;
        let key = group.reserve();
        let r = Self::build(server, dev, &group, req, cfg, neg, (id, key));
        if r.is_err() {
            group.cancel(key);
            server.cancel_id(id);
        }
        r
    }

    /// [`setup`](Self::setup) once the transport id and the group's key
    /// (`ids`) are reserved.
    fn build(
        server: &Server,
        dev: &DeviceRes,
        group: &Arc<ChannelGroup>,
        req: &ConnectRequest,
        cfg: ListenConfig,
        neg: connect_private::Negotiated,
        (id, key): (u64, u64),
    ) -> Result<(u64, [u8; 8], ConnParams), ListenError> {
        req.set_token(id);
        let x = XprtConfig {
            max_inline_recv: neg.max_inline_recv,
            max_inline_send: neg.max_inline_send,
            send_with_invalidate: neg.remote_invalidation,
            // The device's memory hands out whole chunks from pools every
            // connection shares, already registered: keep no idle landing
            // or staging buffer (one connection would hold chunks others
            // need; taking one again costs no registration).
            keep_bufs: 0,
            ..server.cfg.xprt
        };
        let rq = x
            .credits
            .saturating_mul(2)
            .saturating_add(x.recv_batch)
            .max(1);
        let caps = QpCaps {
            max_send_wr: cfg.sq_depth,
            max_recv_wr: rq,
            max_send_sge: 8,
            max_recv_sge: 1,
            max_inline_data: 0,
        };
        let depth =
            |n: u32| i32::try_from(n.saturating_mul(2).saturating_add(1)).unwrap_or(i32::MAX);
        let scq =
            CompletionQueue::with_user(&dev.ctx, depth(cfg.sq_depth), Some(&group.channel), key)?;
        let rcq = CompletionQueue::with_user(&dev.ctx, depth(rq), Some(&group.channel), key)?;
        let qp = req.create_qp(&dev.pd, &scq, &rcq, caps)?;
        let qp = VerbsWaitQp::new(VerbsQp::new(qp)?)
            .allow_remote_invalidation(neg.remote_invalidation)
            .with_cm_connection(req.handle());
        server.accept_placed(
            dev.mem.clone(),
            qp,
            x,
            id,
            Placement::Channel(group.clone(), key),
        )?;
        let reply = ConnectPrivate {
            remote_invalidation: false,
            send_size: neg.max_inline_send as u32,
            recv_size: neg.max_inline_recv as u32,
        }
        .encode();
        // rdma_cm reports the peer's offer from our side: initiator_depth
        // is how many Reads we may have outstanding against it.
        let (responder, initiator) = req.peer_resources();
        let params = ConnParams {
            responder_resources: responder.min(cfg.max_rd_atomic),
            initiator_depth: initiator.min(cfg.max_rd_atomic),
            retry_count: 7,
            rnr_retry_count: 0,
        };
        tracing::info!(
            id,
            inline_send = neg.max_inline_send,
            inline_recv = neg.max_inline_recv,
            remote_invalidation = neg.remote_invalidation,
            "accepting"
        );
        Ok((id, reply, params))
    }
}
