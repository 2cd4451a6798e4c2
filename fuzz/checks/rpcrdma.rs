//! Invariants of the RPC-over-RDMA v1 header codec (RFC 8166) for arbitrary
//! bytes: what either decoder accepts is internally consistent, re-encodes
//! to the same bytes, and can be answered; what it rejects is rejected for a
//! reason the bytes actually show.

use rdmaxprt_core::rpcrdma::{
    decode_header, decode_reply_header, encode_call, encode_error, encode_reply, peek_xid,
    CallSpec, DecodeError, Header, Limits, MsgProc, Proc, RdmaError, ReadSegment, ReplySpec,
    ReplyWith, Segment, FIXED_HEADER_SIZE, HEADER_MIN_SIZE, RPCRDMA_VERSION,
};

/// Deliberately tiny limits, so that short inputs reach every limit check.
pub const TINY: Limits = Limits {
    max_read_segments: 3,
    max_write_chunks: 1,
    max_segments_per_chunk: 2,
    max_chunk_bytes: 4096,
};

/// Every bound at its maximum.
pub const UNLIMITED: Limits = Limits {
    max_read_segments: u32::MAX,
    max_write_chunks: u32::MAX,
    max_segments_per_chunk: u32::MAX,
    max_chunk_bytes: u64::MAX,
};

/// The limit sets every byte input is decoded with, from the tightest to
/// the loosest (each one is field-wise <= the next).
pub const LIMITS: [Limits; 3] = [TINY, Limits::DEFAULT, UNLIMITED];

/// Which decoder, and so which rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `decode_header`: a received call (server side).
    Call,
    /// `decode_reply_header`: a received reply (client side).
    Reply,
}

/// The decoder for `role`.
pub fn decode<'a>(role: Role, data: &'a [u8], limits: &Limits) -> Result<Header<'a>, DecodeError> {
    match role {
        Role::Call => decode_header(data, limits),
        Role::Reply => decode_reply_header(data, limits),
    }
}

/// The chunk lists of a decoded header, copied out of its views.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    /// Read list entries in wire order.
    pub reads: Vec<ReadSegment>,
    /// Write chunks in wire order.
    pub writes: Vec<Vec<Segment>>,
    /// The Reply chunk.
    pub reply: Option<Vec<Segment>>,
}

impl Lists {
    /// Bytes these lists take on the wire (three list terminators
    /// included), computed from RFC 8166's XDR independently of the codec.
    pub fn wire_len(&self) -> usize {
        let chunk = |c: &Vec<Segment>| 4 + 16 * c.len();
        12 + 24 * self.reads.len()
            + self.writes.iter().map(|c| 4 + chunk(c)).sum::<usize>()
            + self.reply.as_ref().map_or(0, chunk)
    }
}

/// Big-endian word at byte `at`, if the buffer holds it.
pub fn word(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(<[u8; 4]>::try_from(b).ok()?))
}

fn hyper(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(word(data, at)?) << 32 | u64::from(word(data, at.checked_add(4)?)?))
}

/// Checks one segment of an accepted header.
fn check_segment(s: &Segment, role: Role) {
    assert!(
        s.offset.checked_add(u64::from(s.length)).is_some(),
        "accepted segment overflows: {s:?}"
    );
    if role == Role::Call {
        assert_ne!(s.length, 0, "call accepted with a zero-length segment");
    }
}

/// Iterates a Write or Reply chunk fully and checks it; returns its segments.
fn check_chunk(c: &rdmaxprt_core::rpcrdma::Chunk<'_>, limits: &Limits, role: Role) -> Vec<Segment> {
    let it = c.iter();
    assert_eq!(it.size_hint(), (c.len(), Some(c.len())));
    let segs: Vec<Segment> = it.collect();
    assert_eq!(
        segs.len(),
        c.len(),
        "chunk iterates {} of {}",
        segs.len(),
        c.len()
    );
    assert_eq!(c.is_empty(), segs.is_empty());
    assert!(segs.len() as u64 <= u64::from(limits.max_segments_per_chunk));
    if role == Role::Call {
        assert!(!segs.is_empty(), "call accepted with an empty chunk");
    }
    for s in &segs {
        check_segment(s, role);
    }
    let total: u64 = segs.iter().map(|s| u64::from(s.length)).sum();
    assert_eq!(c.total_len(), total);
    assert!(
        total <= limits.max_chunk_bytes,
        "chunk of {total} bytes accepted"
    );
    segs
}

