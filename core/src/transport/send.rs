//! `svc_rdma_sendto`: building reply WR chains in send contexts.

use super::call::CallBuf;
use super::landing::HeldBuf;
use super::read::{ChunkSegs, WriteChunkList};
use super::{DevError, RecvdCall, SvcRdmaXprt, XprtError, WR_ID_IGNORE};
use crate::backend::{DmaBuf, DmaDevice, QueuePair, SendWr, Sge, WrOp};
use crate::ctxt::SendCtxt;
use crate::lifecycle::{Committed, GetError, OwnedCtxt, Policy, SendCtxtLifecycle};
use crate::rpcrdma::{encode_error, encode_reply, MsgProc, RdmaError, ReplySpec, Segment};
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};
use smallvec::SmallVec;

/// WRs of a reply chain held inline (on the stack) before spilling to the
/// heap: the Send and up to three RDMA Writes.
const INLINE_CHAIN: usize = 4;

/// A reply's chunk Writes `(local SGE, remote address, rkey)`, held
/// inline up to [`INLINE_CHAIN`].
type Writes = SmallVec<[(Sge, u64, u32); INLINE_CHAIN]>;

/// RDMA Writes of `data` (at `base` within one mapped region) into the
/// peer's `segs`, appended to `wrs`; returns the segments with the lengths
/// actually written (zero for unused ones).
fn plan_writes(base: Sge, data_len: u32, segs: &[Segment], wrs: &mut Writes) -> ChunkSegs {
    let mut written = ChunkSegs::with_capacity(segs.len());
    let mut off = 0u32;
    for s in segs {
        let n = s.length.min(data_len - off);
        if n > 0 {
            let sge = Sge {
                addr: base.addr + off as u64,
                length: n,
                lkey: base.lkey,
            };
            wrs.push((sge, s.offset, s.handle));
        }
        written.push(Segment { length: n, ..*s });
        off += n;
    }
    written
}

/// Zero bytes for XDR padding.
const XDR_PAD: [u8; 3] = [0; 3];

