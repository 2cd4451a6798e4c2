//! RPC-over-RDMA version 1 connection private data (RFC 8797): what a
//! client and a server say about themselves in the rdma_cm connect request
//! and accept, the kernel's `struct rpcrdma_connect_private`.
//!
//! ```text
//!  0                   1                   2                   3
//! +---------------+---------------+---------------+---------------+
//! |                     magic 0xf6ab0e18                          |
//! +---------------+---------------+---------------+---------------+
//! |  version (1)  |     flags     |   send size   |   recv size   |
//! +---------------+---------------+---------------+---------------+
//! ```
//!
//! Sizes are encoded as `bytes / 1024 - 1` (1 KiB .. 256 KiB). The flags
//! carry one bit: the sender can take Send With Invalidate. The CM may pad
//! the data with zeros up to its own message size, so decoding reads the
//! first eight bytes and ignores the rest.
//!
//! Absent or unusable private data is not an error to the connection: the
//! peer is an RFC 8166 peer and both inline thresholds are the RFC 8166
//! default, 1024 bytes ([`negotiate`]). [`decode`] says why data was unusable
//! so a caller can count it.

use super::DEFAULT_INLINE_THRESHOLD;

/// `rdma_cm_magic`: identifies RPC-over-RDMA private data.
pub const RPCRDMA_CMP_MAGIC: u32 = 0xf6ab_0e18;
/// The only private-data version defined.
pub const RPCRDMA_CMP_VERSION: u8 = 1;
/// Flag bit: the sender can receive Send With Invalidate.
pub const RPCRDMA_CMP_F_SND_W_INV_OK: u8 = 1 << 0;
/// Bytes of the encoded private data.
pub const CONNECT_PRIVATE_LEN: usize = 8;
/// Smallest inline size the encoding can carry (code 0).
pub const MIN_ENCODED_SIZE: u32 = 1024;
/// Largest inline size the encoding can carry (code 255).
pub const MAX_ENCODED_SIZE: u32 = 256 * 1024;

/// One side's connection private data.
#[doc(alias = "rpcrdma_connect_private")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectPrivate {
    /// The sender can take Send With Invalidate.
    pub remote_invalidation: bool,
    /// The largest message the sender will send inline (bytes).
    pub send_size: u32,
    /// The largest message the sender can receive inline (bytes).
    pub recv_size: u32,
}

/// Why private data was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectPrivateError {
    /// Fewer than [`CONNECT_PRIVATE_LEN`] bytes (none at all included).
    TooShort {
        /// Bytes present.
        len: usize,
    },
    /// The first word is not [`RPCRDMA_CMP_MAGIC`].
    BadMagic {
        /// The word found.
        found: u32,
    },
    /// A version this implementation does not know.
    BadVersion {
        /// The version found.
        found: u8,
    },
}

impl core::fmt::Display for ConnectPrivateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "RPC-over-RDMA private data too short ({len} of {CONNECT_PRIVATE_LEN} bytes)"
            ),
            Self::BadMagic { found } => {
                write!(f, "RPC-over-RDMA private data magic {found:#010x} is wrong")
            }
            Self::BadVersion { found } => {
                write!(f, "RPC-over-RDMA private data version {found} is unknown")
            }
        }
    }
}

/// `rpcrdma_encode_buffer_size`: the size code for `bytes`, rounded down to
/// a whole KiB and clamped to what the encoding carries (so the peer never
/// believes in more room than there is).
pub const fn encode_size(bytes: u32) -> u8 {
    let kib = if bytes < MIN_ENCODED_SIZE {
        1
    } else if bytes > MAX_ENCODED_SIZE {
        256
    } else {
        bytes / 1024
    };
    (kib - 1) as u8
}

/// `rpcrdma_decode_buffer_size`: the bytes a size code stands for.
pub const fn decode_size(code: u8) -> u32 {
    (code as u32 + 1) * 1024
}