/// Iterates every view of an accepted header and checks every invariant
/// that must hold for it; returns the lists.
pub fn check_accepted(data: &[u8], h: &Header<'_>, limits: &Limits, role: Role) -> Lists {
    assert!(h.header_len() <= data.len(), "header_len past the end");
    assert!(h.header_len() >= FIXED_HEADER_SIZE);
    assert_eq!(h.header_len() % 4, 0);
    if h.vers() != RPCRDMA_VERSION {
        // Only a reply RDMA_ERROR / ERR_VERS decodes with another version
        // (a responder may echo the caller's version in it).
        assert_eq!(role, Role::Reply, "call of version {} accepted", h.vers());
        assert_eq!(h.proc(), Proc::Error);
        assert!(matches!(h.rdma_error(), Some(RdmaError::Vers { .. })));
    }
    assert_eq!(Some(h.xid()), peek_xid(data));
    assert_eq!(Some(h.vers()), word(data, 4));
    assert_eq!(Some(h.credits()), word(data, 8));
    assert_eq!(Some(h.proc() as u32), word(data, 12));
    assert_ne!(h.proc(), Proc::MsgP, "RDMA_MSGP accepted");
    match h.body_offset() {
        Some(off) => {
            assert_eq!(h.proc(), Proc::Msg);
            assert_eq!(off, h.header_len());
            assert!(off < data.len(), "RDMA_MSG accepted without a body");
        }
        None => assert_ne!(h.proc(), Proc::Msg),
    }

    // Read list.
    let rl = h.read_list();
    let reads: Vec<ReadSegment> = rl.iter().collect();
    assert_eq!(reads.len(), rl.len());
    assert_eq!(rl.is_empty(), reads.is_empty());
    assert_eq!(rl.into_iter().count(), reads.len());
    assert!(reads.len() as u64 <= u64::from(limits.max_read_segments));
    if role == Role::Reply {
        assert!(reads.is_empty(), "reply accepted with a Read list");
    }
    for r in &reads {
        assert_eq!(r.position % 4, 0, "misaligned position accepted");
        check_segment(&r.segment, role);
        // Independent per-position grouping.
        let same: Vec<ReadSegment> = reads
            .iter()
            .filter(|o| o.position == r.position)
            .copied()
            .collect();
        let total: u64 = same.iter().map(|o| u64::from(o.segment.length)).sum();
        assert_eq!(rl.chunk_len(r.position), total);
        assert!(
            total <= limits.max_chunk_bytes,
            "Read chunk of {total} bytes"
        );
        assert_eq!(rl.chunk(r.position).collect::<Vec<_>>(), same);
    }
    let pz = reads.iter().any(|r| r.position == 0);
    assert_eq!(rl.has_position_zero(), pz);
    if !reads.iter().any(|r| r.position == 4) {
        assert_eq!(rl.chunk(4).count(), 0);
        assert_eq!(rl.chunk_len(4), 0);
    }

    // Write list.
    let wl = h.write_list();
    let it = wl.iter();
    assert_eq!(it.size_hint(), (wl.len(), Some(wl.len())));
    let writes: Vec<Vec<Segment>> = it.map(|c| check_chunk(&c, limits, role)).collect();
    assert_eq!(writes.len(), wl.len());
    assert_eq!(wl.is_empty(), writes.is_empty());
    assert!(writes.len() as u64 <= u64::from(limits.max_write_chunks));

    // Reply chunk.
    let reply = h.reply_chunk().map(|c| check_chunk(&c, limits, role));
    let lists = Lists {
        reads,
        writes,
        reply,
    };

    match h.proc() {
        Proc::Msg | Proc::NoMsg => {
            assert_eq!(h.rdma_error(), None);
            assert_eq!(h.header_len(), FIXED_HEADER_SIZE + lists.wire_len());
            assert!(h.header_len() >= HEADER_MIN_SIZE);
            match (h.proc(), role) {
                (Proc::Msg, Role::Call) => assert!(!pz, "RDMA_MSG with Position Zero"),
                (Proc::NoMsg, Role::Call) => assert!(pz, "RDMA_NOMSG without Position Zero"),
                (Proc::NoMsg, Role::Reply) => assert!(lists.reply.is_some()),
                _ => {}
            }
            check_reencode(data, h, &lists, limits, role);
        }
        Proc::Done => {
            assert_eq!(lists, Lists::default());
            assert_eq!(h.rdma_error(), None);
            assert_eq!(h.header_len(), FIXED_HEADER_SIZE);
        }
        Proc::Error => {
            assert_eq!(lists, Lists::default());
            let err = h.rdma_error().expect("RDMA_ERROR without an error");
            assert_eq!(h.header_len(), err.encoded_len());
            let mut buf = vec![0u8; err.encoded_len()];
            let n = encode_error(&mut buf, h.xid(), h.credits(), err).expect("encode_error");
            // The encoder writes version 1; an echoed version is kept as sent.
            buf[4..8].copy_from_slice(&h.vers().to_be_bytes());
            assert_eq!(
                &buf[..n],
                &data[..h.header_len()],
                "RDMA_ERROR re-encodes differently"
            );
        }
        Proc::MsgP => unreachable!(),
    }
    lists
}

