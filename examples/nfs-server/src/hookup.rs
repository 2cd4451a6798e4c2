//! Connecting the NFS server to a transport: the one place that knows
//! which. The mock NIC (in-process clients: tests and the self-test) now;
//! the verbs listener (`Server::listen_rdma`) joins here when it lands.

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
