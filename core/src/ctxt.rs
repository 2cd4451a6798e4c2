//! The send context (`svc_rdma_send_ctxt`): everything one reply needs from
//! `sendto` until its Send completes and a drain releases it.

use crate::backend::{DmaBuf, DmaDevice, Sge};
use alloc::vec::Vec;
use core::fmt;

/// Errors building a reply in a send context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CtxtError<E> {
    /// The reply needs more SGEs than the device allows in one Send.
    TooManySges {
        /// The device's limit.
        max: u32,
    },
    /// Header longer than the persistent header buffer.
    HeaderTooLong {
        /// Requested length.
        len: usize,
        /// Buffer capacity.
        capacity: usize,
    },
    /// A page index, offset or length outside the context's pages.
    OutOfRange,
    /// The backend refused the mapping.
    Map(E),
}

impl<E: fmt::Display> fmt::Display for CtxtError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtxtError::TooManySges { max } => write!(f, "reply needs more than {max} SGEs"),
            CtxtError::HeaderTooLong { len, capacity } => {
                write!(
                    f,
                    "header of {len} bytes exceeds its {capacity}-byte buffer"
                )
            }
            CtxtError::OutOfRange => f.write_str("page range out of bounds"),
            CtxtError::Map(e) => write!(f, "DMA map failed: {e}"),
        }
    }
}

/// Where a completion came from: the transport and a per-transport sequence
/// number (`rpc_rdma_cid`), for tracing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompletionId {
    /// The owning transport's id.
    pub xprt: u32,
    /// Sequence number of the context within the transport.
    pub seq: u32,
}

/// Most transport buffers one reply can hold (see [`SendCtxt::hold`]).
pub const MAX_HELD: usize = 4;

/// The transport buffers a released context gave back: opaque tokens its
/// owner recorded with [`SendCtxt::hold`] (a transport's landing and
/// staging buffers that the reply's chunk Writes gathered from).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeldBufs {
    toks: [u32; MAX_HELD],
    n: u8,
}

impl HeldBufs {
    /// The tokens, in the order they were held.
    pub fn as_slice(&self) -> &[u32] {
        &self.toks[..self.n as usize]
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// One reply's resources.
///
/// SGE 0 always describes the persistently mapped header buffer; SGEs
/// `1..` are mapped per reply and unmapped by the release step, before the
/// pages they cover are released. Transport buffers the reply's Writes
/// read ([`hold`](Self::hold)) belong to the context too, as the kernel's
/// rw contexts and pages belong to `svc_rdma_send_ctxt`: the release step
/// hands them back to the pool's returned list for their transport.
#[doc(alias = "svc_rdma_send_ctxt")]
pub struct SendCtxt<D: DmaDevice> {
    cid: CompletionId,
    hdr: D::Buf,
    hdr_map: Sge,
    sges: Vec<Sge>,
    max_sges: u32,
    pages: Vec<D::Buf>,
    rw: Vec<Sge>,
    held: HeldBufs,
    sqecount: u32,
}

impl<D: DmaDevice> fmt::Debug for SendCtxt<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendCtxt")
            .field("cid", &self.cid)
            .field("sges", &self.sges)
            .field("pages", &self.pages.len())
            .field("rw", &self.rw.len())
            .field("held", &self.held.as_slice())
            .field("sqecount", &self.sqecount)
            .finish()
    }
}

impl<D: DmaDevice> SendCtxt<D> {
    /// Allocates and maps the header buffer (done once per context).
    pub(crate) fn alloc(
        dev: &D,
        cid: CompletionId,
        hdr_size: usize,
        max_sges: u32,
    ) -> Result<Self, D::Error> {
        let hdr = dev.alloc_buf(hdr_size)?;
        let sge0 = dev.dma_map(&hdr, 0, hdr_size)?;
        let mut sges = Vec::with_capacity(max_sges.max(1) as usize);
        sges.push(Sge { length: 0, ..sge0 });
        Ok(Self {
            cid,
            hdr,
            hdr_map: sge0,
            sges,
            max_sges: max_sges.max(1),
            pages: Vec::new(),
            rw: Vec::new(),
            held: HeldBufs::default(),
            sqecount: 0,
        })
    }

    /// This context's completion id.
    pub fn cid(&self) -> CompletionId {
        self.cid
    }

    /// The persistent header buffer, to encode the transport header into.
    pub fn header_buf(&mut self) -> &mut [u8] {
        self.hdr.as_mut_slice()
    }

    /// Sets how many header bytes SGE 0 sends.
    pub fn set_header_len(&mut self, len: usize) -> Result<(), CtxtError<D::Error>> {
        let capacity = self.hdr.as_slice().len();
        if len > capacity {
            return Err(CtxtError::HeaderTooLong { len, capacity });
        }
        // `len <= capacity`, and capacity came from a u32-sized mapping.
        self.sges[0].length = len as u32;
        Ok(())
    }

    /// The header bytes SGE 0 currently covers.
    pub fn header(&self) -> &[u8] {
        &self.hdr.as_slice()[..self.sges[0].length as usize]
    }

    /// The SGE table of the Send WR (SGE 0 = header).
    pub fn sges(&self) -> &[Sge] {
        &self.sges
    }

    /// How many more SGEs the Send can take.
    pub fn sges_left(&self) -> u32 {
        self.max_sges - self.sges.len() as u32
    }

