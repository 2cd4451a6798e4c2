//! Read chunks: the client's RDMA-Read-able data, pulled with RDMA Read
//! before the call is handed up (`svc_rdma_process_read_list`), and the
//! Read completion (`svc_rdma_wc_read_done`).

use super::call::{CallBuf, RecvdCall};
use super::landing::LandingState;
use super::{DevError, SvcRdmaXprt, XprtError, TAG, WR_ID_IGNORE};
use crate::backend::{QueuePair, SendWr, Sge, WcStatus, WrOp};
use crate::lifecycle::{Policy, SendCtxtLifecycle};
use crate::rpcrdma::{decode_header, Header, RdmaError, Segment};
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Read contexts: a small slab behind a spin lock (the kernel also locks
/// its read-complete queue), with the landing-buffer ownership and the
/// calls waiting for a landing buffer.
pub(crate) struct Reads {
    pub(crate) slots: Vec<Option<ReadCtxt>>,
    pub(crate) free: Vec<u32>,
    pub(crate) ready: VecDeque<u32>,
    /// Which landing buffers are free.
    pub(crate) land: LandingState,
    /// Which staging buffers (`sendto`'s copies) are free.
    pub(crate) stage: LandingState,
    /// Scratch for the tokens taken from the send pool's returned list
    /// (kept to reuse its capacity).
    pub(crate) returned: Vec<u32>,
    /// Send contexts posted (or being posted) that hold landing or
    /// staging buffers, until their release is taken back: what a reply
    /// short of staging memory may wait for.
    pub(crate) ctxt_held: usize,
    /// Receives (context index, length) holding calls with Read chunks
    /// that wait for a landing buffer, oldest first.
    pub(crate) backlog: VecDeque<(u32, u32)>,
}

impl Reads {
    /// No read context yet; `landings` landing buffers and `staging`
    /// staging buffers free.
    pub(crate) fn new(landings: u32, staging: u32) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            land: LandingState::new(landings),
            stage: LandingState::new(staging),
            returned: Vec::new(),
            ctxt_held: 0,
            backlog: VecDeque::new(),
        }
    }
}

/// One call waiting for (or holding) its pulled Read chunk data.
pub(crate) struct ReadCtxt {
    /// The landing buffer the chunks are pulled into, laid out as the
    /// whole RPC message (inline parts copied in around them).
    pub(crate) landing: u32,
    /// The message's length in the landing buffer.
    pub(crate) msg_len: usize,
    /// SQ slots the Read chain holds.
    pub(crate) sqes: u32,
    /// The call's fixed fields and chunk lists.
    pub(crate) meta: CallMeta,
    /// Whether the Read chain completed successfully.
    pub(crate) done: bool,
}

/// How [`SvcRdmaXprt::start_reads`] left a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadStart {
    /// The Reads are posted; the call surfaces when they complete.
    Started,
    /// The call was answered (ERR_CHUNK) or dropped.
    Answered,
    /// No landing buffer now: the call waits (its receive stays held).
    NoBuffer,
}

/// The parts of a call header the reply needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// Transaction id.
    pub xid: u32,
    /// Credits the client asked for.
    pub credits: u32,
    /// The Write list (segments as offered).
    pub write_list: Vec<Vec<Segment>>,
    /// The Reply chunk, if offered.
    pub reply_chunk: Option<Vec<Segment>>,
    /// The rkey to invalidate with Send-with-Invalidate: set only when every
    /// segment of every chunk in the call carried the same handle.
    pub inv_rkey: Option<u32>,
}

impl CallMeta {
    /// Copies what the reply needs out of a decoded header.
    pub(crate) fn from_header(h: &Header<'_>) -> Self {
        let write_list: Vec<Vec<Segment>> =
            h.write_list().iter().map(|c| c.iter().collect()).collect();
        let reply_chunk: Option<Vec<Segment>> = h.reply_chunk().map(|c| c.iter().collect());
        let mut handles = h
            .read_list()
            .iter()
            .map(|r| r.segment.handle)
            .chain(write_list.iter().flatten().map(|s| s.handle))
            .chain(reply_chunk.iter().flatten().map(|s| s.handle));
        let inv_rkey = match handles.next() {
            Some(first) if handles.all(|h| h == first) => Some(first),
            _ => None,
        };
        Self {
            xid: h.xid(),
            credits: h.credits(),
            write_list,
            reply_chunk,
            inv_rkey,
        }
    }
}

