//! Connecting the NFS server to a transport: the one place that knows
//! which. The mock NIC (in-process clients: tests and the self-test), and
//! with the `verbs` feature the rdma_cm listener (`Server::listen_rdma`).

use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::runtime::{MockConnector, MockNetwork, Server};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A server fed by a mock network: its clients connect through
/// `connector`; dropping every connector ends `accept`.
#[derive(Debug)]
pub struct MockHookup {
    /// Where in-process clients connect.
    pub connector: MockConnector,
    /// The accept loop (ends once every connector is dropped).
    pub accept: JoinHandle<()>,
    /// The device the server maps with (for leak checks).
    pub server_dev: MockDevice,
}

/// Serves `server`'s dispatcher to clients of a new mock network.
pub fn mock(server: &Arc<Server>) -> MockHookup {
    let server_dev = MockDevice::new();
    let (connector, listener) = MockNetwork::new(server_dev.clone(), QpConfig::default());
    MockHookup {
        connector,
        accept: server.serve(listener),
        server_dev,
    }
}

/// The default NFS/RDMA port (RFC 5666 / RFC 8267: 20049).
pub const NFS_RDMA_PORT: u16 = 20049;

/// Serves `server`'s dispatcher to RPC-over-RDMA clients on `addr`
/// (rdma_cm), offering `inline` bytes as both inline thresholds.
#[cfg(feature = "verbs")]
pub fn rdma(
    server: &Arc<Server>,
    addr: std::net::SocketAddr,
    inline: u32,
) -> Result<rdmaxprt::runtime::RdmaListener, rdmaxprt::runtime::ListenError> {
    server.listen_rdma(
        addr,
        rdmaxprt::runtime::ListenConfig {
            inline_send: inline,
            inline_recv: inline,
            ..rdmaxprt::runtime::ListenConfig::default()
        },
    )
}
