//! Read chunks: the client's RDMA-Read-able data, pulled with RDMA Read
//! before the call is handed up (`svc_rdma_process_read_list`), and the
//! Read completion (`svc_rdma_wc_read_done`).

use super::call::{CallBuf, RecvdCall};
use super::landing::{buf_size, LandingState};
use super::{DevError, SvcRdmaXprt, XprtError, TAG, WR_ID_IGNORE};
use crate::backend::{QueuePair, SendWr, Sge, WcStatus, WrOp};
use crate::lifecycle::{Policy, SendCtxtLifecycle};
use crate::rpcrdma::{decode_header, Header, RdmaError, ReadSegment, Segment};
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use smallvec::SmallVec;

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
    /// Where the message starts in the landing buffer (see [`lead`]).
    pub(crate) lead: usize,
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

/// A chunk's segments as a call offered them: up to two held inline (a
/// client registers a chunk as one or two segments), more spill to the
/// heap.
pub type ChunkSegs = SmallVec<[Segment; 2]>;

/// A call's Write list: one chunk held inline (more spill to the heap).
pub type WriteChunkList = SmallVec<[ChunkSegs; 1]>;

/// The parts of a call header the reply needs. Held inline: copying them
/// out of a call with one Write chunk of up to two segments allocates
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// Transaction id.
    pub xid: u32,
    /// Credits the client asked for.
    pub credits: u32,
    /// The Write list (segments as offered).
    pub write_list: WriteChunkList,
    /// The Reply chunk, if offered.
    pub reply_chunk: Option<ChunkSegs>,
    /// The rkey to invalidate with Send-with-Invalidate: set only when every
    /// segment of every chunk in the call carried the same handle.
    pub inv_rkey: Option<u32>,
}

impl CallMeta {
    /// Copies what the reply needs out of a decoded header.
    pub(crate) fn from_header(h: &Header<'_>) -> Self {
        Self::with_read_handles(h, h.read_list().iter().map(|r| r.segment.handle))
    }

    /// As [`from_header`](Self::from_header), with the Read list's handles
    /// given (already walked by the caller).
    pub(crate) fn with_read_handles(h: &Header<'_>, reads: impl Iterator<Item = u32>) -> Self {
        let mut write_list = WriteChunkList::new();
        for c in h.write_list().iter() {
            let mut segs = ChunkSegs::new();
            for s in c.iter() {
                segs.push(s);
            }
            write_list.push(segs);
        }
        let reply_chunk: Option<ChunkSegs> = h.reply_chunk().map(|c| {
            let mut segs = ChunkSegs::new();
            for s in c.iter() {
                segs.push(s);
            }
            segs
        });
        let mut handles = reads
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

/// Read segments (and chunks) of a call held inline before spilling to
/// the heap: a Position Zero chunk of a few segments plans with no heap
/// allocation.
const INLINE_READS: usize = 4;

/// A Read plan: the chunks and every segment to read, in the order its
/// bytes land in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadPlan {
    /// `(position, length)` per chunk, positions distinct and ascending.
    pub(crate) chunks: SmallVec<[(u32, u32); INLINE_READS]>,
    /// The Read list's entries sorted by position (stable: each chunk's
    /// segments in list order), i.e. in landing order.
    pub(crate) segs: SmallVec<[ReadSegment; INLINE_READS]>,
}

/// The Read plan for a call: distinct positions ascending, each with its
/// segments in list order, and the total length. The Read list is walked
/// once. `None` if a total does not fit in memory limits (`max_total`), or
/// there is nothing to read.
pub(crate) fn plan(h: &Header<'_>, max_total: u64) -> Option<ReadPlan> {
    let mut segs: SmallVec<[ReadSegment; INLINE_READS]> = SmallVec::new();
    for r in h.read_list().iter() {
        segs.push(r);
    }
    // Stable, so each chunk keeps its segments in list order; a short
    // slice sorts in place (insertion sort, no scratch buffer).
    if segs.windows(2).any(|w| w[0].position > w[1].position) {
        segs.sort_by_key(|r| r.position);
    }
    if segs.is_empty() {
        return None;
    }
    let mut chunks: SmallVec<[(u32, u32); INLINE_READS]> = SmallVec::new();
    let mut total = 0u64;
    for r in &segs {
        let len = u64::from(r.segment.length);
        total = total.checked_add(len)?;
        if total > max_total {
            return None;
        }
        match chunks.last_mut() {
            Some((p, l)) if *p == r.position => {
                *l = u32::try_from(u64::from(*l) + len).ok()?;
            }
            _ => chunks.push((r.position, r.segment.length)),
        }
    }
    Some(ReadPlan { chunks, segs })
}

/// Where a call's pieces sit in its landing buffer: the message is laid
/// out in place, each chunk at its position in the inline part, XDR-padded
/// to 4 bytes, so the Reads land where the message needs them and nothing
/// is assembled afterwards. Held inline for a few chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The whole message's length.
    pub(crate) msg_len: usize,
    /// Destination offset of each chunk, in `chunks` order.
    pub(crate) chunk_at: SmallVec<[usize; INLINE_READS]>,
    /// Inline ranges `(from, to, dest)` to copy in.
    pub(crate) inline: SmallVec<[(usize, usize, usize); INLINE_READS]>,
    /// Padding ranges `(dest, len)` to zero.
    pub(crate) pads: SmallVec<[(usize, usize); INLINE_READS]>,
}