/// A Read plan: `(position, length)` per chunk, and every segment to read
/// in the order its bytes land in the buffer.
pub(crate) type ReadPlan = (Vec<(u32, u32)>, Vec<Segment>);

/// The Read plan for a call: distinct positions ascending, each with its
/// segments in list order, and the total length. `None` if a total does not
/// fit in memory limits (`max_total`).
pub(crate) fn plan(h: &Header<'_>, max_total: u64) -> Option<ReadPlan> {
    let mut positions: Vec<u32> = h.read_list().iter().map(|r| r.position).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut chunks = Vec::with_capacity(positions.len());
    let mut segs = Vec::new();
    let mut total = 0u64;
    for p in positions {
        let len = h.read_list().chunk_len(p);
        total = total.checked_add(len)?;
        if total > max_total || len > u32::MAX as u64 {
            return None;
        }
        chunks.push((p, len as u32));
        segs.extend(h.read_list().chunk(p).map(|r| r.segment));
    }
    Some((chunks, segs))
}

/// Where a call's pieces sit in its landing buffer: the message is laid
/// out in place, each chunk at its position in the inline part, XDR-padded
/// to 4 bytes, so the Reads land where the message needs them and nothing
/// is assembled afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The whole message's length.
    pub(crate) msg_len: usize,
    /// Destination offset of each chunk, in `chunks` order.
    pub(crate) chunk_at: Vec<usize>,
    /// Inline ranges `(from, to, dest)` to copy in.
    pub(crate) inline: Vec<(usize, usize, usize)>,
    /// Padding ranges `(dest, len)` to zero.
    pub(crate) pads: Vec<(usize, usize)>,
}

/// Lays out the message: `inline` bytes of inline body and the `(position,
/// length)` chunks, ascending by position. A lone Position Zero chunk is
/// the whole message. `None` if a position lies beyond the inline message
/// (a malformed call).
pub(crate) fn layout(inline: usize, chunks: &[(u32, u32)]) -> Option<Layout> {
    if chunks.len() == 1 && chunks[0].0 == 0 {
        return Some(Layout {
            msg_len: chunks[0].1 as usize,
            chunk_at: alloc::vec![0],
            inline: Vec::new(),
            pads: Vec::new(),
        });
    }
    let mut l = Layout {
        msg_len: 0,
        chunk_at: Vec::with_capacity(chunks.len()),
        inline: Vec::new(),
        pads: Vec::new(),
    };
    let mut at_inline = 0usize;
    for &(pos, len) in chunks {
        let pos = pos as usize;
        if pos < at_inline || pos > inline {
            return None;
        }
        if pos > at_inline {
            l.inline.push((at_inline, pos, l.msg_len));
            l.msg_len += pos - at_inline;
        }
        l.chunk_at.push(l.msg_len);
        let len = len as usize;
        l.msg_len = l.msg_len.checked_add(len)?;
        let pad = (4 - len % 4) % 4;
        if pad != 0 {
            l.pads.push((l.msg_len, pad));
            l.msg_len += pad;
        }
        at_inline = pos;
    }
    if inline > at_inline {
        l.inline.push((at_inline, inline, l.msg_len));
        l.msg_len += inline - at_inline;
    }
    Some(l)
}

