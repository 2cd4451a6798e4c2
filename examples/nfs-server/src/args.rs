//! Decoding of NFSv3 procedure arguments (RFC 1813 section 3.3).
//!
//! Fixed-size pieces (`sattr3`, `createhow3`, `stable_how`, cookies,
//! verifiers, times) are decoded by `nfs3_types`. Variable-length opaques
//! (file handles, names, paths, WRITE data) are decoded here, borrowed from
//! the call message, for two reasons:
//! - `nfs3_types`' `Opaque::unpack` allocates the length read from the wire
//!   before it checks that many bytes are present (a 4-byte argument
//!   `ffffffff` allocates 4 GiB), and
//! - it always copies: WRITE data would be copied out of the buffer the
//!   transport pulled the Read chunk into (`benches/write_args.rs`
//!   measures that copy).
//!
//! Every error is [`ArgError`]; the service answers it with GARBAGE_ARGS.

use nfs3_types::nfs3::{
    cookieverf3, createhow3, ftype3, sattr3, sattrguard3, stable_how, NFS3_FHSIZE,
};
use nfs3_types::xdr_codec::Unpack;

/// Why a procedure's arguments could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// The arguments end early.
    #[error("arguments truncated")]
    Truncated,
    /// A file handle longer than NFS3_FHSIZE (64).
    #[error("file handle of {0} bytes (at most 64)")]
    HandleTooLong(u32),
    /// An enum or bool with a value outside its range.
    #[error("invalid XDR value")]
    BadValue,
    /// Bytes left after the last argument.
    #[error("{0} bytes after the arguments")]
    Trailing(usize),
}

/// A cursor over XDR-encoded arguments, borrowing from them.
#[derive(Debug, Clone)]
pub struct Xdr<'a> {
    buf: &'a [u8],
}

impl<'a> Xdr<'a> {
    /// Starts at the first byte of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet decoded.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ArgError> {
        if n > self.buf.len() {
            return Err(ArgError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, ArgError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned 64-bit integer.
    pub fn u64(&mut self) -> Result<u64, ArgError> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    /// A variable-length opaque (length, bytes, padding), borrowed. The
    /// length is checked against the bytes present before anything else.
    pub fn opaque(&mut self) -> Result<&'a [u8], ArgError> {
        let len = self.u32()? as usize;
        let data = self.take(len)?;
        self.take((4 - len % 4) % 4)?;
        Ok(data)
    }

    /// An `nfs_fh3` (at most 64 bytes).
    pub fn fh(&mut self) -> Result<&'a [u8], ArgError> {
        let mut peek = self.clone();
        let len = peek.u32()?;
        if len as usize > NFS3_FHSIZE {
            return Err(ArgError::HandleTooLong(len));
        }
        self.opaque()
    }

    /// A fixed-size `nfs3_types` value (no variable-length parts, so its
    /// decoding allocates nothing the wire chose).
    pub fn fixed<T: Unpack>(&mut self) -> Result<T, ArgError> {
        let mut r: &[u8] = self.buf;
        let (v, n) = T::unpack(&mut r).map_err(|e| match e {
            nfs3_types::xdr_codec::Error::Io(_) => ArgError::Truncated,
            _ => ArgError::BadValue,
        })?;
        self.take(n)?;
        Ok(v)
    }

    /// Fails unless every byte was decoded.
    pub fn finish(&self) -> Result<(), ArgError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(ArgError::Trailing(n)),
        }
    }
}

/// `diropargs3`: a directory handle and a name in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirOp<'a> {
    /// The directory's handle.
    pub dir: &'a [u8],
    /// The name (not yet checked: may be empty, long, or contain `/`).
    pub name: &'a [u8],
}

impl<'a> DirOp<'a> {
    fn decode(x: &mut Xdr<'a>) -> Result<Self, ArgError> {
        Ok(Self {
            dir: x.fh()?,
            name: x.opaque()?,
        })
    }
}

