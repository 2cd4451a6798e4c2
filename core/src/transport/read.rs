//! Read chunks: the client's RDMA-Read-able data, pulled with RDMA Read
//! before the call is handed up (`svc_rdma_process_read_list`).

use crate::backend::Sge;
use crate::rpcrdma::{Header, Segment};
use alloc::vec::Vec;

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