impl ConnectPrivate {
    /// The eight bytes on the wire. Sizes that are not whole KiB round
    /// down; sizes outside 1 KiB .. 256 KiB clamp.
    pub fn encode(&self) -> [u8; CONNECT_PRIVATE_LEN] {
        let m = RPCRDMA_CMP_MAGIC.to_be_bytes();
        let flags = if self.remote_invalidation {
            RPCRDMA_CMP_F_SND_W_INV_OK
        } else {
            0
        };
        [
            m[0],
            m[1],
            m[2],
            m[3],
            RPCRDMA_CMP_VERSION,
            flags,
            encode_size(self.send_size),
            encode_size(self.recv_size),
        ]
    }
}

/// Decodes private data as received (possibly zero-padded). Unknown flag
/// bits are ignored (RFC 8797: reserved, sent as zero).
pub fn decode(data: &[u8]) -> Result<ConnectPrivate, ConnectPrivateError> {
    let Some(b) = data.get(..CONNECT_PRIVATE_LEN) else {
        return Err(ConnectPrivateError::TooShort { len: data.len() });
    };
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != RPCRDMA_CMP_MAGIC {
        return Err(ConnectPrivateError::BadMagic { found: magic });
    }
    if b[4] != RPCRDMA_CMP_VERSION {
        return Err(ConnectPrivateError::BadVersion { found: b[4] });
    }
    Ok(ConnectPrivate {
        remote_invalidation: b[5] & RPCRDMA_CMP_F_SND_W_INV_OK != 0,
        send_size: decode_size(b[6]),
        recv_size: decode_size(b[7]),
    })
}

/// What one side of a connection may use after the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Largest message this side may send inline.
    pub max_inline_send: usize,
    /// Largest message this side must be able to receive inline (its
    /// receive buffers' size).
    pub max_inline_recv: usize,
    /// Whether this side may send Send With Invalidate to the peer.
    pub remote_invalidation: bool,
}

