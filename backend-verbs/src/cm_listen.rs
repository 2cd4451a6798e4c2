//! A server's view of rdma_cm: one event channel for the listening id and
//! every connection it accepts, read by one thread, as the kernel's CM
//! handler serves every svcrdma connection.
//!
//! [`CmListener::next_event`] hands out connect requests whose ids stay on
//! the listener's channel; a server tags each with a token
//! ([`ConnectRequest::set_token`]) and later events of that connection
//! (ESTABLISHED, DISCONNECTED, TIMEWAIT_EXIT, DEVICE_REMOVAL, errors) come
//! back as [`ListenerEvent::Connection`] with the token. The accept itself
//! does not wait ([`ConnectRequest::accept_with`]), so a server can build
//! the QP, post its receives, accept, and go on serving other events.
//!
//! Every event is acknowledged as soon as its fields are copied, so
//! destroying an id (which waits for its delivered events to be acked)
//! never blocks on this reader.

use std::sync::Arc;

use rdma_sys as sys;

use crate::cm::{
    conn_param, event_name, private_data_of, CmIdHandle, CmListener, ConnParams, ConnectRequest,
    MAX_ACCEPT_PRIVATE_DATA,
};
use crate::cq::CompletionQueue;
use crate::device::Context;
use crate::error::{errno_from_ret, last_errno, Result, VerbsError};
use crate::pd::ProtectionDomain;
use crate::qp::{QpCaps, QueuePair};

/// What happened to an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnEvent {
    /// The connection is up (after the accept).
    Established,
    /// The peer (or we) disconnected.
    Disconnected,
    /// The connection left time-wait: the id may be reused.
    TimewaitExit,
    /// The device went away.
    DeviceRemoval,
    /// The connection failed (rejected, unreachable, connect error, ...).
    Failed {
        /// The event's name (`rdma_event_str`).
        event: String,
        /// The event's status.
        status: i32,
    },
}

/// One event from a [`CmListener`]'s channel.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerEvent {
    /// A new connection asks to be accepted.
    ConnectRequest(ConnectRequest),
    /// An event of a connection tagged with `token`.
    Connection {
        /// The token given to [`ConnectRequest::set_token`] (0: untagged).
        token: u64,
        /// What happened.
        event: ConnEvent,
    },
    /// An event of the listening id itself (e.g. DEVICE_REMOVAL).
    Listener {
        /// The event's name.
        event: String,
        /// The event's status.
        status: i32,
    },
}

/// An accepted connection's CM id: keeps it alive and can disconnect it.
#[derive(Debug, Clone)]
pub struct CmConnHandle {
    id: Arc<CmIdHandle>,
}

impl CmConnHandle {
    pub(crate) fn new(id: Arc<CmIdHandle>) -> Self {
        Self { id }
    }

    /// `rdma_disconnect`: the QP goes to the error state and the peer gets
    /// DISCONNECTED. Disconnecting twice, or a connection that never came
    /// up, is harmless (the error is returned for the record).
    pub fn disconnect(&self) -> Result<()> {
        // SAFETY: the id is live (we hold an Arc).
        let ret = unsafe { sys::rdma_disconnect(self.id.raw()) };
        if ret != 0 {
            return Err(VerbsError::CmDisconnect(errno_from_ret(ret)));
        }
        Ok(())
    }
}

fn conn_event(kind: u32, status: i32) -> ConnEvent {
    use sys::rdma_cm_event_type as t;
    match kind {
        t::RDMA_CM_EVENT_ESTABLISHED => ConnEvent::Established,
        t::RDMA_CM_EVENT_DISCONNECTED => ConnEvent::Disconnected,
        t::RDMA_CM_EVENT_TIMEWAIT_EXIT => ConnEvent::TimewaitExit,
        t::RDMA_CM_EVENT_DEVICE_REMOVAL => ConnEvent::DeviceRemoval,
        _ => ConnEvent::Failed {
            event: event_name(kind),
            status,
        },
    }
}

impl CmListener {
    /// The event channel's fd (non-blocking; readable when
    /// [`next_event`](Self::next_event) has something).
    pub fn fd(&self) -> i32 {
        // SAFETY: the channel is live while the listener holds its id.
        unsafe { (*self.id().ch.ch).fd }
    }

