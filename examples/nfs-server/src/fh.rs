//! File handles: opaque to the client, stable across a server restart.
//!
//! A handle names an object by what the file system keeps for it, not by
//! its path: the export id, the inode number and the inode's birth time
//! (`statx` `stx_btime`, which tells a reused inode number from the file
//! that had it before, like the kernel's `i_generation`), sealed with a
//! SipHash-2-4 MAC under the server's key so that a client cannot forge a
//! handle for an inode it never looked up. With the same key file, the
//! same handles work after a restart.
//!
//! Layout (36 bytes): `"RXN1"`, export id (u32), inode (u64), birth
//! seconds (i64), birth nanoseconds (u32), MAC (8 bytes) over the first 28.

use siphasher::sip::SipHasher24;
use std::hash::Hasher;

/// Encoded length of a handle.
pub const FH_LEN: usize = 36;
const MAGIC: &[u8; 4] = b"RXN1";
const SEALED: usize = FH_LEN - 8;

/// What a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Inode number.
    pub ino: u64,
    /// Inode birth time, seconds (0 where the file system keeps none).
    pub btime_sec: i64,
    /// Inode birth time, nanoseconds.
    pub btime_nsec: u32,
}

/// Why a handle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FhError {
    /// Not a handle this server makes (NFS3ERR_BADHANDLE).
    #[error("not a handle of this server")]
    Bad,
    /// A well-formed handle of another export (NFS3ERR_STALE).
    #[error("handle of another export")]
    OtherExport,
}

/// Makes and checks handles for one export.
#[derive(Debug, Clone)]
pub struct HandleCodec {
    key: [u8; 16],
    export_id: u32,
}

impl HandleCodec {
    /// A codec for export `export_id` under the 128-bit `key`.
    pub fn new(key: [u8; 16], export_id: u32) -> Self {
        Self { key, export_id }
    }

    fn mac(&self, b: &[u8]) -> [u8; 8] {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(b);
        h.finish().to_be_bytes()
    }

    /// The handle of `id`.
    pub fn encode(&self, id: FileId) -> [u8; FH_LEN] {
        let mut b = [0u8; FH_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.export_id.to_be_bytes());
        b[8..16].copy_from_slice(&id.ino.to_be_bytes());
        b[16..24].copy_from_slice(&id.btime_sec.to_be_bytes());
        b[24..28].copy_from_slice(&id.btime_nsec.to_be_bytes());
        let mac = self.mac(&b[..SEALED]);
        b[SEALED..].copy_from_slice(&mac);
        b
    }

    /// Checks and opens a handle.
    pub fn decode(&self, fh: &[u8]) -> Result<FileId, FhError> {
        let b: &[u8; FH_LEN] = fh.try_into().map_err(|_| FhError::Bad)?;
        if &b[..4] != MAGIC || self.mac(&b[..SEALED]) != b[SEALED..] {
            return Err(FhError::Bad);
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        if u32_at(4) != self.export_id {
            return Err(FhError::OtherExport);
        }
        Ok(FileId {
            ino: u64_at(8),
            btime_sec: u64_at(16) as i64,
            btime_nsec: u32_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: FileId = FileId {
        ino: 0x1234_5678_9abc,
        btime_sec: -5,
        btime_nsec: 999,
    };

    #[test]
    fn round_trip_and_stability() {
        let c = HandleCodec::new([7; 16], 3);
        let h = c.encode(ID);
        assert_eq!(c.decode(&h), Ok(ID));
        // Same key and export: the same bytes (a restarted server).
        assert_eq!(HandleCodec::new([7; 16], 3).encode(ID), h);
    }

    #[test]
    fn forged_truncated_and_foreign_handles_are_refused() {
        let c = HandleCodec::new([7; 16], 3);
        let mut h = c.encode(ID);
        h[9] ^= 1;
        assert_eq!(
            c.decode(&h),
            Err(FhError::Bad),
            "MAC must catch a changed inode"
        );
        assert_eq!(c.decode(&c.encode(ID)[..35]), Err(FhError::Bad));
        assert_eq!(
            HandleCodec::new([8; 16], 3).decode(&c.encode(ID)),
            Err(FhError::Bad)
        );
        let other = HandleCodec::new([7; 16], 4).encode(ID);
        assert_eq!(c.decode(&other), Err(FhError::OtherExport));
        let mut moved = other;
        moved[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(
            c.decode(&moved),
            Err(FhError::Bad),
            "export id is under the MAC"
        );
    }
}