impl Layout {
    /// Copies the inline parts and zeroes the padding in `buf` (at least
    /// `msg_len` bytes): everything but the chunks' data.
    pub(crate) fn fill(&self, buf: &mut [u8], inline: &[u8]) {
        for &(from, to, dest) in &self.inline {
            buf[dest..dest + (to - from)].copy_from_slice(&inline[from..to]);
        }
        for &(dest, len) in &self.pads {
            buf[dest..dest + len].fill(0);
        }
    }
}

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    /// Starts pulling a call's Read chunks (`svc_rdma_process_read_list`)
    /// into a landing buffer laid out as the whole message; the call
    /// surfaces from `recvfrom` once the Reads complete. More Reads than
    /// the SQ holds go out in SQ-sized batches; the last batch ends in the
    /// signaled Read that completes the call. With no landing buffer free
    /// the call waits ([`ReadStart::NoBuffer`]) instead of failing.
    #[doc(alias = "svc_rdma_process_read_list")]
    pub(super) fn start_reads(
        &self,
        h: &Header<'_>,
        bytes: &[u8],
    ) -> Result<ReadStart, XprtError<DevError<L>>> {
        let meta = CallMeta::from_header(h);
        let Some((chunks, segs)) = plan(h, self.cfg.max_read_bytes) else {
            self.send_error(meta.xid, meta.credits, RdmaError::Chunk)?;
            return Ok(ReadStart::Answered);
        };
        let inline = h.body_offset().and_then(|o| bytes.get(o..)).unwrap_or(&[]);
        let Some(lay) = layout(inline.len(), &chunks) else {
            self.send_error(meta.xid, meta.credits, RdmaError::Chunk)?;
            return Ok(ReadStart::Answered);
        };
        let take = || {
            self.take_back_bufs();
            self.with_reads(|r| r.land.take(&self.landings, lay.msg_len))
        };
        let land = match take() {
            Some(l) => l,
            None => {
                // Say a call waits, then look once more: a buffer freed
                // since the first look either shows up now or its side
                // sees the flag and schedules the transport. (Deferred:
                // the worker's drain in `release_ctxt` gives the buffers
                // of completed replies back and schedules. Workqueue: the
                // completion scheduled us; wait here for the releases in
                // transit on its threads, which cannot schedule us.)
                self.landing_wait.store(true, Ordering::SeqCst);
                if L::POLICY == Policy::Workqueue {
                    self.send.flush();
                }
                let Some(l) = take() else {
                    return Ok(ReadStart::NoBuffer);
                };
                if !self.backlogged() {
                    self.landing_wait.store(false, Ordering::SeqCst);
                }
                l
            }
        };
        let dev = self.send.pool().device();
        // On a failed allocation the idle buffers of this transport go
        // back to the device first, then one more try (the slot this call
        // took is owned, not idle, so it is not among them).
        // SAFETY: `take` made this call the slot's one holder: no posted
        // work request names its buffer.
        let ensured = match unsafe { self.landings.ensure(dev, land, lay.msg_len.max(1)) } {
            // SAFETY: as above; the slot is still this call's.
            Err(_) if self.trim_bufs_to(0) > 0 => unsafe {
                self.landings.ensure(dev, land, lay.msg_len.max(1))
            },
            r => r,
        };
        let sge = match ensured {
            Ok(sge) => sge,
            Err(e) => {
                self.landing_wait.store(true, Ordering::SeqCst);
                let others_busy = self.with_reads(|r| {
                    r.land.put(land);
                    !r.land.all_free(self.landings.count())
                });
                // A busy landing buffer comes back: wait for it rather than
                // close the connection.
                if others_busy {
                    return Ok(ReadStart::NoBuffer);
                }
                if !self.backlogged() {
                    self.landing_wait.store(false, Ordering::SeqCst);
                }
                return Err(XprtError::Backend(e));
            }
        };
        // SAFETY: as above; the Reads are not posted yet.
        lay.fill(unsafe { self.landings.bytes_mut(land) }, inline);
        let inline_copied: usize = lay.inline.iter().map(|&(f, t, _)| t - f).sum();
        if inline_copied != 0 {
            self.copied(inline_copied);
        }
        let split = super::chain::chain_split(segs.len(), self.sq.depth() as usize);
        let xid = meta.xid;
        let nchunks = chunks.len() as u64;
        let idx = self.with_reads(|r| {
            let ctxt = ReadCtxt {
                landing: land,
                msg_len: lay.msg_len,
                sqes: (segs.len() - split) as u32,
                meta,
                done: false,
            };
            match r.free.pop() {
                Some(i) => {
                    r.slots[i as usize] = Some(ctxt);
                    i
                }
                None => {
                    r.slots.push(Some(ctxt));
                    r.slots.len() as u32 - 1
                }
            }
        });
        let mut sge_lists: Vec<[Sge; 1]> = Vec::with_capacity(segs.len());
        let mut seg_iter = segs.iter();
        for (&(pos, _), &at) in chunks.iter().zip(&lay.chunk_at) {
            let mut off = at as u64;
            for s in seg_iter.by_ref().take(h.read_list().chunk(pos).count()) {
                sge_lists.push([Sge {
                    addr: sge.addr + off,
                    length: s.length,
                    lkey: sge.lkey,
                }]);
                off += s.length as u64;
            }
        }
        let chain: Vec<SendWr<'_>> = segs
            .iter()
            .zip(&sge_lists)
            .enumerate()
            .map(|(i, (s, l))| SendWr {
                wr_id: if i + 1 == segs.len() {
                    (TAG | idx) as u64
                } else {
                    WR_ID_IGNORE
                },
                op: WrOp::Read {
                    remote_addr: s.offset,
                    rkey: s.handle,
                },
                sges: l,
                signaled: i + 1 == segs.len(),
            })
            .collect();
        let (head, tail) = chain.split_at(split);
        // SAFETY: the Read target is the landing buffer this read context
        // owns, which is handed on only after its completion (`read_done`
        // -> `take_read_complete`), freed at teardown after the QP drain,
        // or returned below when the device took none of the chain.
        match unsafe { self.post_batched(head, tail) } {
            Ok(()) => {
                Self::bump(&self.counters.read_calls);
                self.counters
                    .read_chunks
                    .fetch_add(nchunks, Ordering::Relaxed);
                Ok(ReadStart::Started)
            }
            Err(e) => {
                if e.consumed == 0 {
                    self.drop_read(idx);
                } else {
                    // Reads are on the wire: the context stays until
                    // teardown; the connection cannot go on.
                    self.close();
                }
                tracing::debug!(xid, "posting Reads failed");
                Err(e.error)
            }
        }
    }

    /// Frees read context `idx` whose Reads never went out, and its
    /// landing buffer.
    fn drop_read(&self, idx: u32) {
        self.with_reads(|r| {
            if let Some(c) = r.slots.get_mut(idx as usize).and_then(Option::take) {
                r.free.push(idx);
                r.land.put(c.landing);
            }
        });
    }

    /// Starts the Reads of calls that waited for a landing buffer, oldest
    /// first, until one still finds none. Their receives go back to be
    /// reposted as each starts (or is answered).
    pub(super) fn start_backlog(&self) -> Result<(), XprtError<DevError<L>>> {
        while let Some((i, len)) = self.with_reads(|r| r.backlog.front().copied()) {
            // SAFETY: a backlogged receive is held by the backlog (on no
            // list of the receive queue), so nothing writes it.
            let bytes = unsafe { self.recv.bytes(i, len) };
            let res = match decode_header(bytes, &self.cfg.limits) {
                Ok(h) => self.start_reads(&h, bytes),
                // It decoded when it was queued; it cannot fail now.
                Err(_) => Ok(ReadStart::Answered),
            };
            if let Ok(ReadStart::NoBuffer) = res {
                return Ok(());
            }
            let empty = self.with_reads(|r| {
                r.backlog.pop_front();
                r.backlog.is_empty()
            });
            if empty {
                self.landing_wait.store(false, Ordering::SeqCst);
            }
            self.recv.put(i);
            res?;
        }
        Ok(())
    }

    /// Queues the receive `(i, len)` (a call with Read chunks) to wait for
    /// a landing buffer.
    pub(super) fn backlog_push(&self, i: u32, len: u32) {
        // `start_reads` set `landing_wait` before it gave up.
        self.with_reads(|r| r.backlog.push_back((i, len)));
    }

    /// Whether calls wait for a landing buffer.
    pub(super) fn backlogged(&self) -> bool {
        self.with_reads(|r| !r.backlog.is_empty())
    }

    /// `svc_rdma_wc_read_done`: slots back; on success queue the call.
    #[doc(alias = "svc_rdma_wc_read_done")]
    pub(super) fn read_done(&self, idx: u32, status: WcStatus) {
        let sqes = self.with_reads(|r| match r.slots.get_mut(idx as usize) {
            Some(Some(ctxt)) if !ctxt.done => {
                ctxt.done = true;
                if status == WcStatus::Success {
                    r.ready.push_back(idx);
                }
                Some(ctxt.sqes)
            }
            _ => None,
        });
        let Some(sqes) = sqes else {
            Self::bump(&self.counters.bogus_completions);
            return;
        };
        self.sq.wake_send_waiters(sqes);
        if status != WcStatus::Success {
            self.flags().set(XprtFlags::CLOSE);
        }
        self.flags().set(XprtFlags::DATA);
        self.xprt.enqueue();
    }

    /// A call whose Reads completed, lent from its landing buffer.
    pub(super) fn take_read_complete(&self) -> Option<RecvdCall<'_>> {
        let r = self.with_reads(|r| {
            let idx = r.ready.pop_front()?;
            r.free.push(idx);
            r.slots.get_mut(idx as usize).and_then(Option::take)
        })?;
        Self::bump(&self.counters.calls);
        // SAFETY: the read context owned the landing buffer and its Reads
        // completed, so the device no longer writes it; ownership passes to
        // the call, which gives it back (`put_call_buf`) when dropped.
        let bytes = unsafe { self.landings.bytes(r.landing) };
        let msg = &bytes[..r.msg_len.min(bytes.len())];
        // SAFETY: the buffer stays unwritten until the call's drop returns
        // it to the free landing buffers.
        Some(unsafe { RecvdCall::new(r.meta, self, CallBuf::Landing(r.landing), msg) })
    }
}

