//! Connection setup through librdmacm (`rdma_cm`): listen/accept and
//! connect, carrying private data bytes (RPC-over-RDMA's CM private data,
//! RFC 8797, rides here).
//!
//! Every CM id gets an event channel of its own (accepted ids are migrated
//! off the listener's channel), so waiting for one connection's events never
//! consumes another's. Channels are non-blocking and waited on with
//! `poll(2)`, so every wait has a timeout.
//!
//! Private data: at most [`MAX_CONNECT_PRIVATE_DATA`] bytes with a connect
//! and [`MAX_ACCEPT_PRIVATE_DATA`] with an accept (RoCE/IB CM). The receiver
//! may see the data padded with zeros to the full size of the CM message, so
//! a protocol must carry its own length or a fixed layout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdma_sys as sys;

use crate::cq::CompletionQueue;
use crate::device::Context;
use crate::error::{errno_from_ret, last_errno, Result, VerbsError};
use crate::pd::ProtectionDomain;
use crate::qp::{init_attr, QpCaps, QueuePair};

/// Private data bytes a connect request can carry (IB CM REQ minus the
/// rdma_cm header).
pub const MAX_CONNECT_PRIVATE_DATA: usize = 56;
/// Private data bytes an accept can carry (IB CM REP).
pub const MAX_ACCEPT_PRIVATE_DATA: usize = 196;

/// An `rdma_event_channel`, destroyed after the last id on it (each id
/// holds an Arc).
pub(crate) struct CmChannel {
    pub(crate) ch: *mut sys::rdma_event_channel,
}

// SAFETY: librdmacm's channel calls are thread safe; the channel is freed
// only in Drop, after the last Arc (every id on it holds one).
unsafe impl Send for CmChannel {}
// SAFETY: as above.
unsafe impl Sync for CmChannel {}

impl Drop for CmChannel {
    fn drop(&mut self) {
        // SAFETY: every id on the channel held an Arc to it and is destroyed.
        unsafe { sys::rdma_destroy_event_channel(self.ch) };
    }
}

/// An `rdma_cm_id` on an event channel (its own, or a listener's shared
/// one); destroyed when the last holder (QP, borrowed context, listener) is
/// gone, and its channel after its last id.
pub(crate) struct CmIdHandle {
    id: *mut sys::rdma_cm_id,
    pub(crate) ch: Arc<CmChannel>,
}

// SAFETY: librdmacm calls on an id are thread safe; the pointer is freed
// only in Drop, after the last Arc.
unsafe impl Send for CmIdHandle {}
// SAFETY: as above.
unsafe impl Sync for CmIdHandle {}

impl Drop for CmIdHandle {
    fn drop(&mut self) {
        // SAFETY: every event of this id is acked as soon as it is read
        // (wait_event, next_event), so rdma_destroy_id waits at most for a
        // reader that is about to ack; the QP on it was destroyed by the
        // QueuePair holding this handle. The channel goes with its last Arc.
        unsafe {
            if sys::rdma_destroy_id(self.id) != 0 {
                tracing::warn!(error = %last_errno(), "rdma_destroy_id failed");
            }
        }
    }
}

/// What an awaited CM event carried.
struct Event {
    private_data: Vec<u8>,
    /// For CONNECT_REQUEST: the new id (on the listener's channel).
    conn_id: *mut sys::rdma_cm_id,
}

/// A copy of the private data a connection event carries.
///
/// # Safety
/// `conn` must be the `param.conn` of an event not yet acknowledged (its
/// private data pointer is valid until the ack).
pub(crate) unsafe fn private_data_of(conn: &sys::rdma_conn_param) -> Vec<u8> {
    if conn.private_data.is_null() || conn.private_data_len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract: the pointer names
    // `private_data_len` bytes until the event is acked.
    unsafe {
        std::slice::from_raw_parts(
            conn.private_data.cast::<u8>(),
            conn.private_data_len as usize,
        )
    }
    .to_vec()
}

