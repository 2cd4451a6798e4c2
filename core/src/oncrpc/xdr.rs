//! XDR (RFC 4506) primitives shared by the ONC RPC and RPC-over-RDMA codecs.
//!
//! Both wire formats are sequences of big-endian 32-bit words, so one
//! bounds-checked reader and one writer serve both. Every read returns
//! `None` instead of indexing past the end; the codecs map that to their
//! own typed "truncated" error.

use super::EncodeError;

/// Size of one XDR unit in bytes.
pub(crate) const WORD: usize = 4;

/// `len` rounded up to a whole number of XDR words (saturating).
pub(crate) const fn padded_len(len: usize) -> usize {
    len.saturating_add(WORD - 1) & !(WORD - 1)
}

/// A bounds-checked cursor over big-endian XDR words.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next unread byte.
    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left after the cursor.
    pub(crate) const fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` raw bytes, without XDR padding.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// One unsigned 32-bit word.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let word: [u8; WORD] = self.bytes(WORD)?.try_into().ok()?;
        Some(u32::from_be_bytes(word))
    }

    /// One unsigned hyper (two words, most significant first).
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let hi = self.u32()?;
        let lo = self.u32()?;
        Some(u64::from(hi) << 32 | u64::from(lo))
    }

    /// The body of a variable-length opaque whose length word was already
    /// read: `len` bytes plus padding to a word boundary. The padding's
    /// content is not checked (the kernel does not check it either).
    pub(crate) fn opaque_body(&mut self, len: usize) -> Option<&'a [u8]> {
        let body = self.bytes(len)?;
        self.bytes(padded_len(len) - len)?;
        Some(body)
    }
}

/// Reads the first word of `buf`, the transaction id in both RPC and
/// RPC-over-RDMA headers.
pub(crate) fn first_word(buf: &[u8]) -> Option<u32> {
    Reader::new(buf).u32()
}

/// A writer of big-endian XDR words into a caller-provided buffer.
///
/// The buffer is checked against the exact encoded size once, in
/// [`Writer::new`]; encoders compute that size with the same formulas
/// they write with, so the individual writes never run out of room.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Fails with `BufferTooSmall` unless `buf` can hold `needed` bytes.
    pub(crate) fn new(buf: &'a mut [u8], needed: usize) -> Result<Self, EncodeError> {
        if buf.len() < needed {
            return Err(EncodeError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        Ok(Self { buf, pos: 0 })
    }

    /// Raw bytes. Writes past the end are skipped, never panic: `new`
    /// already rejected buffers that are too small.
    pub(crate) fn bytes(&mut self, src: &[u8]) {
        let end = self.pos.saturating_add(src.len());
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(src);
        }
        self.pos = end;
    }

    /// One unsigned 32-bit word.
    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    /// One unsigned hyper.
    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    /// A variable-length opaque: length word, bytes, zero padding.
    pub(crate) fn opaque(&mut self, body: &[u8]) {
        // Callers bound `body` far below 4 GiB (<= 400 bytes in RPC auth).
        self.u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
        self.bytes(body);
        let pad = padded_len(body.len()) - body.len();
        self.bytes(&[0; WORD][..pad]);
    }

    /// Bytes written so far.
    pub(crate) const fn written(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_stops_at_end() {
        let mut r = Reader::new(&[0, 0, 0, 7, 1, 2]);
        assert_eq!(r.u32(), Some(7));
        assert_eq!(r.u32(), None);
        assert_eq!(r.position(), 4);
        assert_eq!(r.remaining(), 2);
        assert_eq!(r.bytes(usize::MAX), None);
    }

    #[test]
    fn opaque_round_trip_with_padding() {
        let mut buf = [0xffu8; 12];
        let mut w = Writer::new(&mut buf, 12).unwrap();
        w.opaque(b"abcde");
        assert_eq!(w.written(), 12);
        assert_eq!(buf, [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]);
        let mut r = Reader::new(&buf);
        let len = r.u32().unwrap() as usize;
        assert_eq!(r.opaque_body(len), Some(&b"abcde"[..]));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn writer_rejects_small_buffer() {
        let mut buf = [0u8; 3];
        assert_eq!(
            Writer::new(&mut buf, 4).unwrap_err(),
            EncodeError::BufferTooSmall {
                needed: 4,
                available: 3
            }
        );
    }
}
