//! Memory pools: one anonymous mapping, registered once as one MR.
//!
//! svcrdma registers nothing per I/O on the send side for its own buffers;
//! it DMA-maps them. The user-space equivalent is to register a large pool
//! once and hand out offsets into it: every SGE then uses the one lkey.

use std::ops::BitOr;
use std::sync::Arc;

use memmap2::{MmapMut, MmapOptions};
use rdma_sys as sys;

use crate::error::{last_errno, Result, VerbsError};
use crate::pd::{PdInner, ProtectionDomain};

/// Access rights of a registration (`ibv_access_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u32);

impl Access {
    /// The local NIC may write (needed for receives and RDMA Read sinks).
    pub const LOCAL_WRITE: Access = Access(sys::ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0);
    /// Peers may RDMA Write into it (needs `LOCAL_WRITE`).
    pub const REMOTE_WRITE: Access = Access(sys::ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0);
    /// Peers may RDMA Read from it.
    pub const REMOTE_READ: Access = Access(sys::ibv_access_flags::IBV_ACCESS_REMOTE_READ.0);
    /// All three: what a loopback test pool wants.
    pub const ALL: Access =
        Access(Self::LOCAL_WRITE.0 | Self::REMOTE_WRITE.0 | Self::REMOTE_READ.0);

    /// The raw flag bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access(self.0 | rhs.0)
    }
}

/// One scatter/gather entry (`ibv_sge`): an address range with its lkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sge {
    /// Virtual address of the first byte.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
    /// Local key of the registration covering the range.
    pub lkey: u32,
}

impl Sge {
    pub(crate) fn to_sys(self) -> sys::ibv_sge {
        sys::ibv_sge {
            addr: self.addr,
            length: self.length,
            lkey: self.lkey,
        }
    }
}

/// A remote buffer: what a peer advertises for RDMA Read/Write (an RPC-over-RDMA
/// segment: handle, length, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteBuf {
    /// Remote virtual address.
    pub addr: u64,
    /// Remote key.
    pub rkey: u32,
    /// Length in bytes.
    pub len: u32,
}

/// 2 MiB, the x86-64 huge page size; huge pools are rounded up to it.
const HUGE_PAGE: usize = 2 << 20;

/// Anonymous memory, registered once as one MR.
///
/// The memory is never lent out as Rust references: the NIC may write it at
/// any time while a receive or an RDMA Read/Write targets it, so the pool
/// only offers copies in and out ([`write`](Self::write), [`read`](Self::read)),
/// whose results are meaningful once the completion of the work request
/// that used the range has been polled.
pub struct MemoryPool {
    ptr: *mut u8,
    len: usize,
    huge: bool,
    mr: *mut sys::ibv_mr,
    // Drop order: fields drop after Drop::drop ran ibv_dereg_mr, so the
    // mapping is unmapped after deregistration, and the PD freed last.
    _map: MmapMut,
    _pd: Arc<PdInner>,
}

// SAFETY: the mapping is owned and only accessed through raw copies; the MR
// pointer is used for reading lkey/rkey and in Drop. Verbs are thread safe.
unsafe impl Send for MemoryPool {}
// SAFETY: &self methods only copy bytes through raw pointers and read the MR
// keys; concurrent writers to overlapping ranges are the caller's protocol
// bug but not memory unsafety for the pool bookkeeping.
unsafe impl Sync for MemoryPool {}

impl std::fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPool")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len)
            .field("huge", &self.huge)
            .field("lkey", &format_args!("{:#x}", self.lkey()))
            .finish()
    }
}

impl MemoryPool {
    /// Map `len` bytes (huge pages if the system has them reserved, else
    /// normal pages, with a log note) and register them in `pd`.
    pub fn new(pd: &ProtectionDomain, len: usize, access: Access) -> Result<Self> {
        let huge_len = len.div_ceil(HUGE_PAGE).max(1) * HUGE_PAGE;
        let (mut map, huge, len) = match MmapOptions::new().len(huge_len).huge(Some(21)).map_anon()
        {
            Ok(m) => (m, true, huge_len),
            Err(e) => {
                tracing::info!(
                    len,
                    error = %e,
                    "MAP_HUGETLB failed (no huge pages reserved?); using normal pages"
                );
                let m = MmapOptions::new()
                    .len(len.max(1))
                    .map_anon()
                    .map_err(|source| VerbsError::Mmap { len, source })?;
                (m, false, len.max(1))
            }
        };
        let ptr = map.as_mut_ptr();
        // SAFETY: ptr..ptr+len is our live mapping; the PD is alive (we keep
        // an Arc). The MR is deregistered in Drop before the mapping goes.
        let mr = unsafe { sys::ibv_reg_mr(pd.as_raw(), ptr.cast(), len, access.bits() as i32) };
        if mr.is_null() {
            return Err(VerbsError::RegMr {
                len,
                source: last_errno(),
            });
        }
        Ok(Self {
            ptr,
            len,
            huge,
            mr,
            _map: map,
            _pd: Arc::clone(&pd.inner),
        })
    }

    /// Pointer to byte 0 of the mapping (valid for [`len`](Self::len)
    /// bytes while the pool lives). Reading or writing through it races
    /// with any RDMA the peer does on the pool: that is the caller's to
    /// rule out.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Pointer to byte `offset` (in bounds by the caller's check).
    pub(crate) fn ptr_at(&self, offset: usize) -> *mut u8 {
        self.ptr.wrapping_add(offset)
    }

    /// Length in bytes (rounded up to the huge page size on huge pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true (a pool is at least one byte); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the pool got huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }

    /// Virtual address of byte 0.
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }

    /// The local key.
    pub fn lkey(&self) -> u32 {
        // SAFETY: mr is live until Drop.
        unsafe { (*self.mr).lkey }
    }

    /// The remote key.
    pub fn rkey(&self) -> u32 {
        // SAFETY: mr is live until Drop.
        unsafe { (*self.mr).rkey }
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(VerbsError::SgeOutOfBounds {
                offset,
                len,
                pool_len: self.len,
            }),
        }
    }

    /// An SGE for `[offset, offset + len)`.
    pub fn sge(&self, offset: usize, len: u32) -> Result<Sge> {
        self.check(offset, len as usize)?;
        Ok(Sge {
            addr: self.addr() + offset as u64,
            length: len,
            lkey: self.lkey(),
        })
    }

    /// The remote view of `[offset, offset + len)`, to hand to a peer.
    pub fn remote(&self, offset: usize, len: u32) -> Result<RemoteBuf> {
        self.check(offset, len as usize)?;
        Ok(RemoteBuf {
            addr: self.addr() + offset as u64,
            rkey: self.rkey(),
            len,
        })
    }

    /// Copy `data` into the pool at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: the range is inside our mapping (checked); `data` is a
        // separate Rust allocation, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
        Ok(())
    }

    /// Copy `out.len()` bytes at `offset` out of the pool.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.check(offset, out.len())?;
        // SAFETY: the range is inside our mapping (checked); `out` is a
        // separate Rust allocation.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Fill `[offset, offset + len)` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check(offset, len)?;
        // SAFETY: the range is inside our mapping (checked).
        unsafe { std::ptr::write_bytes(self.ptr.add(offset), byte, len) };
        Ok(())
    }
}

impl Drop for MemoryPool {
    fn drop(&mut self) {
        // SAFETY: mr came from ibv_reg_mr and is deregistered once, before
        // the mapping and the PD (fields) are dropped.
        let ret = unsafe { sys::ibv_dereg_mr(self.mr) };
        if ret != 0 {
            tracing::warn!(ret, "ibv_dereg_mr failed");
        }
    }
}