pub(crate) fn event_name(e: u32) -> String {
    // SAFETY: rdma_event_str accepts any value and returns a static string.
    let p = unsafe { sys::rdma_event_str(e) };
    if p.is_null() {
        return format!("event {e}");
    }
    // SAFETY: non-null static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn new_channel() -> Result<*mut sys::rdma_event_channel> {
    // SAFETY: no arguments; returns an owned channel or null.
    let ch = unsafe { sys::rdma_create_event_channel() };
    if ch.is_null() {
        return Err(VerbsError::CmCreateEventChannel(last_errno()));
    }
    // SAFETY: ch is live; fd is its descriptor; fcntl has no memory effects.
    let ok = unsafe {
        let fd = (*ch).fd;
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if !ok {
        let e = last_errno();
        // SAFETY: ch is ours and has no ids.
        unsafe { sys::rdma_destroy_event_channel(ch) };
        return Err(VerbsError::CmCreateEventChannel(e));
    }
    Ok(ch)
}

pub(crate) fn to_sockaddr(addr: SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; zeroed is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
        }
    }
    ss
}

impl CmIdHandle {
    pub(crate) fn new() -> Result<Arc<Self>> {
        let ch = Arc::new(CmChannel { ch: new_channel()? });
        let mut id: *mut sys::rdma_cm_id = std::ptr::null_mut();
        // SAFETY: ch is live; id is a valid out-pointer; RC over the TCP port space.
        let ret = unsafe {
            sys::rdma_create_id(
                ch.ch,
                &mut id,
                std::ptr::null_mut(),
                sys::rdma_port_space::RDMA_PS_TCP,
            )
        };
        if ret != 0 {
            return Err(VerbsError::CmCreateId(last_errno()));
        }
        Ok(Arc::new(Self { id, ch }))
    }

    /// Take over `id` (from a CONNECT_REQUEST) onto a fresh channel.
    fn adopt(id: *mut sys::rdma_cm_id) -> Result<Arc<Self>> {
        let ch = match new_channel() {
            Ok(ch) => Arc::new(CmChannel { ch }),
            Err(e) => {
                // SAFETY: id is ours to dispose of; its event was acked.
                unsafe { sys::rdma_destroy_id(id) };
                return Err(e);
            }
        };
        // SAFETY: id and ch are live.
        if unsafe { sys::rdma_migrate_id(id, ch.ch) } != 0 {
            let e = last_errno();
            // SAFETY: as above (the empty channel goes with its Arc).
            unsafe { sys::rdma_destroy_id(id) };
            return Err(VerbsError::CmMigrateId(e));
        }
        Ok(Arc::new(Self { id, ch }))
    }

    /// Keep `id` (from a CONNECT_REQUEST) on the listener's channel `ch`:
    /// its later events arrive there, tagged with the token set by
    /// [`ConnectRequest::set_token`].
    pub(crate) fn on_channel(id: *mut sys::rdma_cm_id, ch: &Arc<CmChannel>) -> Arc<Self> {
        Arc::new(Self {
            id,
            ch: Arc::clone(ch),
        })
    }

    pub(crate) fn raw(&self) -> *mut sys::rdma_cm_id {
        self.id
    }

    pub(crate) fn verbs(&self) -> *mut sys::ibv_context {
        // SAFETY: id is live.
        unsafe { (*self.id).verbs }
    }

    pub(crate) fn qp(&self) -> *mut sys::ibv_qp {
        // SAFETY: id is live.
        unsafe { (*self.id).qp }
    }

