//! What one connection of the soak does, derived from the run's seed and
//! the connection's serial number alone, so `--only SERIAL` replays it:
//! its release policy, its fault profile, how many calls, whether it ends
//! abruptly, and the call mix (every chunk type).

use crate::xprt::PROC_DROP;
use rdmaxprt::client::CallOptions;
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{DelayConfig, FaultConfig};

/// splitmix64: the soak's own small seeded RNG.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// An RNG for `seed` mixed with `salt`.
    pub fn new(seed: u64, salt: u64) -> Self {
        let mut r = Self(seed ^ salt.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next();
        r
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The fault profiles connections rotate through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// No faults.
    None,
    /// Whole posts fail.
    PostFail,
    /// Chains fail part-way.
    Partial,
    /// WRs complete with an error status.
    ErrorCompletion,
    /// A QP goes to error.
    QpError,
    /// The connection is lost.
    Disconnect,
    /// Completions are held back for a few polls.
    Delay,
    /// Everything at once, at lower rates.
    Mixed,
}

/// Every profile, in rotation order.
pub const PROFILES: [Profile; 8] = [
    Profile::None,
    Profile::PostFail,
    Profile::Partial,
    Profile::ErrorCompletion,
    Profile::QpError,
    Profile::Disconnect,
    Profile::Delay,
    Profile::Mixed,
];

impl Profile {
    /// The injector configuration (rates per post / per executed WR; a
    /// connection runs a few thousand WRs, so most faulted connections
    /// see their fault once, part-way through).
    pub fn faults(self, seed: u64) -> Option<FaultConfig> {
        let none = FaultConfig::none(seed);
        let delay = Some(DelayConfig {
            rate: 0.2,
            max_polls: 4,
        });
        Some(match self {
            Profile::None => return None,
            Profile::PostFail => FaultConfig {
                post_fail_rate: 4e-4,
                ..none
            },
            Profile::Partial => FaultConfig {
                partial_chain_fail_rate: 3e-3,
                ..none
            },
            Profile::ErrorCompletion => FaultConfig {
                error_completion_rate: 3e-4,
                ..none
            },
            Profile::QpError => FaultConfig {
                qp_error_rate: 3e-4,
                ..none
            },
            Profile::Disconnect => FaultConfig {
                disconnect_rate: 3e-4,
                ..none
            },
            Profile::Delay => FaultConfig { delay, ..none },
            Profile::Mixed => FaultConfig {
                post_fail_rate: 1e-4,
                partial_chain_fail_rate: 5e-4,
                error_completion_rate: 5e-5,
                qp_error_rate: 5e-5,
                disconnect_rate: 5e-5,
                delay,
                ..none
            },
        })
    }
}

/// One connection's plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The connection's serial number in the run.
    pub serial: u64,
    /// Its own seed (faults, call mix).
    pub seed: u64,
    /// Release policy of its server transport.
    pub policy: Policy,
    /// Fault profile.
    pub profile: Profile,
    /// Calls to make before closing.
    pub calls: u64,
    /// Close with calls still in flight instead of draining first.
    pub abrupt: bool,
    /// Send Queue depth of both ends (a shallow SQ makes replies wait for
    /// space; the client's credits are capped to it).
    pub sq_depth: u32,
    /// Longest chunk segment the client offers (short ones split chunks
    /// into several segments: multi-WR Read and Write chains).
    pub max_segment: u32,
}

impl Plan {
    /// The plan of connection `serial` of a run with `seed`: policies and
    /// profiles rotate so every pairing comes up every
    /// `policies.len() * 8` connections.
    pub fn new(seed: u64, serial: u64, policies: &[Policy], calls: (u64, u64)) -> Self {
        let mut r = Rng::new(seed, serial);
        let n = policies.len() as u64;
        Self {
            serial,
            seed: r.next(),
            policy: policies[(serial % n) as usize],
            profile: PROFILES[((serial / n) % PROFILES.len() as u64) as usize],
            calls: r.range(calls.0, calls.1),
            abrupt: r.next() % 4 == 0,
            sq_depth: [128, 16][(r.next() % 2) as usize],
            max_segment: [1 << 20, 4096][(r.next() % 2) as usize],
        }
    }
}