/// Lays out the message: `inline` bytes of inline body and the `(position,
/// length)` chunks, ascending by position. A lone Position Zero chunk is
/// the whole message. `None` if a position lies beyond the inline message
/// (a malformed call).
pub(crate) fn layout(inline: usize, chunks: &[(u32, u32)]) -> Option<Layout> {
    if chunks.len() == 1 && chunks[0].0 == 0 {
        return Some(Layout {
            msg_len: chunks[0].1 as usize,
            chunk_at: smallvec::smallvec![0],
            inline: SmallVec::new(),
            pads: SmallVec::new(),
        });
    }
    let mut l = Layout {
        msg_len: 0,
        chunk_at: SmallVec::new(),
        inline: SmallVec::new(),
        pads: SmallVec::new(),
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

/// Cache-line size the landing layout aligns to.
const LINE: u64 = 64;

/// Where in its landing buffer a message starts: the offset that puts the
/// first chunk's bytes at the same alignment within a cache line as its
/// source (`remote`, the first Read segment's address), so the Read moves
/// whole lines into whole lines. For a Position Zero call from a client
/// that places its arguments line-aligned (after the call header's room),
/// the arguments then land line-aligned too, and a Write chunk that
/// returns them reads from aligned memory.
fn lead(remote: u64, chunk_at: usize) -> usize {
    (remote.wrapping_sub(chunk_at as u64) % LINE) as usize
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
        let Some(ReadPlan { chunks, segs }) = plan(h, self.cfg.max_read_bytes) else {
            self.send_error(h.xid(), h.credits(), RdmaError::Chunk)?;
            return Ok(ReadStart::Answered);
        };
        let inline = h.body_offset().and_then(|o| bytes.get(o..)).unwrap_or(&[]);
        let Some(lay) = layout(inline.len(), &chunks) else {
            self.send_error(h.xid(), h.credits(), RdmaError::Chunk)?;
            return Ok(ReadStart::Answered);
        };
        // Aligned only within the buffer the message alone needs: a device
        // handing out fixed-size chunks fits what it fitted before.
        let lead = Some(lead(segs[0].segment.offset, lay.chunk_at[0]))
            .filter(|l| buf_size(l + lay.msg_len) == buf_size(lay.msg_len))
            .unwrap_or(0);
        let need = lead + lay.msg_len;
        let take = || {
            self.take_back_bufs();
            self.with_reads(|r| r.land.take(&self.landings, need))
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
        let ensured = match unsafe { self.landings.ensure(dev, land, need.max(1)) } {
            // SAFETY: as above; the slot is still this call's.
            Err(_) if self.trim_bufs_to(0) > 0 => unsafe {
                self.landings.ensure(dev, land, need.max(1))
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
        lay.fill(
            unsafe { &mut self.landings.bytes_mut(land)[lead..] },
            inline,
        );
        let inline_copied: usize = lay.inline.iter().map(|&(f, t, _)| t - f).sum();
        if inline_copied != 0 {
            self.copied(inline_copied);
        }
        let split = super::chain::chain_split(segs.len(), self.sq.depth() as usize);
        // The reply's needs, copied once the call is sure to go on (not
        // for a call that waits for a landing buffer).
        let meta = CallMeta::with_read_handles(h, segs.iter().map(|r| r.segment.handle));
        let xid = meta.xid;
        let nchunks = chunks.len() as u64;
        let idx = self.with_reads(|r| {
            let ctxt = ReadCtxt {
                landing: land,
                lead,
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
        // Each segment lands after the previous one of its chunk, the
        // chunk at its place in the message (`segs` is in landing order).
        let mut sge_lists: SmallVec<[[Sge; 1]; INLINE_READS]> = SmallVec::with_capacity(segs.len());
        // `plan` made one chunk per run of equal positions in `segs`, so
        // a new position is the next chunk.
        let (mut ci, mut off) = (0usize, (lead + lay.chunk_at[0]) as u64);
        for r in &segs {
            if r.position != chunks[ci].0 {
                ci += 1;
                off = (lead + lay.chunk_at[ci]) as u64;
            }
            sge_lists.push([Sge {
                addr: sge.addr + off,
                length: r.segment.length,
                lkey: sge.lkey,
            }]);
            off += u64::from(r.segment.length);
        }
        let last = segs.len() - 1;
        let mut chain: SmallVec<[SendWr<'_>; INLINE_READS]> = SmallVec::with_capacity(segs.len());
        for (i, (r, l)) in segs.iter().zip(&sge_lists).enumerate() {
            chain.push(SendWr {
                wr_id: if i == last {
                    (TAG | idx) as u64
                } else {
                    WR_ID_IGNORE
                },
                op: WrOp::Read {
                    remote_addr: r.segment.offset,
                    rkey: r.segment.handle,
                },
                sges: l,
                signaled: i == last,
            });
        }
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
        let msg = bytes
            .get(r.lead..)
            .map_or(&[][..], |b| &b[..r.msg_len.min(b.len())]);
        // SAFETY: the buffer stays unwritten until the call's drop returns
        // it to the free landing buffers.
        Some(unsafe { RecvdCall::new(r.meta, self, CallBuf::Landing(r.landing), msg) })
    }
}

#[cfg(test)]
mod tests {
    use super::{layout, lead};
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
    fn the_first_chunk_lands_at_its_source_alignment() {
        // Position Zero: the message starts where the source does within
        // a line, so arguments the client placed line-aligned land so.
        assert_eq!(lead(0x1_0000_01d8, 0), 0x18);
        assert_eq!(lead(0x40, 0), 0);
        // A chunk inserted after 12 inline bytes, its source at line
        // offset 4: the message starts 56 bytes in, the chunk at 68.
        assert_eq!(lead(0x1004, 12), 56);
        assert_eq!((56 + 12) % 64, 4);
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