/// `svc_rdma_parse_connect_private` (and the client's mirror of it): this
/// side's limits after reading the peer's private data. `ours` is what this
/// side can do at most; `peer` is the peer's decoded data, or `None` when
/// it sent none or unusable data, which means the RFC 8166 defaults (1024
/// bytes each way, no remote invalidation).
///
/// What we send is bounded by what the peer can receive, and what we must
/// receive by what the peer will send. A threshold never drops below the
/// RFC 8166 default, which every peer must support.
pub fn negotiate(ours: &ConnectPrivate, peer: Option<&ConnectPrivate>) -> Negotiated {
    let (peer_recv, peer_send, inv) = match peer {
        Some(p) => (
            p.recv_size as usize,
            p.send_size as usize,
            p.remote_invalidation,
        ),
        None => (DEFAULT_INLINE_THRESHOLD, DEFAULT_INLINE_THRESHOLD, false),
    };
    let floor = |v: usize| v.max(DEFAULT_INLINE_THRESHOLD);
    Negotiated {
        max_inline_send: floor((ours.send_size as usize).min(peer_recv)),
        max_inline_recv: floor((ours.recv_size as usize).min(peer_send)),
        remote_invalidation: inv,
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_typed(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match decode(&bytes) {
                Ok(p) => {
                    prop_assert!(bytes.len() >= CONNECT_PRIVATE_LEN);
                    prop_assert_eq!(&p.encode()[..4], &bytes[..4]);
                    prop_assert!((MIN_ENCODED_SIZE..=MAX_ENCODED_SIZE).contains(&p.send_size));
                }
                Err(ConnectPrivateError::TooShort { len }) => prop_assert!(len < CONNECT_PRIVATE_LEN),
                Err(_) => prop_assert!(bytes.len() >= CONNECT_PRIVATE_LEN),
            }
        }

        #[test]
        fn negotiated_thresholds_never_exceed_either_side(
            ours in (any::<bool>(), 0u32..300_000, 0u32..300_000),
            peer in proptest::option::of((any::<bool>(), 0u8..=255, 0u8..=255)),
        ) {
            let ours = ConnectPrivate { remote_invalidation: ours.0, send_size: ours.1, recv_size: ours.2 };
            let peer = peer.map(|(i, s, r)| ConnectPrivate {
                remote_invalidation: i,
                send_size: decode_size(s),
                recv_size: decode_size(r),
            });
            let n = negotiate(&ours, peer.as_ref());
            let (peer_recv, peer_send) = peer.map_or((1024, 1024), |p| (p.recv_size, p.send_size));
            // Never more than the peer can take, unless both fall back to
            // the floor every peer supports.
            prop_assert!(n.max_inline_send as u32 <= peer_recv.max(1024));
            prop_assert!(n.max_inline_recv as u32 <= peer_send.max(1024));
            prop_assert!(n.max_inline_send as u32 <= ours.send_size.max(1024));
            prop_assert!(n.max_inline_send >= 1024 && n.max_inline_recv >= 1024);
            prop_assert_eq!(n.remote_invalidation, peer.is_some_and(|p| p.remote_invalidation));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_clients_bytes_decode_as_measured() {
        // xprtrdma's CM REQ private data, captured in the VM: 4 KiB each
        // way, remote invalidation OK.
        let p = decode(&[0xf6, 0xab, 0x0e, 0x18, 1, 1, 3, 3]).unwrap();
        assert_eq!(
            p,
            ConnectPrivate {
                remote_invalidation: true,
                send_size: 4096,
                recv_size: 4096
            }
        );
    }

    #[test]
    fn encode_then_decode_round_trips_and_padding_is_ignored() {
        let p = ConnectPrivate {
            remote_invalidation: false,
            send_size: 4096,
            recv_size: 8192,
        };
        let mut wire = [0u8; 56];
        wire[..8].copy_from_slice(&p.encode());
        assert_eq!(&wire[..8], &[0xf6, 0xab, 0x0e, 0x18, 1, 0, 3, 7]);
        assert_eq!(decode(&wire), Ok(p));
    }

    #[test]
    fn sizes_round_down_and_clamp() {
        assert_eq!(encode_size(0), 0);
        assert_eq!(encode_size(1024), 0);
        assert_eq!(encode_size(4095), 2);
        assert_eq!(encode_size(4096), 3);
        assert_eq!(encode_size(256 * 1024), 255);
        assert_eq!(encode_size(u32::MAX), 255);
        assert_eq!(decode_size(255), 256 * 1024);
        for code in 0..=255u8 {
            assert_eq!(encode_size(decode_size(code)), code);
        }
    }

    #[test]
    fn unusable_data_is_a_typed_reason() {
        assert_eq!(decode(&[]), Err(ConnectPrivateError::TooShort { len: 0 }));
        assert_eq!(
            decode(&[0xf6, 0xab, 0x0e, 0x18, 1, 0, 3]),
            Err(ConnectPrivateError::TooShort { len: 7 })
        );
        assert_eq!(
            decode(&[0, 0, 0, 0, 1, 0, 3, 3]),
            Err(ConnectPrivateError::BadMagic { found: 0 })
        );
        assert_eq!(
            decode(&[0xf6, 0xab, 0x0e, 0x18, 2, 0, 3, 3]),
            Err(ConnectPrivateError::BadVersion { found: 2 })
        );
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        let p = decode(&[0xf6, 0xab, 0x0e, 0x18, 1, 0xfe, 0, 0]).unwrap();
        assert!(!p.remote_invalidation);
    }

    #[test]
    fn negotiation_takes_the_smaller_side_and_defaults_without_data() {
        let ours = ConnectPrivate {
            remote_invalidation: false,
            send_size: 4096,
            recv_size: 4096,
        };
        let client = ConnectPrivate {
            remote_invalidation: true,
            send_size: 2048,
            recv_size: 8192,
        };
        assert_eq!(
            negotiate(&ours, Some(&client)),
            Negotiated {
                max_inline_send: 4096,
                max_inline_recv: 2048,
                remote_invalidation: true
            }
        );
        assert_eq!(
            negotiate(&ours, None),
            Negotiated {
                max_inline_send: 1024,
                max_inline_recv: 1024,
                remote_invalidation: false
            }
        );
        let tiny = ConnectPrivate {
            remote_invalidation: false,
            send_size: 512,
            recv_size: 512,
        };
        let n = negotiate(&tiny, Some(&client));
        assert_eq!((n.max_inline_send, n.max_inline_recv), (1024, 1024));
    }
}
