//! Where new connections come from.

/// Yields connected queue pairs (rdma_cm's accept, or the mock network).
pub trait Listener: Send + 'static {
    /// The device the server maps with for this connection.
    type Dev;
    /// The connected QP.
    type Qp;
    /// Blocks for the next connection; `None` when the listener is done.
    fn accept(&mut self) -> Option<(Self::Dev, Self::Qp)>;
}

#[cfg(feature = "mock")]
mod mock {
    use super::Listener;
    use rdmaxprt_mock::{MockDevice, MockError, MockQp, QpConfig};
    use std::sync::mpsc;

    /// An in-process "network" of mock QP pairs: clients connect through a
    /// [`MockConnector`], the server accepts from the [`MockListener`].
    #[derive(Debug)]
    pub struct MockNetwork;

    impl MockNetwork {
        /// A network whose server side maps with `server_dev`; every pair
        /// gets `cfg`.
        #[allow(clippy::new_ret_no_self)]
        pub fn new(server_dev: MockDevice, cfg: QpConfig) -> (MockConnector, MockListener) {
            let (tx, rx) = mpsc::channel();
            (
                MockConnector {
                    tx,
                    server_dev: server_dev.clone(),
                    cfg,
                },
                MockListener {
                    rx,
                    dev: server_dev,
                },
            )
        }
    }

    /// The client side of a [`MockNetwork`]. Dropping every connector ends
    /// the listener.
    #[derive(Debug, Clone)]
    pub struct MockConnector {
        tx: mpsc::Sender<MockQp>,
        server_dev: MockDevice,
        cfg: QpConfig,
    }

    impl MockConnector {
        /// Connects a new pair; returns the client's end.
        pub fn connect(&self, client_dev: &MockDevice) -> Result<MockQp, MockError> {
            let (c, s) = MockDevice::connect_pair(client_dev, &self.server_dev, self.cfg)?;
            // A send fails only if the listener is gone: the client end then
            // sees a peer that never answers, like a refused connection.
            let _ = self.tx.send(s);
            Ok(c)
        }
    }

    /// The server side of a [`MockNetwork`].
    #[derive(Debug)]
    pub struct MockListener {
        rx: mpsc::Receiver<MockQp>,
        dev: MockDevice,
    }

    impl Listener for MockListener {
        type Dev = MockDevice;
        type Qp = MockQp;

        fn accept(&mut self) -> Option<(MockDevice, MockQp)> {
            self.rx.recv().ok().map(|qp| (self.dev.clone(), qp))
        }
    }
}

#[cfg(feature = "mock")]
pub use mock::{MockConnector, MockListener, MockNetwork};
