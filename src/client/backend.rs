//! What the client needs from a backend beyond core's
//! [`DmaDevice`](rdmaxprt_core::backend::DmaDevice) and
//! [`QueuePair`](rdmaxprt_core::backend::QueuePair): memory the server can
//! reach with RDMA Read/Write (chunks). (Sleeping until a completion
//! arrives, which the server needs too, is [`crate::completion`].)

#![allow(unsafe_code)]

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
///
/// Trust: a region stays registered (its rkey valid) between the calls
/// that offer it, like the kernel client's "all physical" mode and unlike
/// its FRWR mode, which invalidates each call's registrations when the
/// reply is in. The client relies on the peer to RDMA only the segments a
/// call in flight offers it (RFC 8166); a peer that wrote elsewhere would
/// write memory the host reads or writes (a pooled region, or one lent to
/// the caller).
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

    /// The region's bytes, read in place (a reply lent to the caller:
    /// [`LentBytes`](super::LentBytes)).
    ///
    /// # Safety
    /// While the slice lives 1. the peer must not RDMA Write the region: it
    /// is offered in no call in flight (the peer reaches only what a call
    /// in flight offers it; see the trust note above), and 2. the host must
    /// not write it through [`write_at`](Self::write_at) (from any thread).
    unsafe fn host_bytes(&self) -> &[u8];

    /// The region's bytes, writable in place (arguments lent to the
    /// caller: [`LentBuf`](super::LentBuf)).
    ///
    /// # Safety
    /// While the slice lives the peer must not RDMA Read or Write the
    /// region: it is offered in no call in flight.
    unsafe fn host_bytes_mut(&mut self) -> &mut [u8];

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

        unsafe fn host_bytes(&self) -> &[u8] {
            // SAFETY: the caller keeps the peer from writing the region
            // while the slice lives (this fn's contract), which is what
            // `MockMr::host_bytes` asks.
            unsafe { MockMr::host_bytes(self) }
        }

        unsafe fn host_bytes_mut(&mut self) -> &mut [u8] {
            // SAFETY: as in `host_bytes`, for reads and writes by the peer.
            unsafe { MockMr::host_bytes_mut(self) }
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
