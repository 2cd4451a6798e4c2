//! The backend traits over real verbs (feature `verbs`), shared by the
//! server runtime and the client:
//! [`VerbsMemory`] ([`RemoteMemory`](crate::client::RemoteMemory) plus core's
//! [`DmaDevice`](rdmaxprt_core::backend::DmaDevice)) and [`VerbsWaitQp`]
//! (core's [`QueuePair`](rdmaxprt_core::backend::QueuePair) plus
//! [`CompletionWait`](crate::completion::CompletionWait)). Both also serve the
//! server side: `runtime::Server::accept(memory, qp)` takes them as they
//! are, and so does `SvcRdmaXprt`.
//!
//! Why wrappers around `rdmaxprt_verbs::{VerbsDmaDevice, VerbsQp}` rather
//! than trait impls on them:
//! - a remote region needs the protection domain, which a
//!   `VerbsDmaDevice` does not hand out, and one pool chunk size cannot
//!   serve both 1 KiB receive buffers and 1 MiB chunk buffers: a
//!   [`VerbsMemory`] keeps two pools (small and large chunks) and the PD;
//! - [`CompletionWait`](crate::completion::CompletionWait) must say whether a completion *can be polled*, and
//!   a CQ cannot be peeked: [`VerbsWaitQp`] asks `VerbsQp::poll_ahead`,
//!   which keeps what it polled for the next `poll_send`/`poll_recv`.
//!
//! # Remote regions
//! Each [`register_remote`](crate::client::RemoteMemory::register_remote) maps fresh
//! (zeroed) memory and registers it as its own MR with local write, remote
//! read and remote write access; dropping the [`VerbsRegion`] deregisters
//! it, so the rkey stops working, as the trait asks. (The pools' rkeys are
//! never advertised.) The client registers a region once and reuses it for
//! later calls of the same connection (its chunk pool), so a region lives
//! until the client is closed.
//!
//! # Completion waiting
//! Event mode when the QP's CQs were created with a
//! [`CompletionChannel`](rdmaxprt_verbs::CompletionChannel): poll, arm both
//! CQs (`ibv_req_notify_cq`), poll again (a completion may have slipped in
//! before the arm), sleep in `poll(2)` on the channel fd(s), then read and
//! acknowledge every pending channel event. Give each QP its own channel(s):
//! the events of other CQs on a shared channel are consumed too. Without
//! a channel (busy-poll CQs) the wait is a sleep-poll: poll, then sleep
//! [`SLEEP_POLL`], until a completion or the timeout.
//!
//! # Send with Invalidate
//! The server transport answers a call whose chunks all carry one handle
//! with Send-with-Invalidate of that rkey. On real verbs only an
//! invalidatable registration (a fast-registered MR or a type-2 memory
//! window) can be invalidated remotely; a plain `ibv_reg_mr` region, what
//! [`VerbsMemory`] registers, makes the peer's receive fail and the
//! connection with it. svcrdma uses Send-with-Invalidate only when the
//! client said it can take it (`RPCRDMA_CMP_F_SND_W_INV_OK` in its
//! connection private data); [`VerbsWaitQp`] plays that negotiation: it
//! posts a Send-with-Invalidate as a plain Send unless
//! [`VerbsWaitQp::allow_remote_invalidation`] was called for a peer that
//! registers invalidatable chunks.
//!
//! # Accounting
//! [`VerbsMemory::accounting`] counts live buffers, live mappings and live
//! remote regions: what a leak check at teardown compares against
//! ([`Accounting::is_clean`]).

mod memory;
mod wait_qp;

pub use memory::{Accounting, MemoryConfig, VerbsBuf, VerbsMemory, VerbsRegion};
pub use wait_qp::{VerbsWaitQp, SLEEP_POLL};
