//! What the client needs from a backend beyond core's
//! [`DmaDevice`](rdmaxprt_core::backend::DmaDevice) and
//! [`QueuePair`](rdmaxprt_core::backend::QueuePair): memory the server can
//! reach with RDMA Read/Write (chunks). (Sleeping until a completion
//! arrives, which the server needs too, is [`crate::completion`].)

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

    /// Appends `len` bytes of the region at `offset` to `out`; `false`
    /// (appending nothing) if the range is out of bounds. The default
    /// zero-extends `out` and fills it with [`read_at`](Self::read_at); a
    /// backend that can copy straight onto the end skips that fill.
    fn read_append(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        out.resize(start + len, 0);
        if self.read_at(offset, &mut out[start..]) {
            true
        } else {
            out.truncate(start);
            false
        }
    }
}

#[cfg(feature = "mock")]
mod mock {
    use super::{RemoteMemory, RemoteRegion};
    use rdmaxprt_core::backend::DmaDevice;
    use rdmaxprt_mock::{MockDevice, MockError, MockMr};

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

        fn read_append(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
            self.read(|b| match offset.checked_add(len) {
                Some(end) if end <= b.len() => {
                    out.extend_from_slice(&b[offset..end]);
                    true
                }
                _ => false,
            })
        }
    }
}
