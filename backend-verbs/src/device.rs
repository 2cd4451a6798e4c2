//! Devices: listing, opening by name, port and GID queries, `ibv_fork_init`.

use std::ffi::CStr;
use std::fmt;
use std::sync::Arc;

use rdma_sys as sys;

use crate::cm::CmIdHandle;
use crate::error::{errno_from_ret, last_errno, Result, VerbsError};

/// Make registered memory safe across `fork()`.
///
/// Registration pins pages; after a `fork()` the parent's pinned pages are
/// copy-on-write and the NIC keeps DMA-ing to the pages the *child* got. The
/// fix, `ibv_fork_init`, marks registered ranges `MADV_DONTFORK`. It must be
/// called before the first registration (rdma-core refuses it afterwards,
/// `EINVAL`), it costs a `madvise` per registration, and on kernels with
/// `FOLL_PIN`/copy-on-fork support (5.13+) rdma-core already treats it as a
/// no-op. It is therefore opt in: a process that forks (e.g. spawns helpers
/// with `std::process::Command`, which uses `posix_spawn`/`vfork` and is
/// fine, versus a raw `fork()`, which is not) calls this first thing.
/// Setting `RDMAV_FORK_SAFE=1` in the environment has the same effect.
pub fn fork_init() -> Result<()> {
    // SAFETY: ibv_fork_init takes no arguments and only sets library-global
    // state; rdma-core makes it idempotent and reports misuse via its return.
    let ret = unsafe { sys::ibv_fork_init() };
    if ret != 0 {
        return Err(VerbsError::ForkInit(errno_from_ret(ret)));
    }
    Ok(())
}

/// The names of all RDMA devices visible to this process.
pub fn device_names() -> Result<Vec<String>> {
    let list = DeviceList::get()?;
    Ok(list.iter().map(|(_, name)| name).collect())
}

/// An owned `ibv_get_device_list` result.
struct DeviceList {
    list: *mut *mut sys::ibv_device,
    len: usize,
}

impl DeviceList {
    fn get() -> Result<Self> {
        let mut n: i32 = 0;
        // SAFETY: `n` is a valid out-pointer; the returned array is owned by us
        // until ibv_free_device_list (in Drop).
        let list = unsafe { sys::ibv_get_device_list(&mut n) };
        if list.is_null() {
            return Err(VerbsError::GetDeviceList(last_errno()));
        }
        Ok(Self {
            list,
            len: usize::try_from(n).unwrap_or(0),
        })
    }

    fn iter(&self) -> impl Iterator<Item = (*mut sys::ibv_device, String)> + '_ {
        (0..self.len).map(move |i| {
            // SAFETY: i < len, the number of entries ibv_get_device_list reported;
            // the array stays valid until Drop.
            let dev = unsafe { *self.list.add(i) };
            // SAFETY: dev is a device from the live list; the name is a
            // NUL-terminated string owned by the device.
            let name = unsafe { CStr::from_ptr(sys::ibv_get_device_name(dev)) };
            (dev, name.to_string_lossy().into_owned())
        })
    }
}

impl Drop for DeviceList {
    fn drop(&mut self) {
        // SAFETY: list came from ibv_get_device_list and is freed once. Opened
        // contexts stay valid after the list is freed (rdma-core refcounts).
        unsafe { sys::ibv_free_device_list(self.list) };
    }
}

/// Who closes the `ibv_context`.
enum ContextOwner {
    /// Opened by us with `ibv_open_device`: closed on drop.
    Opened,
    /// Owned by librdmacm and tied to a CM id: kept alive by holding the id.
    Cm(#[allow(dead_code)] Arc<CmIdHandle>),
}

/// An open RDMA device (`ibv_context`). Cheap to clone; the device is closed
/// when the last clone and every object made from it are gone.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) ctx: *mut sys::ibv_context,
    name: String,
    owner: ContextOwner,
}

// SAFETY: an ibv_context is thread safe per the libibverbs threading model
// (all verbs may be called from any thread); the pointer is only freed in
// Drop, when no clone is left.
unsafe impl Send for ContextInner {}
// SAFETY: as above, shared use from several threads is allowed by libibverbs.
unsafe impl Sync for ContextInner {}

impl Drop for ContextInner {
    fn drop(&mut self) {
        if let ContextOwner::Opened = self.owner {
            // SAFETY: ctx came from ibv_open_device; every PD/CQ/channel holds
            // an Arc to this inner, so none is left when we get here.
            let ret = unsafe { sys::ibv_close_device(self.ctx) };
            if ret != 0 {
                tracing::warn!(device = %self.name, ret, "ibv_close_device failed");
            }
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// A few device limits from `ibv_query_device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceAttr {
    /// Maximum number of QPs.
    pub max_qp: i32,
    /// Maximum outstanding work requests per queue.
    pub max_qp_wr: i32,
    /// Maximum scatter/gather entries per work request.
    pub max_sge: i32,
    /// Maximum CQ entries.
    pub max_cqe: i32,
    /// Maximum size of one memory region.
    pub max_mr_size: u64,
    /// Outstanding RDMA Reads/atomics this device can be target of, per QP.
    pub max_qp_rd_atom: i32,
    /// Outstanding RDMA Reads/atomics this device can initiate, per QP.
    pub max_qp_init_rd_atom: i32,
    /// Number of physical ports.
    pub phys_port_cnt: u8,
}

/// A few port attributes from `ibv_query_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortAttr {
    /// `ibv_port_state` (4 = ACTIVE).
    pub state: u32,
    /// `ibv_mtu` enum value of the active MTU (1 = 256 ... 5 = 4096).
    pub active_mtu: u32,
    /// Size of the GID table.
    pub gid_tbl_len: i32,
    /// The port's LID (0 on RoCE).
    pub lid: u16,
    /// `IBV_LINK_LAYER_*` (2 = Ethernet).
    pub link_layer: u8,
}

/// A 16-byte GID, as in the GID table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Gid(pub [u8; 16]);

impl Gid {
    /// True for an IPv4-mapped GID (`::ffff:a.b.c.d`), which is what RoCEv2
    /// uses for an IPv4 address of the netdev.
    pub fn is_ipv4_mapped(&self) -> bool {
        self.0[..10].iter().all(|b| *b == 0) && self.0[10] == 0xff && self.0[11] == 0xff
    }