    /// Wait for the next event on this id's channel; it must be `expected`.
    fn wait_event(&self, expected: u32, timeout: Duration) -> Result<Event> {
        let deadline = Instant::now() + timeout;
        let exp_name = match expected {
            sys::rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED => "ADDR_RESOLVED",
            sys::rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED => "ROUTE_RESOLVED",
            sys::rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST => "CONNECT_REQUEST",
            sys::rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED => "ESTABLISHED",
            sys::rdma_cm_event_type::RDMA_CM_EVENT_DISCONNECTED => "DISCONNECTED",
            _ => "CM event",
        };
        loop {
            let mut ev: *mut sys::rdma_cm_event = std::ptr::null_mut();
            // SAFETY: ch is live and non-blocking; ev is a valid out-pointer.
            if unsafe { sys::rdma_get_cm_event(self.ch.ch, &mut ev) } == 0 {
                // SAFETY: ev is valid until rdma_ack_cm_event below; we copy
                // everything we need out of it first.
                let (kind, status, private_data, conn_id) = unsafe {
                    let e = &*ev;
                    (e.event, e.status, private_data_of(&e.param.conn), e.id)
                };
                // SAFETY: ev came from rdma_get_cm_event and is acked once.
                unsafe { sys::rdma_ack_cm_event(ev) };
                if kind != expected {
                    if kind == sys::rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST {
                        // Not ours to accept here: reject so the peer is not left hanging.
                        // SAFETY: conn_id is the new id the event handed us.
                        unsafe {
                            sys::rdma_reject(conn_id, std::ptr::null(), 0);
                            sys::rdma_destroy_id(conn_id);
                        }
                    }
                    return Err(VerbsError::CmUnexpectedEvent {
                        expected: exp_name,
                        got: event_name(kind),
                        status,
                    });
                }
                return Ok(Event {
                    private_data,
                    conn_id,
                });
            }
            let e = last_errno();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(VerbsError::CmGetEvent(e));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(VerbsError::Timeout { what: exp_name });
            }
            let mut pfd = libc::pollfd {
                // SAFETY: ch is live.
                fd: unsafe { (*self.ch.ch).fd },
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }

    pub(crate) fn create_qp(
        self: &Arc<Self>,
        pd: &ProtectionDomain,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
        caps: QpCaps,
    ) -> Result<QueuePair> {
        let mut a = init_attr(send_cq, recv_cq, caps);
        // SAFETY: id, PD and CQs are live; `a` names our CQs, so librdmacm
        // creates none of its own; the granted caps are written back.
        if unsafe { sys::rdma_create_qp(self.id, pd.as_raw(), &mut a) } != 0 {
            return Err(VerbsError::CmCreateQp(last_errno()));
        }
        Ok(QueuePair::from_cm(
            Arc::clone(self),
            &a.cap,
            pd,
            send_cq,
            recv_cq,
        ))
    }
}

/// The connection parameters of `rdma_connect` / `rdma_accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnParams {
    /// Outstanding RDMA Reads/atomics the peer may target at us.
    pub responder_resources: u8,
    /// Outstanding RDMA Reads/atomics we may issue.
    pub initiator_depth: u8,
    /// Transport retries before a send fails (connect only; 7 is infinite
    /// on some devices, rxe among them).
    pub retry_count: u8,
    /// How often the *active* side retries a Send the passive side answered
    /// with RNR (receiver not ready). The passive side's value in its accept
    /// is what the active side uses against it: a server that posts its
    /// receives before `rdma_accept` (as svcrdma does) accepts with 0.
    /// 7 means retry forever.
    pub rnr_retry_count: u8,
}

impl Default for ConnParams {
    /// 4 Read resources each way, 7 retries of each kind (what
    /// [`ConnectRequest::accept`] and [`ResolvedRoute::connect`] use).
    fn default() -> Self {
        Self {
            responder_resources: 4,
            initiator_depth: 4,
            retry_count: 7,
            rnr_retry_count: 7,
        }
    }
}

pub(crate) fn conn_param(
    private_data: &[u8],
    max: usize,
    params: &ConnParams,
) -> Result<sys::rdma_conn_param> {
    if private_data.len() > max {
        return Err(VerbsError::PrivateDataTooLong {
            len: private_data.len(),
            max,
        });
    }
    // SAFETY: rdma_conn_param is plain old data; zeroed is valid.
    let mut p: sys::rdma_conn_param = unsafe { std::mem::zeroed() };
    p.private_data = private_data.as_ptr().cast();
    p.private_data_len = private_data.len() as u8;
    p.responder_resources = params.responder_resources;
    p.initiator_depth = params.initiator_depth;
    p.retry_count = params.retry_count.min(7);
    p.rnr_retry_count = params.rnr_retry_count.min(7);
    Ok(p)
}

/// A connected RC QP set up by rdma_cm, with the private data the peer sent.
#[derive(Debug)]
pub struct CmConnection {
    qp: QueuePair,
    id: Arc<CmIdHandle>,
    peer_private_data: Vec<u8>,
}

impl std::fmt::Debug for CmIdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmIdHandle").finish_non_exhaustive()
    }
}

impl CmConnection {
    /// The queue pair.
    pub fn qp(&self) -> &QueuePair {
        &self.qp
    }

