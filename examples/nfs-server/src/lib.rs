//! An NFSv3 server (RFC 1813) on rdmaxprt's ONC RPC service API: the NFS
//! program (100003 v3) for the RPC-over-RDMA transport, and MOUNT v3
//! (100005) over TCP.
//!
//! - [`args`]: NFSv3 argument decoding (borrowed, bounded), GARBAGE_ARGS on
//!   any error;
//! - [`fh`]: file handles (export id, inode, birth time, MAC);
//! - [`hookup`]: connecting the server to a transport;
//! - [`export`]: resolving handles and names inside the exported directory;
//! - [`attr`]: attributes and AUTH_SYS identity mapping;
//! - [`nfs`]: the NFS service; [`mount`]: the MOUNT service; [`setup`]:
//!   both built for one export; [`tcp`]: ONC
//!   RPC record marking over TCP.

pub mod args;
pub mod attr;
pub mod export;
pub mod fh;
pub mod hookup;
pub mod mount;
pub mod nfs;
pub mod setup;
pub mod tcp;