/// The kinds of call in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// NULL.
    Null,
    /// A small echo, inline both ways.
    Inline,
    /// A small echo sent through a Position Zero Read chunk.
    PositionZero,
    /// Echo whose results come back through a Write chunk.
    Write,
    /// A large echo: Position Zero call, reply through a Reply chunk.
    Reply,
    /// A positional Read chunk (Read list) in, the bytes back through a
    /// Write chunk.
    ReadList,
    /// A call the server drops: the client times out.
    Drop,
}

/// Every kind, for reports.
pub const OP_KINDS: [OpKind; 7] = [
    OpKind::Null,
    OpKind::Inline,
    OpKind::PositionZero,
    OpKind::Write,
    OpKind::Reply,
    OpKind::ReadList,
    OpKind::Drop,
];

/// One call: what to send and what must come back.
#[derive(Debug)]
pub struct Op {
    /// Its kind.
    pub kind: OpKind,
    /// Procedure.
    pub proc: u32,
    /// Arguments.
    pub args: Vec<u8>,
    /// Positional Read chunk payload.
    pub payload: Vec<u8>,
    /// Write chunk offered.
    pub write_chunk: Option<u32>,
    /// Reply chunk offered.
    pub reply_chunk: Option<u32>,
    /// Force Position Zero.
    pub position_zero: bool,
    /// The bytes that must come back (results, or bulk with a Write chunk).
    pub expect: Vec<u8>,
}

impl Op {
    /// The call options.
    pub fn options(&self) -> CallOptions<'_> {
        CallOptions {
            write_chunk: self.write_chunk,
            reply_chunk: self.reply_chunk,
            read_payload: (!self.payload.is_empty()).then_some(&self.payload[..]),
            force_position_zero: self.position_zero,
            ..CallOptions::default()
        }
    }
}

fn bytes(r: &mut Rng, n: u64) -> Vec<u8> {
    let x = r.next();
    (0..n)
        .map(|i| (x.rotate_left(i as u32 % 64) as u8) ^ i as u8)
        .collect()
}

/// The next call of the mix (weights out of 64). With `may_drop`, about
/// one call in 8192 is one the server drops (its call never ends, so it
/// keeps its credit: the caller allows it only while credits are left).
pub fn next_op(r: &mut Rng, may_drop: bool) -> Op {
    let echo = |kind, args: Vec<u8>| Op {
        kind,
        proc: crate::worker::PROC_ECHO,
        expect: args.clone(),
        args,
        payload: Vec::new(),
        write_chunk: None,
        reply_chunk: None,
        position_zero: false,
    };
    if r.next() % 8192 == 0 && may_drop {
        return Op {
            proc: PROC_DROP,
            ..echo(OpKind::Drop, bytes(r, 16))
        };
    }
    match r.next() % 64 {
        0..=1 => Op {
            proc: crate::worker::PROC_NULL,
            ..echo(OpKind::Null, Vec::new())
        },
        2..=37 => {
            let n = r.range(0, 512);
            echo(OpKind::Inline, bytes(r, n))
        }
        38..=43 => {
            let n = r.range(16, 900);
            Op {
                position_zero: true,
                ..echo(OpKind::PositionZero, bytes(r, n))
            }
        }
        44..=51 => {
            let n = r.range(100, 8192);
            Op {
                write_chunk: Some(n as u32),
                ..echo(OpKind::Write, bytes(r, n))
            }
        }
        52..=59 => {
            let n = r.range(1100, 6000);
            Op {
                reply_chunk: Some(n as u32 + 256),
                ..echo(OpKind::Reply, bytes(r, n))
            }
        }
        _ => {
            let args = bytes(r, 8);
            let n = r.range(250, 5000) * 4;
            let payload = bytes(r, n);
            let mut expect = args.clone();
            expect.extend_from_slice(&payload);
            Op {
                kind: OpKind::ReadList,
                proc: crate::worker::PROC_ECHO,
                write_chunk: Some(expect.len() as u32),
                args,
                payload,
                reply_chunk: None,
                position_zero: false,
                expect,
            }
        }
    }
}
