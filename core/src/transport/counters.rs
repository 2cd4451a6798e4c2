//! The transport's counters (beyond the send-context pool's statistics).

use core::sync::atomic::{AtomicU64, Ordering};

/// Transport counters beyond the send-context pool's.
#[derive(Debug, Default)]
pub struct XprtCounters {
    /// Calls handed up.
    pub calls: AtomicU64,
    /// Replies posted (RDMA_ERROR replies included).
    pub replies: AtomicU64,
    /// RDMA_ERROR replies sent (ERR_VERS, ERR_CHUNK).
    pub error_replies: AtomicU64,
    /// ERR_VERS replies sent (a call of another transport version).
    pub err_vers: AtomicU64,
    /// ERR_CHUNK replies sent (a call whose chunks could not be handled).
    pub err_chunk: AtomicU64,
    /// Malformed headers dropped without reply.
    pub dropped: AtomicU64,
    /// Calls whose Read chunks were pulled.
    pub read_calls: AtomicU64,
    /// Read chunks pulled (a call may carry several).
    pub read_chunks: AtomicU64,
    /// Replies whose bulk payload went by RDMA Write into the call's Write
    /// chunk.
    pub write_chunks: AtomicU64,
    /// Replies sent through the call's Reply chunk (RDMA_NOMSG).
    pub reply_chunks: AtomicU64,
    /// Completions with bogus `wr_id`s.
    pub bogus_completions: AtomicU64,
    /// Reply chains the device took only part of (the transport closed;
    /// the context is reclaimed at teardown).
    pub partial_posts: AtomicU64,
    /// Host copies of message bytes: a reply pulled up into the header
    /// buffer or copied into a Send page, a Reply or Write chunk staged, a
    /// call's inline parts copied around its pulled Read chunks.
    pub copies: AtomicU64,
    /// Bytes those copies moved.
    pub copied_bytes: AtomicU64,
    /// Calls with Read chunks that found no landing buffer free and waited.
    pub read_waits: AtomicU64,
    /// Times a reply found no memory to stage its copied chunk data and
    /// waited for a reply in flight to give its buffers back.
    pub stage_waits: AtomicU64,
}

/// A copy of [`XprtCounters`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XprtCountersSnapshot {
    /// Calls handed up.
    pub calls: u64,
    /// Replies posted (RDMA_ERROR replies included).
    pub replies: u64,
    /// RDMA_ERROR replies sent (both kinds).
    pub error_replies: u64,
    /// ERR_VERS replies sent.
    pub err_vers: u64,
    /// ERR_CHUNK replies sent.
    pub err_chunk: u64,
    /// Malformed messages dropped without reply.
    pub dropped: u64,
    /// Calls whose Read chunks were pulled.
    pub read_calls: u64,
    /// Read chunks pulled.
    pub read_chunks: u64,
    /// Replies whose bulk payload went into a Write chunk.
    pub write_chunks: u64,
    /// Replies sent through a Reply chunk.
    pub reply_chunks: u64,
    /// Completions with bogus `wr_id`s.
    pub bogus_completions: u64,
    /// Reply chains the device took only part of.
    pub partial_posts: u64,
    /// Host copies of message bytes.
    pub copies: u64,
    /// Bytes those copies moved.
    pub copied_bytes: u64,
    /// Calls with Read chunks that waited for a landing buffer.
    pub read_waits: u64,
    /// Replies that waited for staging memory.
    pub stage_waits: u64,
}

impl XprtCountersSnapshot {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Self) {
        self.calls += o.calls;
        self.replies += o.replies;
        self.error_replies += o.error_replies;
        self.err_vers += o.err_vers;
        self.err_chunk += o.err_chunk;
        self.dropped += o.dropped;
        self.read_calls += o.read_calls;
        self.read_chunks += o.read_chunks;
        self.write_chunks += o.write_chunks;
        self.reply_chunks += o.reply_chunks;
        self.bogus_completions += o.bogus_completions;
        self.partial_posts += o.partial_posts;
        self.copies += o.copies;
        self.copied_bytes += o.copied_bytes;
        self.read_waits += o.read_waits;
        self.stage_waits += o.stage_waits;
    }
}

impl XprtCounters {
    /// The counters now.
    pub fn snapshot(&self) -> XprtCountersSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        XprtCountersSnapshot {
            calls: l(&self.calls),
            replies: l(&self.replies),
            error_replies: l(&self.error_replies),
            err_vers: l(&self.err_vers),
            err_chunk: l(&self.err_chunk),
            dropped: l(&self.dropped),
            read_calls: l(&self.read_calls),
            read_chunks: l(&self.read_chunks),
            write_chunks: l(&self.write_chunks),
            reply_chunks: l(&self.reply_chunks),
            bogus_completions: l(&self.bogus_completions),
            partial_posts: l(&self.partial_posts),
            copies: l(&self.copies),
            copied_bytes: l(&self.copied_bytes),
            read_waits: l(&self.read_waits),
            stage_waits: l(&self.stage_waits),
        }
    }
}