/// Re-encodes an accepted `RDMA_MSG`/`RDMA_NOMSG` header: the encoder must
/// produce exactly the bytes decoded, and decoding them again gives the same
/// header. For a call, the reply a server builds from its chunks must be
/// accepted by a client with the same limits.
fn check_reencode(data: &[u8], h: &Header<'_>, lists: &Lists, limits: &Limits, role: Role) {
    let proc = match h.proc() {
        Proc::Msg => MsgProc::Msg,
        _ => MsgProc::NoMsg,
    };
    let writes: Vec<&[Segment]> = lists.writes.iter().map(Vec::as_slice).collect();
    let reply = lists.reply.as_deref();
    let hdr = &data[..h.header_len()];
    let body = &data[h.header_len()..];

    let call = CallSpec {
        xid: h.xid(),
        credits: h.credits(),
        proc,
        read_list: &lists.reads,
        write_list: &writes,
        reply_chunk: reply,
    };
    assert_eq!(call.encoded_len(), hdr.len());
    let mut buf = vec![0u8; hdr.len()];
    assert_eq!(encode_call(&mut buf, &call), Ok(hdr.len()));
    assert_eq!(
        buf, hdr,
        "encode_call does not reproduce the decoded header"
    );
    if !hdr.is_empty() {
        let mut short = vec![0u8; hdr.len() - 1];
        assert!(encode_call(&mut short, &call).is_err());
    }
    if lists.reads.is_empty() {
        let rs = ReplySpec {
            xid: h.xid(),
            credits: h.credits(),
            proc,
            write_list: &writes,
            reply_chunk: reply,
        };
        assert_eq!(rs.encoded_len(), hdr.len());
        let mut buf = vec![0u8; hdr.len()];
        assert_eq!(encode_reply(&mut buf, &rs), Ok(hdr.len()));
        assert_eq!(
            buf, hdr,
            "encode_reply does not reproduce the decoded header"
        );
    }
    let mut again = hdr.to_vec();
    again.extend_from_slice(body);
    let h2 = decode(role, &again, limits).expect("re-encoded header rejected");
    assert_eq!(h2, *h);

    if role == Role::Call {
        // A server's answer: each segment reports what it wrote (here half,
        // and then nothing); the Reply chunk carries the reply if offered.
        for shrink in [1u32, 0] {
            let written = |c: &Vec<Segment>| -> Vec<Segment> {
                c.iter()
                    .map(|s| Segment {
                        length: if shrink == 1 { s.length / 2 } else { 0 },
                        ..*s
                    })
                    .collect()
            };
            let w: Vec<Vec<Segment>> = lists.writes.iter().map(written).collect();
            let w_refs: Vec<&[Segment]> = w.iter().map(Vec::as_slice).collect();
            let rc = lists.reply.as_ref().map(written);
            let rs = ReplySpec {
                xid: h.xid(),
                credits: h.credits(),
                proc: if rc.is_some() {
                    MsgProc::NoMsg
                } else {
                    MsgProc::Msg
                },
                write_list: &w_refs,
                reply_chunk: rc.as_deref(),
            };
            let mut buf = vec![0u8; rs.encoded_len()];
            assert_eq!(encode_reply(&mut buf, &rs), Ok(rs.encoded_len()));
            if rc.is_none() {
                buf.extend_from_slice(&[0, 0, 0, 1]);
            }
            let r = decode_reply_header(&buf, limits).expect("client rejects the server's reply");
            let got = check_accepted(&buf, &r, limits, Role::Reply);
            assert_eq!(got.writes, w);
            assert_eq!(got.reply, rc);
        }
    }
}

