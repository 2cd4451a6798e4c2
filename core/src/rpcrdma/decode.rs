//! One-pass validation of a received transport header.

use crate::oncrpc::xdr::Reader;

use super::view::{read_segment, Chunk, Header, ReadList, WriteList, SEGMENT_SIZE};
use super::{
    DecodeError, Limits, Proc, RdmaError, Segment, ERR_CHUNK, ERR_VERS, FIXED_HEADER_SIZE,
    HEADER_MIN_SIZE, RPCRDMA_VERSION,
};

/// Which rules apply: RFC 8166 lets the two directions differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A requester's call: segments offer memory, so none may be empty.
    Call,
    /// A responder's reply: Write segments report bytes written (possibly
    /// zero), and there is no Read list.
    Reply,
}

/// Decodes and validates the transport header of a received call (server
/// side).
///
/// On success every list has been checked, so the returned views cannot
/// fail. `RDMA_DONE` and `RDMA_ERROR` decode successfully too (with empty
/// lists); a server drops them, as the kernel does.
///
/// Call-specific rules: no zero-length segments and no Write or Reply chunk
/// without segments (neither offers anything to move); `RDMA_NOMSG` needs a
/// Position Zero Read chunk and `RDMA_MSG` must not have one; `RDMA_MSG`
/// must carry an RPC message after the header. Read segments of one chunk
/// (one position) may appear in any order, as the kernel accepts.
#[inline]
pub fn decode_header<'a>(buf: &'a [u8], limits: &Limits) -> Result<Header<'a>, DecodeError> {
    match inline_msg(buf) {
        Some(h) => Ok(h),
        None => Decoder::new(buf, limits, Role::Call).header(),
    }
}

/// Decodes and validates the transport header of a received reply (client
/// side), including `RDMA_ERROR`.
///
/// Reply-specific rules: the Read list must be empty; Write and Reply
/// chunk segments may have length zero and chunks may have no segments
/// (unused); `RDMA_NOMSG` needs a Reply chunk. An `RDMA_ERROR` / `ERR_VERS`
/// decodes whatever its version word says (a responder may echo the
/// caller's version; [`Header::vers`] tells which); any other message with
/// a version other than 1 is [`DecodeError::BadVersion`].
#[inline]
pub fn decode_reply_header<'a>(buf: &'a [u8], limits: &Limits) -> Result<Header<'a>, DecodeError> {
    match inline_msg(buf) {
        Some(h) => Ok(h),
        None => Decoder::new(buf, limits, Role::Reply).header(),
    }
}

/// The general decoder alone (without [`inline_msg`]), for the tests that
/// hold the fast path to it.
#[cfg(test)]
pub(super) fn decode_general<'a>(
    buf: &'a [u8],
    limits: &Limits,
    reply: bool,
) -> Result<Header<'a>, DecodeError> {
    let role = if reply { Role::Reply } else { Role::Call };
    Decoder::new(buf, limits, role).header()
}

/// The common case in one step: an inline `RDMA_MSG` of version 1 with
/// three empty chunk lists (the fixed 28-byte header, [`HEADER_MIN_SIZE`])
/// and a message after it. Every rule of either direction holds for it
/// (no segments to check, no Position Zero chunk, a body present), so it
/// decodes to exactly what the general decoder returns; anything else is
/// `None` and goes the general way (`proptests` compares the two).
#[inline]
pub(super) fn inline_msg(buf: &[u8]) -> Option<Header<'_>> {
    let head: &[u8; HEADER_MIN_SIZE] = buf.get(..HEADER_MIN_SIZE)?.try_into().ok()?;
    if buf.len() == HEADER_MIN_SIZE {
        // RDMA_MSG needs a body: the general decoder says which error.
        return None;
    }
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    // vers 1, proc RDMA_MSG (0), then three zero discriminators: no Read
    // segment, no Write chunk, no Reply chunk.
    let rest = u128::from_be_bytes([
        head[4], head[5], head[6], head[7], head[12], head[13], head[14], head[15], head[16],
        head[17], head[18], head[19], head[20], head[21], head[22], head[23],
    ]);
    const MSG_V1: u128 = (RPCRDMA_VERSION as u128) << 96 | (Proc::Msg as u128) << 64;
    if rest != MSG_V1 || word(24) != 0 {
        return None;
    }
    Some(Header {
        xid: word(0),
        vers: RPCRDMA_VERSION,
        credits: word(8),
        proc: Proc::Msg,
        read_list: ReadList {
            bytes: &head[16..20],
            count: 0,
        },
        write_list: WriteList {
            bytes: &head[20..24],
            count: 0,
        },
        reply_chunk: None,
        header_len: HEADER_MIN_SIZE,
        error: None,
    })
}