    /// The private data the peer sent with its connect (server side) or
    /// accept (client side), possibly zero-padded.
    pub fn peer_private_data(&self) -> &[u8] {
        &self.peer_private_data
    }

    /// `rdma_disconnect`: the QP goes to the error state and the peer gets a
    /// DISCONNECTED event. (On rxe, flushes may arrive late after this: see
    /// `rdmaxprt-rxe`'s quirk list; drain the QP to be sure.)
    pub fn disconnect(&self) -> Result<()> {
        // SAFETY: the id is live.
        let ret = unsafe { sys::rdma_disconnect(self.id.raw()) };
        if ret != 0 {
            return Err(VerbsError::CmDisconnect(errno_from_ret(ret)));
        }
        Ok(())
    }

    /// Wait for the DISCONNECTED event (the peer disconnected, or our own
    /// `disconnect` completed).
    pub fn wait_disconnected(&self, timeout: Duration) -> Result<()> {
        self.id
            .wait_event(sys::rdma_cm_event_type::RDMA_CM_EVENT_DISCONNECTED, timeout)
            .map(|_| ())
    }

    /// A handle on the connection's CM id, to disconnect it after
    /// [`into_parts`](Self::into_parts).
    pub fn handle(&self) -> crate::CmConnHandle {
        crate::CmConnHandle::new(Arc::clone(&self.id))
    }

    /// Split into the QP (which keeps the CM id alive) and the peer's data.
    pub fn into_parts(self) -> (QueuePair, Vec<u8>) {
        (self.qp, self.peer_private_data)
    }
}

/// A listening CM id (`rdma_bind_addr` + `rdma_listen`).
#[derive(Debug)]
pub struct CmListener {
    id: Arc<CmIdHandle>,
}

impl CmListener {
    pub(crate) fn id(&self) -> &Arc<CmIdHandle> {
        &self.id
    }

    /// Bind to `addr` and listen. On rxe the address must belong to a netdev
    /// that has an rxe device, and not be on `lo` (ENODEV).
    pub fn bind(addr: SocketAddr, backlog: i32) -> Result<Self> {
        let id = CmIdHandle::new()?;
        let mut ss = to_sockaddr(addr);
        // SAFETY: id is live; ss holds a valid sockaddr of addr's family.
        if unsafe { sys::rdma_bind_addr(id.raw(), (&mut ss as *mut libc::sockaddr_storage).cast()) }
            != 0
        {
            return Err(VerbsError::CmBindAddr(last_errno()));
        }
        // SAFETY: id is bound.
        if unsafe { sys::rdma_listen(id.raw(), backlog) } != 0 {
            return Err(VerbsError::CmListen(last_errno()));
        }
        Ok(Self { id })
    }

    /// Wait for the next connect request.
    pub fn get_request(&self, timeout: Duration) -> Result<ConnectRequest> {
        let ev = self.id.wait_event(
            sys::rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST,
            timeout,
        )?;
        let id = CmIdHandle::adopt(ev.conn_id)?;
        Ok(ConnectRequest::new(id, ev.private_data, (4, 4)))
    }
}

/// An incoming connect request: create the PD and CQs on
/// [`context`](Self::context), then [`accept`](Self::accept) or
/// [`reject`](Self::reject).
#[derive(Debug)]
pub struct ConnectRequest {
    id: Arc<CmIdHandle>,
    private_data: Vec<u8>,
    /// (responder_resources, initiator_depth) the peer offered.
    peer_resources: (u8, u8),
}

impl ConnectRequest {
    pub(crate) fn new(
        id: Arc<CmIdHandle>,
        private_data: Vec<u8>,
        peer_resources: (u8, u8),
    ) -> Self {
        Self {
            id,
            private_data,
            peer_resources,
        }
    }

    /// The RDMA Read resources of the request as rdma_cm reports them, from
    /// this (passive) side's point of view: (`responder_resources`: Reads
    /// the peer may have outstanding against us, `initiator_depth`: Reads
    /// we may have outstanding against the peer). An accept should not ask
    /// for more. (4, 4) for requests taken with
    /// [`CmListener::get_request`].
    pub fn peer_resources(&self) -> (u8, u8) {
        self.peer_resources
    }

    pub(crate) fn id(&self) -> &Arc<CmIdHandle> {
        &self.id
    }