/// Checks that a rejection is justified by the bytes, and that the answer it
/// calls for can be encoded and is understood by a client.
pub fn check_rejected(data: &[u8], e: DecodeError, limits: &Limits, role: Role) {
    let proc = word(data, 12);
    let early = matches!(
        e,
        DecodeError::TooShort { .. } | DecodeError::BadVersion { .. }
    );
    if !matches!(e, DecodeError::TooShort { .. }) {
        assert!(
            data.len() >= FIXED_HEADER_SIZE,
            "{e:?} for {} bytes",
            data.len()
        );
    }
    if !early {
        assert_eq!(
            word(data, 4),
            Some(RPCRDMA_VERSION),
            "{e:?} with a bad version"
        );
    }
    if !early
        && !matches!(
            e,
            DecodeError::UnknownProc { .. } | DecodeError::UnsupportedProc { .. }
        )
    {
        assert!(
            matches!(proc, Some(0 | 1 | 3 | 4)),
            "{e:?} for proc {proc:?}"
        );
    }
    match e {
        DecodeError::TooShort { len } => {
            assert_eq!(len, data.len());
            assert!(len < FIXED_HEADER_SIZE);
        }
        DecodeError::BadVersion { vers } => {
            assert_eq!(word(data, 4), Some(vers));
            assert_ne!(vers, RPCRDMA_VERSION);
        }
        DecodeError::UnknownProc { proc: p } => {
            assert_eq!(proc, Some(p));
            assert!(p > 4);
        }
        DecodeError::UnsupportedProc { proc: p } => {
            assert_eq!((proc, p), (Some(2), 2));
        }
        DecodeError::Truncated { offset } => {
            assert!((FIXED_HEADER_SIZE..=data.len()).contains(&offset), "{e:?}");
        }
        DecodeError::BadDiscriminator { offset, value } => {
            assert!(offset >= FIXED_HEADER_SIZE && offset % 4 == 0, "{e:?}");
            assert_eq!(word(data, offset), Some(value));
            assert!(value > 1);
        }
        DecodeError::TooManyReadSegments { limit } => {
            assert_eq!(limit, limits.max_read_segments);
            assert_eq!(role, Role::Call);
        }
        DecodeError::TooManyWriteChunks { limit } => assert_eq!(limit, limits.max_write_chunks),
        DecodeError::TooManySegments { count, limit } => {
            assert_eq!(limit, limits.max_segments_per_chunk);
            assert!(count > limit);
        }
        DecodeError::ChunkTooLong { limit } => assert_eq!(limit, limits.max_chunk_bytes),
        DecodeError::SegmentOverflow { offset } => {
            let len = word(data, offset + 4).expect("segment length");
            let off = hyper(data, offset + 8).expect("segment offset");
            assert!(off.checked_add(u64::from(len)).is_none(), "{e:?}");
        }
        DecodeError::ZeroLengthSegment { offset } => {
            assert_eq!(role, Role::Call);
            assert_eq!(word(data, offset + 4), Some(0));
        }
        DecodeError::EmptyChunk { offset } => {
            assert_eq!(role, Role::Call);
            assert_eq!(word(data, offset), Some(0));
        }
        DecodeError::MisalignedPosition { position } => assert_ne!(position % 4, 0),
        DecodeError::ReadListInReply => {
            assert_eq!(role, Role::Reply);
            assert_eq!(word(data, 16), Some(1));
        }
        DecodeError::MissingBody => assert_eq!(proc, Some(Proc::Msg as u32)),
        DecodeError::UnexpectedPositionZero => {
            assert_eq!(role, Role::Call);
            assert_eq!(proc, Some(Proc::Msg as u32));
        }
        DecodeError::MissingMessageChunk => assert_eq!(proc, Some(Proc::NoMsg as u32)),
        DecodeError::MalformedError => assert_eq!(proc, Some(Proc::Error as u32)),
        // Variants added later: nothing specific to check.
        _ => {}
    }
    let expected = match e {
        DecodeError::TooShort { .. } | DecodeError::MalformedError => ReplyWith::Drop,
        DecodeError::BadVersion { .. } => ReplyWith::ErrVers,
        _ => ReplyWith::ErrChunk,
    };
    assert_eq!(e.reply_with(), expected);
    if let Some(err) = e.reply_with().rdma_error() {
        let xid = peek_xid(data).expect("answerable error without an xid");
        let mut buf = vec![0u8; err.encoded_len()];
        assert_eq!(encode_error(&mut buf, xid, 7, err), Ok(err.encoded_len()));
        for r in [Role::Reply, Role::Call] {
            let h = decode(r, &buf, limits).expect("our RDMA_ERROR rejected");
            assert_eq!(
                (h.xid(), h.proc(), h.rdma_error()),
                (xid, Proc::Error, Some(err))
            );
            assert_eq!(h.header_len(), buf.len());
        }
        if err == RdmaError::VERS {
            assert_eq!(buf.len(), FIXED_HEADER_SIZE + 12);
        }
    }
}