    /// True for the all-zero (unused) table entry.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    pub(crate) fn to_sys(self) -> sys::ibv_gid {
        sys::ibv_gid { raw: self.0 }
    }
}

impl fmt::Debug for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl Context {
    /// Open the device with this name (e.g. `rxe0`).
    pub fn open(name: &str) -> Result<Self> {
        let list = DeviceList::get()?;
        let (dev, _) =
            list.iter()
                .find(|(_, n)| n == name)
                .ok_or_else(|| VerbsError::DeviceNotFound {
                    name: name.to_owned(),
                })?;
        // SAFETY: dev is a live entry of the device list.
        let ctx = unsafe { sys::ibv_open_device(dev) };
        if ctx.is_null() {
            return Err(VerbsError::OpenDevice {
                name: name.to_owned(),
                source: last_errno(),
            });
        }
        Ok(Self {
            inner: Arc::new(ContextInner {
                ctx,
                name: name.to_owned(),
                owner: ContextOwner::Opened,
            }),
        })
    }

    /// Wrap the context librdmacm bound `id` to; the id is kept alive.
    pub(crate) fn from_cm(id: &Arc<CmIdHandle>) -> Result<Self> {
        let ctx = id.verbs();
        if ctx.is_null() {
            return Err(VerbsError::CmNoDevice);
        }
        // SAFETY: ctx is the live context of the id; the device is owned by it.
        let name = unsafe { CStr::from_ptr(sys::ibv_get_device_name((*ctx).device)) }
            .to_string_lossy()
            .into_owned();
        Ok(Self {
            inner: Arc::new(ContextInner {
                ctx,
                name,
                owner: ContextOwner::Cm(Arc::clone(id)),
            }),
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The raw `ibv_context` (for verbs this crate does not wrap).
    pub fn as_raw(&self) -> *mut sys::ibv_context {
        self.inner.ctx
    }

    /// `ibv_query_device`.
    pub fn query_device(&self) -> Result<DeviceAttr> {
        // SAFETY: ibv_device_attr is plain old data; all-zero is a valid value.
        let mut a: sys::ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is open (we hold the Arc); `a` is a valid out-pointer.
        let ret = unsafe { sys::ibv_query_device(self.inner.ctx, &mut a) };
        if ret != 0 {
            return Err(VerbsError::QueryDevice(errno_from_ret(ret)));
        }
        Ok(DeviceAttr {
            max_qp: a.max_qp,
            max_qp_wr: a.max_qp_wr,
            max_sge: a.max_sge,
            max_cqe: a.max_cqe,
            max_mr_size: a.max_mr_size,
            max_qp_rd_atom: a.max_qp_rd_atom,
            max_qp_init_rd_atom: a.max_qp_init_rd_atom,
            phys_port_cnt: a.phys_port_cnt,
        })
    }

    /// `ibv_query_port`. Uses rdma-sys's `___ibv_query_port`, the inline
    /// wrapper of the C header: the bindgen'd `ibv_query_port` symbol takes
    /// the old, shorter compat struct.
    pub fn query_port(&self, port: u8) -> Result<PortAttr> {
        // SAFETY: ibv_port_attr is plain old data; all-zero is a valid value.
        let mut a: sys::ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is open; `a` is a valid out-pointer of the full size.
        let ret = unsafe { sys::___ibv_query_port(self.inner.ctx, port, &mut a) };
        if ret != 0 {
            return Err(VerbsError::QueryPort {
                port,
                source: errno_from_ret(ret),
            });
        }
        Ok(PortAttr {
            state: a.state,
            active_mtu: a.active_mtu,
            gid_tbl_len: a.gid_tbl_len,
            lid: a.lid,
            link_layer: a.link_layer,
        })
    }

    /// `ibv_query_gid`.
    pub fn query_gid(&self, port: u8, index: i32) -> Result<Gid> {
        // SAFETY: ibv_gid is a byte union; all-zero is valid.
        let mut g: sys::ibv_gid = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is open; `g` is a valid out-pointer.
        let ret = unsafe { sys::ibv_query_gid(self.inner.ctx, port, index, &mut g) };
        if ret != 0 {
            return Err(VerbsError::QueryGid {
                port,
                index,
                source: errno_from_ret(ret),
            });
        }
        // SAFETY: every bit pattern is a valid [u8; 16].
        Ok(Gid(unsafe { g.raw }))
    }

    /// The first IPv4-mapped GID of `port` and its index: the GID of the
    /// netdev's IPv4 address. rxe registers RoCEv2 entries only, so on rxe
    /// this is the RoCEv2 IPv4 GID; on a NIC that also lists RoCEv1 entries
    /// with the same bytes, check the type (`rdmaxprt-rxe` reads sysfs).
    pub fn ipv4_gid(&self, port: u8) -> Result<(i32, Gid)> {
        let attr = self.query_port(port)?;
        for i in 0..attr.gid_tbl_len {
            match self.query_gid(port, i) {
                Ok(g) if g.is_ipv4_mapped() => return Ok((i, g)),
                // Unpopulated entries may fail with EINVAL on some providers.
                _ => continue,
            }
        }
        Err(VerbsError::NoIpv4Gid { port })
    }
}