struct Decoder<'a, 'l> {
    buf: &'a [u8],
    r: Reader<'a>,
    limits: &'l Limits,
    role: Role,
}

impl<'a, 'l> Decoder<'a, 'l> {
    fn new(buf: &'a [u8], limits: &'l Limits, role: Role) -> Self {
        Self {
            buf,
            r: Reader::new(buf),
            limits,
            role,
        }
    }

    fn header(mut self) -> Result<Header<'a>, DecodeError> {
        if self.buf.len() < FIXED_HEADER_SIZE {
            return Err(DecodeError::TooShort {
                len: self.buf.len(),
            });
        }
        let xid = self.word()?;
        let vers = self.word()?;
        let credits = self.word()?;
        let raw_proc = self.word()?;
        if vers != RPCRDMA_VERSION {
            return self.other_version(xid, vers, credits, raw_proc);
        }
        let proc = match Proc::from_u32(raw_proc) {
            None => return Err(DecodeError::UnknownProc { proc: raw_proc }),
            Some(Proc::MsgP) => return Err(DecodeError::UnsupportedProc { proc: raw_proc }),
            Some(proc) => proc,
        };
        let mut hdr = Header {
            xid,
            vers,
            credits,
            proc,
            read_list: ReadList::default(),
            write_list: WriteList::default(),
            reply_chunk: None,
            header_len: FIXED_HEADER_SIZE,
            error: None,
        };
        match proc {
            Proc::Msg | Proc::NoMsg => self.chunk_lists(&mut hdr)?,
            Proc::Error => hdr.error = Some(self.error_body()?),
            Proc::Done | Proc::MsgP => {}
        }
        hdr.header_len = self.r.position();
        Ok(hdr)
    }

    /// A header whose version is not 1. RFC 8166 keeps the header prefix
    /// (xid, vers, credits, proc) and the `ERR_VERS` body the same in every
    /// version, and a responder may echo the caller's version in it (the
    /// Linux kernel's svcrdma does: `52000bad 00000002 00000040 00000004
    /// 00000001 00000001 00000001` answers a version-2 call). So a reply
    /// that is `RDMA_ERROR` / `ERR_VERS` decodes, with its version as sent;
    /// anything else, and every call, is [`DecodeError::BadVersion`].
    fn other_version(
        mut self,
        xid: u32,
        vers: u32,
        credits: u32,
        raw_proc: u32,
    ) -> Result<Header<'a>, DecodeError> {
        let bad = DecodeError::BadVersion { vers };
        if self.role != Role::Reply || raw_proc != Proc::Error as u32 {
            return Err(bad);
        }
        let error = match self.error_body() {
            Ok(e @ RdmaError::Vers { .. }) => e,
            _ => return Err(bad),
        };
        Ok(Header {
            xid,
            vers,
            credits,
            proc: Proc::Error,
            read_list: ReadList::default(),
            write_list: WriteList::default(),
            reply_chunk: None,
            header_len: self.r.position(),
            error: Some(error),
        })
    }

    fn chunk_lists(&mut self, hdr: &mut Header<'a>) -> Result<(), DecodeError> {
        hdr.read_list = self.read_list()?;
        hdr.write_list = self.write_list()?;
        hdr.reply_chunk = if self.present()? {
            Some(self.chunk()?)
        } else {
            None
        };
        let position_zero = hdr.read_list.has_position_zero();
        match (hdr.proc, self.role) {
            (Proc::Msg, Role::Call) if position_zero => Err(DecodeError::UnexpectedPositionZero),
            (Proc::Msg, _) if self.r.remaining() == 0 => Err(DecodeError::MissingBody),
            (Proc::NoMsg, Role::Call) if !position_zero => Err(DecodeError::MissingMessageChunk),
            (Proc::NoMsg, Role::Reply) if hdr.reply_chunk.is_none() => {
                Err(DecodeError::MissingMessageChunk)
            }
            _ => Ok(()),
        }
    }

    fn word(&mut self) -> Result<u32, DecodeError> {
        let offset = self.r.position();
        self.r.u32().ok_or(DecodeError::Truncated { offset })
    }

    /// An XDR optional-data discriminator; only 0 and 1 are valid.
    fn present(&mut self) -> Result<bool, DecodeError> {
        let offset = self.r.position();
        match self.word()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadDiscriminator { offset, value }),
        }
    }

    /// The bytes from `start` to the cursor.
    fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.r.position()).unwrap_or_default()
    }

    fn segment(&mut self) -> Result<Segment, DecodeError> {
        let offset = self.r.position();
        let seg = read_segment(&mut self.r).ok_or(DecodeError::Truncated { offset })?;
        if seg.offset.checked_add(u64::from(seg.length)).is_none() {
            return Err(DecodeError::SegmentOverflow { offset });
        }
        if seg.length == 0 && self.role == Role::Call {
            return Err(DecodeError::ZeroLengthSegment { offset });
        }
        Ok(seg)
    }

    fn read_list(&mut self) -> Result<ReadList<'a>, DecodeError> {
        let start = self.r.position();
        let mut count = 0u32;
        while self.present()? {
            if self.role == Role::Reply {
                return Err(DecodeError::ReadListInReply);
            }
            if count >= self.limits.max_read_segments {
                return Err(DecodeError::TooManyReadSegments {
                    limit: self.limits.max_read_segments,
                });
            }
            count += 1;
            let position = self.word()?;
            if position % 4 != 0 {
                return Err(DecodeError::MisalignedPosition { position });
            }
            self.segment()?;
        }
        let list = ReadList {
            bytes: self.since(start),
            count,
        };
        // A Read chunk is every segment sharing a position, wherever it sits
        // in the list. Quadratic, but over at most max_read_segments entries
        // that already fit in one receive buffer.
        for seg in list.iter() {
            if list.chunk_len(seg.position) > self.limits.max_chunk_bytes {
                return Err(DecodeError::ChunkTooLong {
                    limit: self.limits.max_chunk_bytes,
                });
            }
        }
        Ok(list)
    }

    fn write_list(&mut self) -> Result<WriteList<'a>, DecodeError> {
        let start = self.r.position();
        let mut count = 0u32;
        while self.present()? {
            if count >= self.limits.max_write_chunks {
                return Err(DecodeError::TooManyWriteChunks {
                    limit: self.limits.max_write_chunks,
                });
            }
            count += 1;
            self.chunk()?;
        }
        Ok(WriteList {
            bytes: self.since(start),
            count,
        })
    }

    /// A counted array of segments (a Write chunk or the Reply chunk).
    fn chunk(&mut self) -> Result<Chunk<'a>, DecodeError> {
        let offset = self.r.position();
        let count = self.word()?;
        let limit = self.limits.max_segments_per_chunk;
        if count > limit {
            return Err(DecodeError::TooManySegments { count, limit });
        }
        if count == 0 && self.role == Role::Call {
            return Err(DecodeError::EmptyChunk { offset });
        }
        let start = self.r.position();
        if self.r.remaining() < count as usize * SEGMENT_SIZE {
            return Err(DecodeError::Truncated { offset: start });
        }
        let mut total = 0u64;
        for _ in 0..count {
            total = total.saturating_add(u64::from(self.segment()?.length));
        }
        if total > self.limits.max_chunk_bytes {
            return Err(DecodeError::ChunkTooLong {
                limit: self.limits.max_chunk_bytes,
            });
        }
        Ok(Chunk {
            segments: self.since(start),
            count,
        })
    }

    fn error_body(&mut self) -> Result<RdmaError, DecodeError> {
        let mut word = || self.r.u32().ok_or(DecodeError::MalformedError);
        match word()? {
            ERR_VERS => Ok(RdmaError::Vers {
                low: word()?,
                high: word()?,
            }),
            ERR_CHUNK => Ok(RdmaError::Chunk),
            _ => Err(DecodeError::MalformedError),
        }
    }
}