/// The XDR padding after `len` bytes of opaque data: 0 to 3 bytes.
fn xdr_pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn total(segs: &[Segment]) -> u64 {
    segs.iter().map(|s| s.length as u64).sum()
}

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    /// `svc_rdma_send_ctxt_get`: a send context, waiting (never closing) if
    /// the pool is at its cap:
    /// Send completions wake the SQ space queue, which we wait on.
    #[doc(alias = "svc_rdma_send_ctxt_get")]
    fn get_ctxt(&self) -> Result<OwnedCtxt<'_, L>, XprtError<DevError<L>>> {
        loop {
            match self.send.get() {
                Ok(c) => return Ok(c),
                Err(GetError::Alloc(e)) => return Err(XprtError::Backend(e)),
                Err(GetError::AtCap) => {
                    // Completions wake the SQ space queue; `may_progress`
                    // also covers contexts already on their way back (a
                    // Workqueue release in flight), which `get` waits for.
                    self.sq
                        .space_wait()
                        .wait_until(&|| self.send.may_progress() || self.sq.closed());
                    if self.sq.closed() {
                        return Err(XprtError::Closed);
                    }
                }
            }
        }
    }

    /// Posts a built context with its Write WRs ahead of the Send. A chain
    /// longer than the SQ goes out in SQ-sized batches: the Writes that do
    /// not fit with the Send first, then the rest with the Send, whose
    /// completion returns that last batch's slots (the context's
    /// `sqecount`).
    #[doc(alias = "svc_rdma_post_send")]
    fn post_chain(
        &self,
        mut c: OwnedCtxt<'_, L>,
        writes: &[(Sge, u64, u32)],
        inv_rkey: Option<u32>,
    ) -> Result<(), XprtError<DevError<L>>> {
        let depth = self.sq.depth() as usize;
        let split = super::chain::chain_split(writes.len() + 1, depth);
        c.set_sqecount((writes.len() + 1 - split) as u32);
        // Inline up to a few WRs (an inline reply is one Send): no heap
        // allocation per reply on the common path.
        let mut write_sges: SmallVec<[[Sge; 1]; INLINE_CHAIN]> =
            SmallVec::with_capacity(writes.len());
        for w in writes {
            write_sges.push([w.0]);
        }
        let res = c.post_committed(|wr_id, ctxt: &SendCtxt<L::Dev>| {
            let mut chain: SmallVec<[SendWr<'_>; INLINE_CHAIN]> =
                SmallVec::with_capacity(writes.len() + 1);
            for (w, sges) in writes.iter().zip(&write_sges) {
                chain.push(SendWr {
                    wr_id: WR_ID_IGNORE,
                    op: WrOp::Write {
                        remote_addr: w.1,
                        rkey: w.2,
                    },
                    sges,
                    signaled: false,
                });
            }
            chain.push(SendWr {
                wr_id,
                op: match inv_rkey {
                    Some(rkey) => WrOp::SendInv { rkey },
                    None => WrOp::Send,
                },
                sges: ctxt.sges(),
                signaled: true,
            });
            let (head, tail) = chain.split_at(split);
            // SAFETY: every SGE names memory owned by this send context
            // (header buffer, reply pages, rw buffers), which stays mapped
            // and alive until the Send's completion is handled and a drain
            // releases it, or until teardown's reclaim after the QP drain.
            // If part of the chain went out, `post` keeps the context
            // posted (a non-zero `consumed`), so it is not released early.
            unsafe { self.post_batched(head, tail) }
        });
        match res {
            Ok(committed) => {
                Self::bump(&self.counters.replies);
                if committed == Committed::CompletedFirst {
                    // The Send completed before `post` committed: `post`
                    // itself queued the release, after the completion
                    // handler's wake of the SQ space queue. A worker of this
                    // transport waiting there for a release (a `get` at the
                    // pool's cap, a reply in `stage` for held buffers)
                    // checked too early: wake it now. Only this race pays
                    // the fence; the common path (the completion handler
                    // releases, then wakes) pays nothing here. The handler's
                    // after-put step (`after_complete`, by policy) did not
                    // run either: run it here.
                    self.after_complete();
                    self.sq.wake_space_waiters();
                }
                Ok(())
            }
            Err(f) => {
                if f.error.consumed != 0 {
                    // Part of the chain is on the wire but the Send (last)
                    // never went out, so no completion names this context:
                    // teardown reclaims it after the QP drain, the first
                    // moment its memory is safe. The QP is unusable: close.
                    Self::bump(&self.counters.partial_posts);
                    self.close();
                }
                Err(f.error.error)
            }
        }
    }

    /// `svc_rdma_send_error_msg`: sends an RDMA_ERROR (ERR_VERS or
    /// ERR_CHUNK) for `xid`, granting credits as a reply to a call that
    /// asked for `asked` (see [`credits_for`](Self::credits_for)).
    #[doc(alias = "svc_rdma_send_error_msg")]
    pub fn send_error(
        &self,
        xid: u32,
        asked: u32,
        err: RdmaError,
    ) -> Result<(), XprtError<DevError<L>>> {
        let mut c = self.get_ctxt()?;
        let credits = self.credits_for(asked);
        let len = encode_error(c.header_buf(), xid, credits, err)
            .map_err(|_| XprtError::Internal("header buffer too small for RDMA_ERROR"))?;
        c.set_header_len(len)
            .map_err(|_| XprtError::Internal("header length"))?;
        Self::bump(&self.counters.error_replies);
        Self::bump(match err {
            RdmaError::Vers { .. } => &self.counters.err_vers,
            RdmaError::Chunk => &self.counters.err_chunk,
        });
        self.post_chain(c, &[], None)
    }

    /// `svc_rdma_sendto`: sends the reply to `call`.
    ///
    /// `reply` is the RPC reply message in pieces (e.g. header, results);
    /// `payload` is bulk data for the call's first Write chunk. Without a
    /// Write chunk the payload is sent inline after the reply pieces.
    /// Inline if the whole fits the inline threshold; otherwise through the
    /// Reply chunk; otherwise the client gets ERR_CHUNK and this returns
    /// [`XprtError::ReplyTooLarge`].
    ///
    /// A `payload` that lies within the message of a call whose Read
    /// chunks were pulled (e.g. an echo, or data a service returns from its
    /// arguments) is written into the Write chunk straight from the call's
    /// landing buffer, uncopied: the reply's send context then holds that
    /// buffer too, and it is reused only once the call is dropped and the
    /// context released (its Send completed and a drain ran). Any other
    /// payload is copied first.
    ///
    /// Copies (an owned payload for a Write chunk, a reply through the
    /// Reply chunk) go into one of the transport's staging buffers, mapped
    /// once and given to the reply's send context, which gives it back when
    /// released; or into a fresh page of the send context when all are in
    /// use. A reply that is not posted gives its buffers back at once.
    #[doc(alias = "svc_rdma_sendto")]
    pub fn sendto(
        &self,
        call: &RecvdCall<'_>,
        reply: &[&[u8]],
        payload: Option<&[u8]>,
    ) -> Result<(), XprtError<DevError<L>>> {
        if self.flags().test(XprtFlags::CLOSE) {
            return Err(XprtError::Closed);
        }
        let res = self.sendto_in(call, reply, payload);
        if res.is_err() {
            // A reply that was not posted released its send context on
            // the spot: its buffers are on the returned list now. (One
            // whose chain went out part way stays posted: teardown
            // releases it after the QP drain.)
            self.take_back_bufs();
        }
        res
    }

    fn sendto_in(
        &self,
        call: &RecvdCall<'_>,
        reply: &[&[u8]],
        payload: Option<&[u8]>,
    ) -> Result<(), XprtError<DevError<L>>> {
        let meta = &call.meta;
        let mut c = self.get_ctxt()?;
        let dev = c.device();
        let mut writes = Writes::new();
        // Every offered Write chunk goes back, with the lengths written
        // (none, unless the payload goes in the first).
        let mut written_chunks = WriteChunkList::new();
        for ch in &meta.write_list {
            let mut unused = ChunkSegs::from_slice(ch);
            for s in &mut unused {
                s.length = 0;
            }
            written_chunks.push(unused);
        }
        // The payload goes inline after the reply when there is no Write
        // chunk for it, XDR-padded to a multiple of 4 bytes (RFC 4506
        // section 4.10: it is the tail of an opaque whose length the reply
        // already encoded). In a Write chunk it goes unpadded (RFC 8166
        // section 3.5.3).
        let mut extra: Option<&[u8]> = None;
        let mut pad: &[u8] = &[];
        let mut used_write_chunk = false;
        match (payload, meta.write_list.first()) {
            (Some(p), Some(chunk)) if !p.is_empty() => {
                let room = total(chunk);
                if p.len() as u64 > room {
                    drop(c);
                    self.send_error(meta.xid, meta.credits, RdmaError::Chunk)?;
                    return Err(XprtError::WriteChunkTooSmall {
                        payload: p.len(),
                        chunk: room,
                    });
                }
                let base = match self.lend(&mut c, call, p) {
                    Some(sge) => sge,
                    None => self.stage(&mut c, dev, [p].into_iter())?,
                };
                written_chunks[0] = plan_writes(base, p.len() as u32, chunk, &mut writes);
                used_write_chunk = true;
            }
            (Some(p), None) => {
                extra = Some(p);
                pad = &XDR_PAD[..xdr_pad_len(p.len())];
            }
            _ => {}
        }
        let pieces = || {
            reply
                .iter()
                .copied()
                .chain(extra)
                .chain(Some(pad).filter(|p| !p.is_empty()))
        };
        let msg_len: usize = pieces().map(<[u8]>::len).sum();
        let mut chunk_refs: SmallVec<[&[Segment]; 1]> = SmallVec::new();
        for ch in &written_chunks {
            chunk_refs.push(ch.as_slice());
        }
        let inline_spec = ReplySpec {
            xid: meta.xid,
            credits: self.credits_for(meta.credits),
            proc: MsgProc::Msg,
            write_list: &chunk_refs,
            reply_chunk: None,
        };
        let reply_chunk_lens;
        let mut used_reply_chunk = false;
        let hdr_len = if inline_spec.encoded_len() + msg_len <= self.cfg.max_inline_send {
            let h = encode_reply(c.header_buf(), &inline_spec)
                .map_err(|_| XprtError::Internal("header buffer too small"))?;
            self.add_inline(&mut c, dev, h, pieces())?
        } else if let Some(rc) = meta
            .reply_chunk
            .as_deref()
            .filter(|rc| total(rc) >= msg_len as u64)
        {
            let base = self.stage(&mut c, dev, pieces())?;
            reply_chunk_lens = plan_writes(base, msg_len as u32, rc, &mut writes);
            used_reply_chunk = true;
            let spec = ReplySpec {
                proc: MsgProc::NoMsg,
                reply_chunk: Some(&reply_chunk_lens),
                ..inline_spec
            };
            encode_reply(c.header_buf(), &spec)
                .map_err(|_| XprtError::Internal("header buffer too small"))?
        } else {
            drop(c);
            self.send_error(meta.xid, meta.credits, RdmaError::Chunk)?;
            return Err(XprtError::ReplyTooLarge { needed: msg_len });
        };
        c.set_header_len(hdr_len)
            .map_err(|_| XprtError::Internal("header length"))?;
        let inv = meta.inv_rkey.filter(|_| self.cfg.send_with_invalidate);
        // A context that holds buffers is counted from here until its
        // release is taken back (a reply short of staging memory waits only
        // while such contexts exist). `lend` and `stage` leave room for the
        // mark.
        // SAFETY: the Posted mark names no buffer; `take_back_bufs` only
        // counts it down.
        if c.hold_room() < crate::ctxt::MAX_HELD && unsafe { c.hold(HeldBuf::Posted.token()) } {
            self.with_reads(|r| r.ctxt_held += 1);
        }
        self.post_chain(c, &writes, inv)?;
        if used_write_chunk {
            Self::bump(&self.counters.write_chunks);
        }
        if used_reply_chunk {
            Self::bump(&self.counters.reply_chunks);
        }
        Ok(())
    }

    /// The mapping of `payload` inside `call`'s landing buffer, if it lies
    /// there (and `call` is this transport's): the buffer is then also the
    /// send context's (one more holder), until the context is released.
    fn lend(&self, c: &mut OwnedCtxt<'_, L>, call: &RecvdCall<'_>, payload: &[u8]) -> Option<Sge> {
        let Some(CallBuf::Landing(i)) = call.buf() else {
            return None;
        };
        if !call.is_from(self as *const Self as *const u8) || c.hold_room() < 2 {
            return None;
        }
        // The message starts `lead` bytes into the buffer (read.rs).
        // SAFETY: the call holds landing slot `i` until it is dropped, which
        // `&call` excludes, and its Reads completed (the device no longer
        // writes it).
        let buf = unsafe { self.landings.bytes(i) };
        let msg_at = (call.msg().as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
        let off = msg_at.checked_add(call.offset_of(payload)?)?;
        if off.checked_add(payload.len())? > buf.len() {
            return None;
        }
        // SAFETY: as above.
        let sge = unsafe { self.landings.sge(i) }?;
        if !self.with_reads(|r| r.land.share(i)) {
            return None;
        }
        // SAFETY: `share` just made this context a holder of slot `i`; its
        // release gives that share back once.
        unsafe { c.hold(HeldBuf::Landing(i).token()) };
        Some(Sge {
            addr: sge.addr + off as u64,
            length: payload.len() as u32,
            lkey: sge.lkey,
        })
    }

    /// Counts a host copy of `n` message bytes.
    pub(super) fn copied(&self, n: usize) {
        Self::bump(&self.counters.copies);
        self.counters
            .copied_bytes
            .fetch_add(n as u64, core::sync::atomic::Ordering::Relaxed);
    }

    /// Copies `pieces` one after another into a staging buffer, which the
    /// send context then holds (or, with none free, into a new page of the
    /// context) mapped for chunk Writes; returns the mapping.
    ///
    /// With no memory for it (registered memory exhausted, e.g. a device
    /// whose pools hand out whole chunks, all held by landing and staging
    /// buffers): first this transport's idle buffers go back to the
    /// device; then, while replies in flight hold buffers, it waits for one
    /// to be released (backpressure, as a Read-chunk call waits for a
    /// landing buffer) instead of failing the reply and closing the
    /// connection.
    fn stage<'p>(
        &self,
        c: &mut OwnedCtxt<'_, L>,
        dev: &L::Dev,
        pieces: impl Iterator<Item = &'p [u8]> + Clone,
    ) -> Result<Sge, XprtError<DevError<L>>> {
        let len: usize = pieces.clone().map(<[u8]>::len).sum();
        let copy_in = |buf: &mut [u8]| {
            let mut at = 0;
            for p in pieces.clone() {
                buf[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
        };
        self.copied(len);
        loop {
            // Room for this buffer and the posted mark.
            let room = c.hold_room() >= 2;
            if room {
                self.take_back_bufs();
            }
            // Buffers taken back by anyone from here on make this reply
            // look again rather than wait for them.
            let seen = self.bufs_back();
            if room {
                if let Some(i) = self.with_reads(|r| r.stage.take(&self.staging, len)) {
                    // SAFETY: `take` made this reply the slot's one holder:
                    // no posted work request names it.
                    match unsafe { self.staging.ensure(dev, i, len.max(1)) } {
                        Ok(sge) => {
                            // SAFETY: `take` made this reply the slot's one
                            // holder; the context's release gives it back.
                            unsafe { c.hold(HeldBuf::Staging(i).token()) };
                            // SAFETY: as above; the Writes are not posted yet.
                            copy_in(unsafe { self.staging.bytes_mut(i) });
                            return Ok(Sge {
                                length: len.max(1) as u32,
                                ..sge
                            });
                        }
                        Err(_) => {
                            self.with_reads(|r| r.stage.put(i));
                        }
                    }
                }
            }
            let e = match dev.alloc_buf(len.max(1)) {
                Ok(mut page) => {
                    copy_in(page.as_mut_slice());
                    let i = c.add_page(page);
                    return c.map_rw(dev, i, 0, len.max(1)).map_err(|e| match e {
                        crate::ctxt::CtxtError::Map(e) => XprtError::Backend(e),
                        _ => XprtError::Internal("rw mapping"),
                    });
                }
                Err(e) => e,
            };
            // Registered memory exhausted: give back this transport's idle
            // landing and staging buffers, then try again.
            if self.trim_bufs_to(0) > 0 {
                continue;
            }
            if !self.wait_for_held_bufs(seen)? {
                return Err(XprtError::Backend(e));
            }
        }
    }

    /// Waits until a reply in flight that holds landing or staging buffers
    /// may have been released, drains, and takes its buffers back; returns
    /// `false` at once when no posted reply holds any (nothing to wait
    /// for: the buffers are held by calls, or by nobody). Buffers taken
    /// back since the caller read `seen` (from
    /// [`bufs_back`](Self::bufs_back), before its last look at the free
    /// ones) end the wait, or make it return `true` at once: another
    /// worker's drain may have taken them back, leaving nothing pending or
    /// returned and no completion to come.
    /// The wait is the SQ space queue, which Send completions and
    /// take-backs wake (a poll group's thread polls while it waits).
    /// Workqueue releases on threads that wake no one: there it does not
    /// wait.
    fn wait_for_held_bufs(&self, seen: u64) -> Result<bool, XprtError<DevError<L>>> {
        let posted = self.with_reads(|r| r.ctxt_held);
        if posted == 0 || L::POLICY == Policy::Workqueue {
            return Ok(self.bufs_back() != seen);
        }
        Self::bump(&self.counters.stage_waits);
        let pool = self.send.pool();
        self.sq.space_wait().wait_until(&|| {
            pool.has_pending_release()
                || pool.has_returned()
                || self.bufs_back() != seen
                || self.sq.closed()
        });
        if self.sq.closed() {
            return Err(XprtError::Closed);
        }
        // This is the worker: release what completed, take its buffers.
        self.send.drain();
        self.take_back_bufs();
        Ok(true)
    }

    /// Adds the inline reply after a header of `hdr` bytes: pulled up
    /// (copied) into the persistently mapped header buffer when it is small
    /// (at most `pullup_threshold` bytes: a copy is cheaper than a map and
    /// an unmap, as the kernel's `svc_rdma_pull_up_needed` decides) or when
    /// it has more pieces than the Send has SGEs; otherwise one mapped page
    /// per piece. Returns the header (SGE 0) length.
    fn add_inline<'p>(
        &self,
        c: &mut OwnedCtxt<'_, L>,
        dev: &L::Dev,
        hdr: usize,
        pieces: impl Iterator<Item = &'p [u8]> + Clone,
    ) -> Result<usize, XprtError<DevError<L>>> {
        let nonempty = pieces.clone().filter(|p| !p.is_empty()).count() as u32;
        let len: usize = pieces.clone().map(<[u8]>::len).sum();
        let small = len <= self.cfg.pullup_threshold;
        if !small && nonempty < self.max_send_sge.min(c.sges_left() + 1) {
            for p in pieces.filter(|p| !p.is_empty()) {
                let mut page = dev.alloc_buf(p.len()).map_err(XprtError::Backend)?;
                page.as_mut_slice().copy_from_slice(p);
                self.copied(p.len());
                let i = c.add_page(page);
                c.map_page(dev, i, 0, p.len()).map_err(|e| match e {
                    crate::ctxt::CtxtError::Map(e) => XprtError::Backend(e),
                    _ => XprtError::Internal("send SGEs"),
                })?;
            }
            return Ok(hdr);
        }
        // Pull-up: copy the pieces behind the header.
        let buf = c.header_buf();
        let mut at = hdr;
        for p in pieces {
            let end = at + p.len();
            let dst = buf
                .get_mut(at..end)
                .ok_or(XprtError::Internal("pull-up exceeds the header buffer"))?;
            dst.copy_from_slice(p);
            at = end;
        }
        self.copied(at - hdr);
        Ok(at)
    }
}