    /// The device the listener is bound to, when it was bound to the
    /// address of one (a wildcard bind has none until a request arrives).
    pub fn context(&self) -> Option<Context> {
        if self.id().verbs().is_null() {
            return None;
        }
        Context::from_cm(self.id()).ok()
    }

    /// The next event without blocking (`Ok(None)`: nothing pending; wait
    /// for [`fd`](Self::fd) to be readable). Connect requests keep their id
    /// on this listener's channel (unlike
    /// [`get_request`](Self::get_request), which moves it to a channel of
    /// its own); do not mix the two on one listener.
    pub fn next_event(&self) -> Result<Option<ListenerEvent>> {
        let mut ev: *mut sys::rdma_cm_event = std::ptr::null_mut();
        // SAFETY: the channel is live and non-blocking; ev is a valid
        // out-pointer.
        if unsafe { sys::rdma_get_cm_event(self.id().ch.ch, &mut ev) } != 0 {
            let e = last_errno();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(VerbsError::CmGetEvent(e));
        }
        // SAFETY: ev is valid until rdma_ack_cm_event below; everything
        // needed is copied out first. `e.id` is live until the ack (an id
        // cannot be destroyed while one of its events is unacked).
        let (kind, status, private_data, id, token, res) = unsafe {
            let e = &*ev;
            let conn = &e.param.conn;
            let pd = private_data_of(conn);
            let token = if e.id.is_null() {
                0
            } else {
                (*e.id).context as u64
            };
            let res = (conn.responder_resources, conn.initiator_depth);
            (e.event, e.status, pd, e.id, token, res)
        };
        // SAFETY: ev came from rdma_get_cm_event and is acked once.
        unsafe { sys::rdma_ack_cm_event(ev) };
        if kind == sys::rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST {
            let id = CmIdHandle::on_channel(id, &self.id().ch);
            return Ok(Some(ListenerEvent::ConnectRequest(ConnectRequest::new(
                id,
                private_data,
                res,
            ))));
        }
        if id == self.id().raw() {
            return Ok(Some(ListenerEvent::Listener {
                event: event_name(kind),
                status,
            }));
        }
        Ok(Some(ListenerEvent::Connection {
            token,
            event: conn_event(kind, status),
        }))
    }
}

impl ConnectRequest {
    /// Tags the connection: its later events carry `token` (not 0).
    pub fn set_token(&self, token: u64) {
        // SAFETY: the id is live; `context` is ours to set and librdmacm
        // only hands it back in events.
        unsafe { (*self.id().raw()).context = token as *mut libc::c_void };
    }

    /// Creates the connection's QP (`rdma_create_qp`; the QP is in INIT,
    /// so receives can be posted before [`accept_with`](Self::accept_with),
    /// as svcrdma does).
    pub fn create_qp(
        &self,
        pd: &ProtectionDomain,
        send_cq: &CompletionQueue,
        recv_cq: &CompletionQueue,
        caps: QpCaps,
    ) -> Result<QueuePair> {
        self.id().create_qp(pd, send_cq, recv_cq, caps)
    }

    /// A handle on the connection's id (to disconnect it later); take it
    /// before [`accept_with`](Self::accept_with).
    pub fn handle(&self) -> CmConnHandle {
        CmConnHandle {
            id: Arc::clone(self.id()),
        }
    }

    /// `rdma_accept` with `params` and `private_data`, without waiting for
    /// ESTABLISHED (it comes as a [`ListenerEvent::Connection`]). The QP
    /// must exist ([`create_qp`](Self::create_qp)).
    pub fn accept_with(self, params: &ConnParams, private_data: &[u8]) -> Result<()> {
        let mut p = conn_param(private_data, MAX_ACCEPT_PRIVATE_DATA, params)?;
        // SAFETY: the id is live with its QP; p points at private_data for
        // the call.
        if unsafe { sys::rdma_accept(self.id().raw(), &mut p) } != 0 {
            return Err(VerbsError::CmAccept(last_errno()));
        }
        Ok(())
    }
}
