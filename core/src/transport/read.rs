//! Read chunks: the client's RDMA-Read-able data, pulled with RDMA Read
//! before the call is handed up (`svc_rdma_process_read_list`), and the
//! Read completion (`svc_rdma_wc_read_done`).

use super::{DevError, RecvdCall, SvcRdmaXprt, XprtError, TAG, WR_ID_IGNORE};
use crate::backend::{DmaBuf, DmaDevice, QueuePair, SendWr, Sge, WcStatus, WrOp};
use crate::lifecycle::SendCtxtLifecycle;
use crate::rpcrdma::{Header, RdmaError, Segment};
use crate::wait::WaitQueue;
use crate::xprt::{Enqueue, XprtFlags};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Read contexts: a small slab behind a spin lock (the kernel also locks
/// its read-complete queue).
pub(crate) struct Reads<B> {
    pub(crate) slots: Vec<Option<ReadCtxt<B>>>,
    pub(crate) free: Vec<u32>,
    pub(crate) ready: VecDeque<u32>,
}

impl<B> Reads<B> {
    /// No read context yet.
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
        }
    }
}

/// One call waiting for (or holding) its pulled Read chunk data.
pub(crate) struct ReadCtxt<B> {
    /// Where the chunks land, one after another in position order.
    pub(crate) buf: B,
    /// The buffer's mapping (unmapped when the call is assembled or freed).
    pub(crate) sge: Sge,
    /// SQ slots the Read chain holds.
    pub(crate) sqes: u32,
    /// The call's fixed fields and chunk lists.
    pub(crate) meta: CallMeta,
    /// The inline part of the RPC message (empty for Position Zero).
    pub(crate) inline: Vec<u8>,
    /// (position, length) of each chunk, ascending by position.
    pub(crate) chunks: Vec<(u32, u32)>,
    /// Whether the Read chain completed successfully.
    pub(crate) done: bool,
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

/// Rebuilds the RPC message from the inline part and the pulled chunks
/// (each chunk inserted at its position, XDR-padded to 4 bytes). `None` if
/// a position lies beyond the inline message (a malformed call).
pub(crate) fn assemble(inline: &[u8], chunks: &[(u32, u32)], data: &[u8]) -> Option<Vec<u8>> {
    if chunks.len() == 1 && chunks[0].0 == 0 {
        return data.get(..chunks[0].1 as usize).map(|d| d.to_vec());
    }
    let total: usize = chunks
        .iter()
        .map(|&(_, l)| (l as usize + 3) & !3)
        .sum::<usize>()
        + inline.len();
    let mut msg = Vec::with_capacity(total);
    let (mut at_inline, mut at_data) = (0usize, 0usize);
    for &(pos, len) in chunks {
        let pos = pos as usize;
        if pos < at_inline || pos > inline.len() {
            return None;
        }
        msg.extend_from_slice(&inline[at_inline..pos]);
        let len = len as usize;
        msg.extend_from_slice(data.get(at_data..at_data + len)?);
        msg.resize(msg.len() + ((4 - len % 4) % 4), 0);
        at_inline = pos;
        at_data += len;
    }
    msg.extend_from_slice(&inline[at_inline..]);
    Some(msg)
}

impl<L, Q, E, W> SvcRdmaXprt<L, Q, E, W>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevError<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    /// Starts pulling a call's Read chunks (`svc_rdma_process_read_list`);
    /// the call surfaces from `recvfrom` once the Reads complete. More
    /// Reads than the SQ holds go out in SQ-sized batches; the last batch
    /// ends in the signaled Read that completes the call.
    #[doc(alias = "svc_rdma_process_read_list")]
    pub(super) fn start_reads(
        &self,
        h: &Header<'_>,
        meta: CallMeta,
        bytes: &[u8],
    ) -> Result<(), XprtError<DevError<L>>> {
        let Some((chunks, segs)) = plan(h, self.cfg.max_read_bytes) else {
            return self.send_error(meta.xid, meta.credits, RdmaError::Chunk);
        };
        let inline = match h.body_offset() {
            Some(o) => bytes.get(o..).unwrap_or(&[]).to_vec(),
            None => Vec::new(),
        };
        let total: usize = chunks.iter().map(|&(_, l)| l as usize).sum();
        let dev = self.send.pool().device();
        let buf = dev.alloc_buf(total.max(1)).map_err(XprtError::Backend)?;
        let sge = dev
            .dma_map(&buf, 0, total.max(1))
            .map_err(XprtError::Backend)?;
        let split = super::chain::chain_split(segs.len(), self.sq.depth() as usize);
        let xid = meta.xid;
        let nchunks = chunks.len() as u64;
        let idx = self.with_reads(|r| {
            let ctxt = ReadCtxt {
                buf,
                sge,
                sqes: (segs.len() - split) as u32,
                meta,
                inline,
                chunks,
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
        let mut off = 0u64;
        for s in &segs {
            sge_lists.push([Sge {
                addr: sge.addr + off,
                length: s.length,
                lkey: sge.lkey,
            }]);
            off += s.length as u64;
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
        // SAFETY: the Read target buffer is owned by the read context, which
        // is freed only after its completion (`read_done` ->
        // `take_read_complete`), at teardown after the QP drain, or below
        // when the device took none of the chain.
        match unsafe { self.post_batched(head, tail) } {
            Ok(()) => {
                Self::bump(&self.counters.read_calls);
                self.counters
                    .read_chunks
                    .fetch_add(nchunks, core::sync::atomic::Ordering::Relaxed);
                Ok(())
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

    fn drop_read(&self, idx: u32) {
        if let Some(r) = self.with_reads(|r| {
            r.free.push(idx);
            r.slots.get_mut(idx as usize).and_then(Option::take)
        }) {
            let _ = self.send.pool().device().dma_unmap(r.sge);
        }
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

    /// A call whose Reads completed, assembled.
    pub(super) fn take_read_complete(&self) -> Option<RecvdCall> {
        loop {
            let idx = self.with_reads(|r| r.ready.pop_front())?;
            let r = self.with_reads(|r| {
                r.free.push(idx);
                r.slots.get_mut(idx as usize).and_then(Option::take)
            })?;
            let dev = self.send.pool().device();
            let _ = dev.dma_unmap(r.sge);
            match assemble(&r.inline, &r.chunks, r.buf.as_slice()) {
                Some(msg) => {
                    Self::bump(&self.counters.calls);
                    return Some(RecvdCall { meta: r.meta, msg });
                }
                None => {
                    let _ = self.send_error(r.meta.xid, r.meta.credits, RdmaError::Chunk);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::assemble;

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
    fn a_position_past_the_message_is_rejected() {
        assert!(assemble(b"ab", &[(8, 1)], b"x").is_none());
    }
}