#[cfg(test)]
mod tests {
    use super::layout;
    use alloc::vec::Vec;

    /// The message as the landing buffer holds it once the Reads of
    /// `data` (the chunks one after another) landed; starts from garbage
    /// to show nothing relies on a zero-filled buffer.
    fn assemble(inline: &[u8], chunks: &[(u32, u32)], data: &[u8]) -> Option<Vec<u8>> {
        let l = layout(inline.len(), chunks)?;
        let mut buf = alloc::vec![0xEE; l.msg_len + 5];
        let mut from = 0;
        for (&(_, len), &at) in chunks.iter().zip(&l.chunk_at) {
            let len = len as usize;
            buf[at..at + len].copy_from_slice(&data[from..from + len]);
            from += len;
        }
        l.fill(&mut buf, inline);
        buf.truncate(l.msg_len);
        Some(buf)
    }

    #[test]
    fn position_zero_is_the_whole_message() {
        assert_eq!(assemble(&[], &[(0, 3)], b"abcX").unwrap(), b"abc");
    }

    #[test]
    fn positional_chunks_are_inserted_and_padded() {
        let inline = b"HEADtail";
        let m = assemble(inline, &[(4, 3)], b"xyz").unwrap();
        assert_eq!(m, b"HEADxyz\0tail");
    }

    #[test]
    fn two_chunks_land_in_order_with_their_padding() {
        let inline = b"AABBCC";
        let m = assemble(inline, &[(2, 1), (4, 4)], b"x1234").unwrap();
        assert_eq!(m, b"AAx\0\0\0BB1234CC");
    }

    #[test]
    fn a_position_past_the_message_is_rejected() {
        assert!(assemble(b"ab", &[(8, 1)], b"x").is_none());
        assert!(layout(8, &[(4, 1), (2, 1)]).is_none(), "descending");
    }
}