    /// The device the request arrived on.
    pub fn context(&self) -> Result<Context> {
        Context::from_cm(&self.id)
    }

    /// The client's private data (possibly zero-padded).
    pub fn private_data(&self) -> &[u8] {
        &self.private_data
    }

    /// Create the QP and accept with `private_data`; waits for ESTABLISHED.
    pub fn accept(
        self,
        pd: &ProtectionDomain,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
        caps: QpCaps,
        private_data: &[u8],
        timeout: Duration,
    ) -> Result<CmConnection> {
        let qp = self.create_qp(pd, send_cq, recv_cq, caps)?;
        let (id, peer_private_data) = (Arc::clone(&self.id), self.private_data.clone());
        self.accept_with(&ConnParams::default(), private_data)?;
        id.wait_event(sys::rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED, timeout)?;
        Ok(CmConnection {
            qp,
            id,
            peer_private_data,
        })
    }

    /// Reject with `private_data`.
    pub fn reject(self, private_data: &[u8]) -> Result<()> {
        let len = u8::try_from(private_data.len()).map_err(|_| VerbsError::PrivateDataTooLong {
            len: private_data.len(),
            max: 148,
        })?;
        // SAFETY: id is live; private_data is valid for the call.
        if unsafe { sys::rdma_reject(self.id.raw(), private_data.as_ptr().cast(), len) } != 0 {
            return Err(VerbsError::CmReject(last_errno()));
        }
        Ok(())
    }
}

/// The client side after address and route resolution: create the PD and
/// CQs on [`context`](Self::context), then [`connect`](Self::connect).
#[derive(Debug)]
pub struct ResolvedRoute {
    id: Arc<CmIdHandle>,
}

impl ResolvedRoute {
    /// Resolve `dst` (address, then route), each step bounded by `timeout`.
    pub fn resolve(dst: SocketAddr, timeout: Duration) -> Result<Self> {
        let id = CmIdHandle::new()?;
        let mut ss = to_sockaddr(dst);
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: id is live; ss holds a valid sockaddr; no source address.
        if unsafe {
            sys::rdma_resolve_addr(
                id.raw(),
                std::ptr::null_mut(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                ms,
            )
        } != 0
        {
            return Err(VerbsError::CmResolveAddr(last_errno()));
        }
        id.wait_event(
            sys::rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED,
            timeout + Duration::from_secs(1),
        )?;
        // SAFETY: the address is resolved.
        if unsafe { sys::rdma_resolve_route(id.raw(), ms) } != 0 {
            return Err(VerbsError::CmResolveRoute(last_errno()));
        }
        id.wait_event(
            sys::rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED,
            timeout + Duration::from_secs(1),
        )?;
        Ok(Self { id })
    }

    /// The device the route goes through.
    pub fn context(&self) -> Result<Context> {
        Context::from_cm(&self.id)
    }

    /// Create the QP and connect with `private_data`; waits for ESTABLISHED
    /// and returns the server's accept private data with the connection.
    pub fn connect(
        self,
        pd: &ProtectionDomain,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
        caps: QpCaps,
        private_data: &[u8],
        timeout: Duration,
    ) -> Result<CmConnection> {
        let params = ConnParams::default();
        self.connect_with(pd, send_cq, recv_cq, caps, private_data, &params, timeout)
    }

    /// [`connect`](Self::connect) with explicit connection parameters
    /// (e.g. a finite `rnr_retry_count`).
    #[allow(clippy::too_many_arguments)]
    pub fn connect_with(
        self,
        pd: &ProtectionDomain,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
        caps: QpCaps,
        private_data: &[u8],
        params: &ConnParams,
        timeout: Duration,
    ) -> Result<CmConnection> {
        let mut p = conn_param(private_data, MAX_CONNECT_PRIVATE_DATA, params)?;
        let qp = self.id.create_qp(pd, send_cq, recv_cq, caps)?;
        // SAFETY: id is live with its QP; p points at private_data for the call.
        if unsafe { sys::rdma_connect(self.id.raw(), &mut p) } != 0 {
            return Err(VerbsError::CmConnect(last_errno()));
        }
        let ev = self
            .id
            .wait_event(sys::rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED, timeout)?;
        Ok(CmConnection {
            qp,
            id: self.id,
            peer_private_data: ev.private_data,
        })
    }
}
