//! Protection domains.

use std::sync::Arc;

use rdma_sys as sys;

use crate::device::Context;
use crate::error::{last_errno, Result, VerbsError};

/// A protection domain (`ibv_pd`). Cheap to clone; deallocated only after the
/// last clone and every memory pool and QP made in it are gone (each holds a
/// clone): MR before PD, QP before PD.
#[derive(Clone)]
pub struct ProtectionDomain {
    pub(crate) inner: Arc<PdInner>,
}

pub(crate) struct PdInner {
    pub(crate) pd: *mut sys::ibv_pd,
    pub(crate) ctx: Context,
}

// SAFETY: ibv_pd may be used from any thread (libibverbs is thread safe);
// the pointer is freed only in Drop, after the last user.
unsafe impl Send for PdInner {}
// SAFETY: as above.
unsafe impl Sync for PdInner {}

impl Drop for PdInner {
    fn drop(&mut self) {
        // SAFETY: pd came from ibv_alloc_pd; MRs and QPs hold an Arc to this
        // inner, so all of them are already destroyed.
        let ret = unsafe { sys::ibv_dealloc_pd(self.pd) };
        if ret != 0 {
            tracing::warn!(ret, "ibv_dealloc_pd failed (objects still in the PD?)");
        }
    }
}

impl std::fmt::Debug for ProtectionDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectionDomain")
            .field("device", &self.inner.ctx.name())
            .finish_non_exhaustive()
    }
}

impl ProtectionDomain {
    /// `ibv_alloc_pd` on `ctx`.
    pub fn new(ctx: &Context) -> Result<Self> {
        // SAFETY: ctx is open for as long as we hold a clone of it.
        let pd = unsafe { sys::ibv_alloc_pd(ctx.as_raw()) };
        if pd.is_null() {
            return Err(VerbsError::AllocPd(last_errno()));
        }
        Ok(Self {
            inner: Arc::new(PdInner {
                pd,
                ctx: ctx.clone(),
            }),
        })
    }

    /// The device this PD belongs to.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// The raw `ibv_pd`.
    pub fn as_raw(&self) -> *mut sys::ibv_pd {
        self.inner.pd
    }
}
