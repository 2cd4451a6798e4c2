//! What the client needs from a backend beyond core's
//! [`DmaDevice`](rdmaxprt_core::backend::DmaDevice) and
//! [`QueuePair`](rdmaxprt_core::backend::QueuePair): memory the server can
//! reach with RDMA Read/Write (chunks), and a way to sleep until a
//! completion arrives.

use core::time::Duration;
use rdmaxprt_core::backend::DmaDevice;

/// A device that can register memory for remote access by the peer: the
/// client's Read chunks (the server RDMA Reads them), Write chunks and the
/// Reply chunk (the server RDMA Writes them).
pub trait RemoteMemory: DmaDevice {
    /// One registered region; dropping it deregisters it (the rkey stops
    /// working).
    type Region: RemoteRegion;

    /// Allocates `len` zeroed bytes and registers them for remote Read and
    /// Write by the peer of a QP on this device.
    fn register_remote(&self, len: usize) -> Result<Self::Region, Self::Error>;
}

/// A registered region as the client sees it: the handle the server names
/// it with, and host access to its bytes.
pub trait RemoteRegion {
    /// The remote key (the `handle` of an RPC-over-RDMA segment).
    fn rkey(&self) -> u32;

    /// The address of byte 0 as the server names it (a segment's `offset`).
    fn addr(&self) -> u64;

    /// Length in bytes.
    fn len(&self) -> usize;

    /// Whether the region has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `data` into the region at `offset`; `false` (copying nothing)
    /// if the range is out of bounds.
    fn write_at(&self, offset: usize, data: &[u8]) -> bool;

    /// Fills `out` from the region at `offset`; `false` (copying nothing)
    /// if the range is out of bounds.
    fn read_at(&self, offset: usize, out: &mut [u8]) -> bool;
}

/// Sleeping until a completion is queued, so a waiting client does not
/// spin.
pub trait CompletionWait {
    /// Blocks until a send or receive completion of this QP can be polled
    /// or `timeout` passes; returns whether one can.
    fn wait_for_completions(&self, timeout: Duration) -> bool;

    /// Asks the QP to call `ring` whenever a completion may have been
    /// queued, so one poller thread can sleep for many QPs. Returns whether
    /// the backend supports it (the default: no; the server runtime then
    /// gives the QP a poller thread of its own).
    fn set_completion_notifier(&self, ring: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        let _ = ring;
        false
    }

    /// Arms the QP's completion notification (`ibv_req_notify_cq` on both
    /// CQs) so the next completion signals the completion channel the CQs
    /// were created on. Returns `false` if the backend has no such channel
    /// (the default), or arming failed. A caller polls again after arming:
    /// a completion queued before the arm does not signal.
    fn arm_completions(&self) -> bool {
        false
    }
}

#[cfg(feature = "mock")]
mod mock {
    use super::{CompletionWait, RemoteMemory, RemoteRegion};
    use core::time::Duration;
    use rdmaxprt_core::backend::DmaDevice;
    use rdmaxprt_mock::{MockDevice, MockError, MockMr, MockQp};

    impl RemoteMemory for MockDevice {
        type Region = MockMr;

        fn register_remote(&self, len: usize) -> Result<MockMr, MockError> {
            let buf = self.alloc_buf(len)?;
            self.register(buf)
        }
    }

    impl RemoteRegion for MockMr {
        fn rkey(&self) -> u32 {
            MockMr::rkey(self)
        }

        fn addr(&self) -> u64 {
            MockMr::addr(self)
        }

        fn len(&self) -> usize {
            MockMr::len(self)
        }

        fn write_at(&self, offset: usize, data: &[u8]) -> bool {
            self.write(|b| match offset.checked_add(data.len()) {
                Some(end) if end <= b.len() => {
                    b[offset..end].copy_from_slice(data);
                    true
                }
                _ => false,
            })
        }

        fn read_at(&self, offset: usize, out: &mut [u8]) -> bool {
            self.read(|b| match offset.checked_add(out.len()) {
                Some(end) if end <= b.len() => {
                    out.copy_from_slice(&b[offset..end]);
                    true
                }
                _ => false,
            })
        }
    }

    impl CompletionWait for MockQp {
        fn wait_for_completions(&self, timeout: Duration) -> bool {
            MockQp::wait_for_completions(self, timeout)
        }

        fn set_completion_notifier(&self, ring: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
            MockQp::set_completion_notifier(self, Some(ring));
            true
        }
    }
}