/// Decodes `data` with `role`'s decoder under `limits` and checks the
/// result; returns the lists if accepted.
pub fn check_one(data: &[u8], limits: &Limits, role: Role) -> Result<Lists, DecodeError> {
    let r = decode(role, data, limits);
    assert_eq!(
        r,
        decode(role, data, limits),
        "decoding is not deterministic"
    );
    match r {
        Ok(h) => Ok(check_accepted(data, &h, limits, role)),
        Err(e) => {
            check_rejected(data, e, limits, role);
            Err(e)
        }
    }
}

/// Relations between the two decoders and between limit sets, on the
/// decoded results only (the views were checked by `check_one`).
fn check_relations(data: &[u8]) {
    let mut prev: [Option<Header<'_>>; 2] = [None, None];
    for limits in &LIMITS {
        let call = decode_header(data, limits);
        let reply = decode_reply_header(data, limits);
        // RDMA_DONE and RDMA_ERROR follow the same rules in both directions,
        // except that a reply ERR_VERS may carry another version.
        if matches!(word(data, 12), Some(3 | 4)) {
            if word(data, 4) == Some(RPCRDMA_VERSION) {
                assert_eq!(call, reply);
            } else {
                assert!(call.is_err(), "a call of another version accepted");
            }
        }
        if let Ok(c) = &call {
            if c.read_list().is_empty() {
                assert_eq!(
                    reply.as_ref(),
                    Ok(c),
                    "call rules accept, reply rules do not"
                );
            }
        }
        if let Ok(r) = &reply {
            let strict = r
                .write_list()
                .iter()
                .chain(r.reply_chunk())
                .all(|c| !c.is_empty() && c.iter().all(|s| s.length != 0));
            // (A reply ERR_VERS of another version is reply-only.)
            if r.proc() != Proc::NoMsg && strict && r.vers() == RPCRDMA_VERSION {
                assert_eq!(
                    call.as_ref(),
                    Ok(r),
                    "reply rules accept, call rules do not"
                );
            }
            if r.proc() == Proc::NoMsg {
                assert!(
                    call.is_err(),
                    "RDMA_NOMSG without a Read list accepted as a call"
                );
            }
        }
        // Looser limits never reject what tighter ones accepted.
        for (i, now) in [call, reply].into_iter().enumerate() {
            if let Some(before) = prev[i] {
                assert_eq!(now, Ok(before), "looser limits reject what tighter accept");
            }
            if let Ok(h) = now {
                prev[i] = Some(h);
            }
        }
    }
}

/// Everything for arbitrary bytes received as a call (`rpcrdma_decode`).
pub fn check_call_bytes(data: &[u8]) {
    for limits in &LIMITS {
        if check_one(data, limits, Role::Call).is_ok() {
            let h = decode_header(data, limits).expect("accepted above");
            if let Some(off) = h.body_offset() {
                // The inline RPC message goes through the ONC RPC checks.
                super::oncrpc::check_bytes(&data[off..]);
            }
        }
    }
    check_relations(data);
}

/// Everything for arbitrary bytes received as a reply, including
/// `RDMA_ERROR` (`rpcrdma_reply_decode`).
pub fn check_reply_bytes(data: &[u8]) {
    for limits in &LIMITS {
        // The verdict itself is checked inside.
        let _verdict = check_one(data, limits, Role::Reply);
    }
    check_relations(data);
}