    /// Takes ownership of a reply page; returns its index for mapping.
    pub fn add_page(&mut self, page: D::Buf) -> usize {
        self.pages.push(page);
        self.pages.len() - 1
    }

    /// A page this context owns.
    pub fn page(&self, idx: usize) -> Option<&D::Buf> {
        self.pages.get(idx)
    }

    /// A page this context owns, writable (only before it is mapped).
    pub fn page_mut(&mut self, idx: usize) -> Option<&mut D::Buf> {
        self.pages.get_mut(idx)
    }

    /// Number of owned pages.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Maps a checked range of one owned page.
    fn map_range(
        &self,
        dev: &D,
        page: usize,
        offset: usize,
        len: usize,
    ) -> Result<Sge, CtxtError<D::Error>> {
        let p = self.pages.get(page).ok_or(CtxtError::OutOfRange)?;
        match offset.checked_add(len) {
            Some(end) if end <= p.as_slice().len() && len <= u32::MAX as usize => {
                dev.dma_map(p, offset, len).map_err(CtxtError::Map)
            }
            _ => Err(CtxtError::OutOfRange),
        }
    }

    /// Maps `pages[page][offset..offset + len]` as the next Send SGE.
    pub fn map_page(
        &mut self,
        dev: &D,
        page: usize,
        offset: usize,
        len: usize,
    ) -> Result<Sge, CtxtError<D::Error>> {
        if self.sges.len() as u32 >= self.max_sges {
            return Err(CtxtError::TooManySges { max: self.max_sges });
        }
        let sge = self.map_range(dev, page, offset, len)?;
        self.sges.push(sge);
        Ok(sge)
    }

    /// Maps `pages[page][offset..offset + len]` for a chunk RDMA Write or
    /// Read WR of this reply (an rw resource, released at drain).
    pub fn map_rw(
        &mut self,
        dev: &D,
        page: usize,
        offset: usize,
        len: usize,
    ) -> Result<Sge, CtxtError<D::Error>> {
        let sge = self.map_range(dev, page, offset, len)?;
        self.rw.push(sge);
        Ok(sge)
    }

    /// SGEs mapped for chunk I/O.
    pub fn rw_sges(&self) -> &[Sge] {
        &self.rw
    }

    /// Gives the context a transport buffer (an opaque `token` its owner
    /// understands) that this reply's work requests read: it stays the
    /// context's until the release step, which hands it to the pool's
    /// returned list (after the Send completed, or at once if the reply is
    /// never posted). Returns `false`, holding nothing, when the context
    /// already holds [`MAX_HELD`].
    ///
    /// # Safety
    /// `token` must be one the owner of this context's pool (its
    /// transport) handed out for this context to hold: that owner takes
    /// the token back from the returned list after the release and treats
    /// it as proof that no work request reads the buffer any more (a
    /// transport frees a landing buffer a call may still lend on it). A
    /// forged or repeated token would free a buffer still in use.
    // The one unsafe item of this module: its contract is what makes a
    // returned token safe to act on (see `lib.rs`).
    #[allow(unsafe_code)]
    pub unsafe fn hold(&mut self, token: u32) -> bool {
        let n = self.held.n as usize;
        if n == MAX_HELD {
            return false;
        }
        self.held.toks[n] = token;
        self.held.n += 1;
        true
    }

    /// How many more transport buffers [`hold`](Self::hold) takes.
    pub fn hold_room(&self) -> usize {
        MAX_HELD - self.held.n as usize
    }

    /// The transport buffers held, taken out (the release step).
    pub(crate) fn take_held(&mut self) -> HeldBufs {
        core::mem::take(&mut self.held)
    }

    /// Records how many SQ slots the posted chain takes.
    pub fn set_sqecount(&mut self, n: u32) {
        self.sqecount = n;
    }

    /// SQ slots the posted chain takes.
    pub fn sqecount(&self) -> u32 {
        self.sqecount
    }

    /// Mapped SGEs that a release must unmap (rw + Send SGEs 1..).
    pub fn mapped_count(&self) -> usize {
        self.rw.len() + self.sges.len() - 1
    }

    /// Releases chunk resources and unmaps SGEs 1..n (SGE 0 stays): the
    /// `unmap` step. Returns (unmaps done, unmaps the backend refused).
    pub(crate) fn unmap(&mut self, dev: &D) -> (u64, u64) {
        let (mut done, mut failed) = (0, 0);
        for sge in self.rw.drain(..).chain(self.sges.drain(1..)) {
            match dev.dma_unmap(sge) {
                Ok(()) => done += 1,
                Err(_) => failed += 1,
            }
        }
        self.sges[0].length = 0;
        (done, failed)
    }

    /// Drops the reply pages. Call only after [`unmap`](Self::unmap).
    pub(crate) fn release_pages(&mut self) {
        debug_assert!(
            self.rw.is_empty() && self.sges.len() == 1,
            "pages released while mapped"
        );
        self.pages.clear();
        self.sqecount = 0;
    }

    /// Unmaps SGE 0 for good (context destruction).
    pub(crate) fn destroy(mut self, dev: &D) -> (u64, u64) {
        let (done, failed) = self.unmap(dev);
        self.pages.clear();
        match dev.dma_unmap(self.hdr_map) {
            Ok(()) => (done, failed),
            Err(_) => (done, failed + 1),
        }
    }
}