/// The decoded arguments of one NFSv3 procedure.
#[derive(Debug)]
pub enum NfsArgs<'a> {
    /// NULL (0).
    Null,
    /// GETATTR (1).
    Getattr {
        /// Object.
        fh: &'a [u8],
    },
    /// SETATTR (2).
    Setattr {
        /// Object.
        fh: &'a [u8],
        /// Attributes to set.
        attrs: sattr3,
        /// Only if the ctime is still this.
        guard: sattrguard3,
    },
    /// LOOKUP (3).
    Lookup(DirOp<'a>),
    /// ACCESS (4).
    Access {
        /// Object.
        fh: &'a [u8],
        /// ACCESS3_* bits asked for.
        access: u32,
    },
    /// READLINK (5).
    Readlink {
        /// The symbolic link.
        fh: &'a [u8],
    },
    /// READ (6).
    Read {
        /// File.
        fh: &'a [u8],
        /// Byte offset.
        offset: u64,
        /// Bytes asked for.
        count: u32,
    },
    /// WRITE (7).
    Write {
        /// File.
        fh: &'a [u8],
        /// Byte offset.
        offset: u64,
        /// Bytes the client says it sends.
        count: u32,
        /// UNSTABLE, DATA_SYNC or FILE_SYNC.
        stable: stable_how,
        /// The data, borrowed from the call message.
        data: &'a [u8],
    },
    /// CREATE (8).
    Create {
        /// Where.
        at: DirOp<'a>,
        /// UNCHECKED, GUARDED or EXCLUSIVE.
        how: createhow3,
    },
    /// MKDIR (9).
    Mkdir {
        /// Where.
        at: DirOp<'a>,
        /// Initial attributes.
        attrs: sattr3,
    },
    /// SYMLINK (10).
    Symlink {
        /// Where.
        at: DirOp<'a>,
        /// Initial attributes.
        attrs: sattr3,
        /// The link's target text.
        target: &'a [u8],
    },
    /// MKNOD (11): only decoded as far as its type.
    Mknod {
        /// Where.
        at: DirOp<'a>,
        /// The node type asked for.
        kind: ftype3,
    },
    /// REMOVE (12).
    Remove(DirOp<'a>),
    /// RMDIR (13).
    Rmdir(DirOp<'a>),
    /// RENAME (14).
    Rename {
        /// From.
        from: DirOp<'a>,
        /// To.
        to: DirOp<'a>,
    },
    /// LINK (15).
    Link {
        /// The existing file.
        fh: &'a [u8],
        /// The new name.
        at: DirOp<'a>,
    },
    /// READDIR (16).
    Readdir {
        /// Directory.
        fh: &'a [u8],
        /// Where to resume (0: start).
        cookie: u64,
        /// Verifier of the cookie.
        verf: cookieverf3,
        /// Most bytes of reply.
        count: u32,
    },
    /// READDIRPLUS (17).
    Readdirplus {
        /// Directory.
        fh: &'a [u8],
        /// Where to resume (0: start).
        cookie: u64,
        /// Verifier of the cookie.
        verf: cookieverf3,
        /// Most bytes of directory information (names, cookies, ids).
        dircount: u32,
        /// Most bytes of reply.
        maxcount: u32,
    },
    /// FSSTAT (18).
    Fsstat {
        /// Any object of the file system.
        fh: &'a [u8],
    },
    /// FSINFO (19).
    Fsinfo {
        /// The root.
        fh: &'a [u8],
    },
    /// PATHCONF (20).
    Pathconf {
        /// Any object.
        fh: &'a [u8],
    },
    /// COMMIT (21).
    Commit {
        /// File.
        fh: &'a [u8],
        /// Start of the range.
        offset: u64,
        /// Length of the range (0: to the end).
        count: u32,
    },
}

/// Decodes the arguments of NFSv3 procedure `proc`. `None` for a
/// procedure number NFSv3 does not have.
pub fn decode(proc: u32, args: &[u8]) -> Option<Result<NfsArgs<'_>, ArgError>> {
    if proc > 21 {
        return None;
    }
    let mut x = Xdr::new(args);
    Some(decode_body(proc, &mut x).and_then(|a| {
        // WRITE's opaque may be followed by nothing; every procedure's
        // arguments must be used up exactly.
        x.finish()?;
        Ok(a)
    }))
}

fn decode_body<'a>(proc: u32, x: &mut Xdr<'a>) -> Result<NfsArgs<'a>, ArgError> {
    let fh = |x: &mut Xdr<'a>| x.fh();
    Ok(match proc {
        0 => NfsArgs::Null,
        1 => NfsArgs::Getattr { fh: fh(x)? },
        2 => NfsArgs::Setattr {
            fh: fh(x)?,
            attrs: x.fixed()?,
            guard: x.fixed()?,
        },
        3 => NfsArgs::Lookup(DirOp::decode(x)?),
        4 => NfsArgs::Access {
            fh: fh(x)?,
            access: x.u32()?,
        },
        5 => NfsArgs::Readlink { fh: fh(x)? },
        6 => NfsArgs::Read {
            fh: fh(x)?,
            offset: x.u64()?,
            count: x.u32()?,
        },
        7 => NfsArgs::Write {
            fh: fh(x)?,
            offset: x.u64()?,
            count: x.u32()?,
            stable: x.fixed()?,
            data: x.opaque()?,
        },
        8 => NfsArgs::Create {
            at: DirOp::decode(x)?,
            how: x.fixed()?,
        },
        9 => NfsArgs::Mkdir {
            at: DirOp::decode(x)?,
            attrs: x.fixed()?,
        },
        10 => NfsArgs::Symlink {
            at: DirOp::decode(x)?,
            attrs: x.fixed()?,
            target: x.opaque()?,
        },
        11 => {
            let at = DirOp::decode(x)?;
            let kind: ftype3 = x.fixed()?;
            // The rest (device data or attributes) is not needed:
            // MKNOD is answered NFS3ERR_NOTSUPP.
            let rest = x.remaining();
            x.take(rest)?;
            NfsArgs::Mknod { at, kind }
        }
        12 => NfsArgs::Remove(DirOp::decode(x)?),
        13 => NfsArgs::Rmdir(DirOp::decode(x)?),
        14 => NfsArgs::Rename {
            from: DirOp::decode(x)?,
            to: DirOp::decode(x)?,
        },
        15 => NfsArgs::Link {
            fh: fh(x)?,
            at: DirOp::decode(x)?,
        },
        16 => NfsArgs::Readdir {
            fh: fh(x)?,
            cookie: x.u64()?,
            verf: x.fixed()?,
            count: x.u32()?,
        },
        17 => NfsArgs::Readdirplus {
            fh: fh(x)?,
            cookie: x.u64()?,
            verf: x.fixed()?,
            dircount: x.u32()?,
            maxcount: x.u32()?,
        },
        18 => NfsArgs::Fsstat { fh: fh(x)? },
        19 => NfsArgs::Fsinfo { fh: fh(x)? },
        20 => NfsArgs::Pathconf { fh: fh(x)? },
        _ => NfsArgs::Commit {
            fh: fh(x)?,
            offset: x.u64()?,
            count: x.u32()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh_bytes(fh: &[u8]) -> Vec<u8> {
        let mut v = (fh.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(fh);
        v.resize(v.len() + (4 - fh.len() % 4) % 4, 0);
        v
    }

    #[test]
    fn write_data_is_borrowed_from_the_message() {
        let mut a = fh_bytes(b"handle");
        a.extend_from_slice(&7u64.to_be_bytes());
        a.extend_from_slice(&5u32.to_be_bytes());
        a.extend_from_slice(&2u32.to_be_bytes());
        a.extend_from_slice(&5u32.to_be_bytes());
        a.extend_from_slice(b"hello\0\0\0");
        let Some(Ok(NfsArgs::Write {
            fh,
            offset,
            count,
            stable,
            data,
        })) = decode(7, &a)
        else {
            panic!("WRITE did not decode");
        };
        assert_eq!(
            (fh, offset, count, stable),
            (&b"handle"[..], 7, 5, stable_how::FILE_SYNC)
        );
        assert_eq!(data, b"hello");
        assert!(std::ptr::eq(data.as_ptr(), a[a.len() - 8..].as_ptr()));
    }

    #[test]
    fn huge_lengths_fail_without_allocating() {
        let a = [0xff; 4];
        assert_eq!(
            decode(1, &a).unwrap().unwrap_err(),
            ArgError::HandleTooLong(u32::MAX)
        );
        let mut a = fh_bytes(b"d");
        a.extend_from_slice(&[0xff; 4]);
        assert_eq!(decode(3, &a).unwrap().unwrap_err(), ArgError::Truncated);
    }

    #[test]
    fn bad_enums_trailing_bytes_and_unknown_procs() {
        let mut a = fh_bytes(b"f");
        a.extend_from_slice(&[0; 12]);
        a.extend_from_slice(&9u32.to_be_bytes()); // stable_how 9
        a.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(decode(7, &a).unwrap().unwrap_err(), ArgError::BadValue);
        let mut a = fh_bytes(b"f");
        a.push(0);
        assert_eq!(decode(1, &a).unwrap().unwrap_err(), ArgError::Trailing(1));
        assert!(decode(22, &[]).is_none());
    }
}
