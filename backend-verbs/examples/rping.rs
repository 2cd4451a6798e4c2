//! An rping-compatible server and client on rdmaxprt-verbs, for interop
//! with rdma-core's stock `rping` (librdmacm/examples).
//!
//! ```text
//! rping --server [-a ADDR] [-p PORT] [-C COUNT] [-S SIZE] [-v]
//! rping --client  -a ADDR  [-p PORT] [-C COUNT] [-S SIZE] [-v]
//! ```
//! (`-s`/`-c` work too; `-V` is the same as `-v`; `--timeout SECS` bounds
//! every wait, default 30.)
//!
//! # The wire protocol (rping's, over an RC connection made by rdma_cm)
//! Every control message is a 16-byte SEND: the big-endian triple
//! `(addr: u64, rkey: u32, len: u32)` naming a buffer of the sender.
//! One ping:
//! 1. the client fills its *source* buffer and SENDs its triple;
//! 2. the server RDMA READs `len` bytes of it into its own buffer, then
//!    SENDs a 16-byte "go ahead" (contents ignored);
//! 3. the client SENDs the triple of its *sink* buffer;
//! 4. the server RDMA WRITEs the data it read (up to and including the
//!    first NUL, which rping puts in the last byte) into the sink, then
//!    SENDs another "go ahead";
//! 5. the client compares sink and source.
//!
//! The client ends with `rdma_disconnect` after COUNT pings (0 = forever);
//! the server sees its receives flush and the DISCONNECTED event.
//!
//! The ping data is rping's: `"rdma-ping-<n>: "` followed by letters that
//! cycle through ASCII 65..=122 from a start that advances by one each
//! ping, with a NUL in the last byte. The server checks every buffer it
//! reads against that; the client (with `-v`) checks that the sink came
//! back equal to the source and zeroes the sink before each ping, so a
//! missing RDMA WRITE cannot pass. Exit status 0 only if every ping
//! completed (and, with `-C`, exactly COUNT of them) and verified.

use std::collections::VecDeque;
use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdmaxprt_verbs::{
    Access, CmConnection, CmListener, CompletionChannel, CompletionQueue, MemoryPool,
    ProtectionDomain, QpCaps, RecvWr, ResolvedRoute, SendOp, SendWr, VerbsError, WcOpcode,
    WorkCompletion,
};

type Res<T> = Result<T, Box<dyn Error>>;

/// rping's default port.
const DEFAULT_PORT: u16 = 7174;
/// rping's buffer bound: sizes must be below 64 KiB.
const MAX_SIZE: usize = 64 * 1024 - 1;
/// The smallest size rping accepts (its prefix plus the widest count).
const MIN_SIZE: usize = 26;
/// How often a wait for a completion looks for a disconnect.
const CM_CHECK: Duration = Duration::from_millis(50);
/// The control message: (addr, rkey, len), big-endian.
const MSG_LEN: usize = 16;

// Pool layout: two receive slots, one send slot, the RDMA buffer (the
// server's read target, the client's sink) and the client's source.
const RECV_SLOT: usize = 64;
const SEND_OFF: usize = 2 * RECV_SLOT;
const RDMA_OFF: usize = 4096;
const START_OFF: usize = RDMA_OFF + 64 * 1024;
const POOL_LEN: usize = START_OFF + 64 * 1024;

// wr_ids: 0 and 1 are the receive slots.
const WR_SEND: u64 = 10;
const WR_READ: u64 = 11;
const WR_WRITE: u64 = 12;

#[derive(Debug, Clone)]
struct Opts {
    server: bool,
    addr: IpAddr,
    port: u16,
    count: u64,
    size: usize,
    verify: bool,
    timeout: Duration,
}

fn usage() -> String {
    "usage: rping (--server|-s) [-a ADDR] [-p PORT] [-C COUNT] [-S SIZE] [-v] [--timeout SECS]\n       \
     rping (--client|-c) -a ADDR [-p PORT] [-C COUNT] [-S SIZE] [-v] [--timeout SECS]"
        .to_owned()
}

fn parse_args() -> Res<Opts> {
    let mut role = None;
    let mut o = Opts {
        server: false,
        addr: IpAddr::from([0, 0, 0, 0]),
        port: DEFAULT_PORT,
        count: 0,
        size: 64,
        verify: false,
        timeout: Duration::from_secs(30),
    };
    let mut addr_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--server" | "-s" => role = Some(true),
            "--client" | "-c" => role = Some(false),
            "-a" => {
                o.addr = value("-a")?.parse()?;
                addr_given = true;
            }
            "-p" => o.port = value("-p")?.parse()?,
            "-C" => o.count = value("-C")?.parse()?,
            "-S" => o.size = value("-S")?.parse()?,
            "-v" | "-V" | "--verify" => o.verify = true,
            "--timeout" => o.timeout = Duration::from_secs(value("--timeout")?.parse()?),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{}", usage()).into()),
        }
    }
    o.server = role.ok_or_else(|| format!("--server or --client is required\n{}", usage()))?;
    if !o.server && !addr_given {
        return Err(format!("the client needs -a ADDR\n{}", usage()).into());
    }
    if !(MIN_SIZE..=MAX_SIZE).contains(&o.size) {
        return Err(format!("-S {}: valid sizes are {MIN_SIZE}..={MAX_SIZE}", o.size).into());
    }
    Ok(o)
}

/// rping's ping data for ping number `ping`, `size` bytes.
fn ping_data(ping: u64, size: usize) -> Vec<u8> {
    let mut buf = format!("rdma-ping-{ping}: ").into_bytes();
    buf.truncate(size);
    // The letter run starts one later every ping, wrapping 122 -> 65.
    let mut c = 65 + (ping % 58) as u8;
    while buf.len() < size {
        buf.push(c);
        c = if c >= 122 { 65 } else { c + 1 };
    }
    if let Some(last) = buf.last_mut() {
        *last = 0;
    }
    buf
}

fn encode(addr: u64, rkey: u32, len: u32) -> [u8; MSG_LEN] {
    let mut m = [0u8; MSG_LEN];
    m[..8].copy_from_slice(&addr.to_be_bytes());
    m[8..12].copy_from_slice(&rkey.to_be_bytes());
    m[12..].copy_from_slice(&len.to_be_bytes());
    m
}

fn decode(m: &[u8]) -> (u64, u32, u32) {
    let mut a = [0u8; 8];
    a.copy_from_slice(&m[..8]);
    let mut k = [0u8; 4];
    k.copy_from_slice(&m[8..12]);
    let mut l = [0u8; 4];
    l.copy_from_slice(&m[12..16]);
    (
        u64::from_be_bytes(a),
        u32::from_be_bytes(k),
        u32::from_be_bytes(l),
    )
}

/// How a wait for a completion ended without one.
#[derive(Debug)]
enum Stop {
    /// The peer disconnected (DISCONNECTED event, or flushed requests).
    Disconnected,
    /// Anything else.
    Failed(Box<dyn Error>),
}

impl<E: Into<Box<dyn Error>>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.into())
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Disconnected => f.write_str("the peer disconnected"),
            Stop::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// One connection with its CQ, its registered memory and the completions
/// polled but not yet asked for.
struct Link {
    conn: CmConnection,
    cq: CompletionQueue,
    pool: MemoryPool,
    pending: VecDeque<WorkCompletion>,
    timeout: Duration,
    /// The DISCONNECTED event was seen (and consumed).
    disconnected: bool,
}

impl Link {
    /// Wrap a fresh connection and post its two receives.
    fn new(
        conn: CmConnection,
        cq: CompletionQueue,
        pool: MemoryPool,
        timeout: Duration,
    ) -> Res<Self> {
        let link = Self {
            conn,
            cq,
            pool,
            pending: VecDeque::new(),
            timeout,
            disconnected: false,
        };
        link.post_recv(0)?;
        link.post_recv(1)?;
        Ok(link)
    }

    fn post_recv(&self, slot: u64) -> Res<()> {
        let sge = [self.pool.sge(slot as usize * RECV_SLOT, RECV_SLOT as u32)?];
        // SAFETY: the slot lies in our pool, which outlives the QP's work
        // (the Link owns both and drains nothing early); nobody reads or
        // reuses the slot until its completion has been polled.
        unsafe {
            self.conn.qp().post_recv(&[RecvWr {
                wr_id: slot,
                sges: &sge,
            }])?
        };
        Ok(())
    }

    /// Post one signaled send-queue request on pool range `off..off+len`.
    fn post(&self, wr_id: u64, op: SendOp, off: usize, len: usize) -> Res<()> {
        let sge = [self.pool.sge(off, len as u32)?];
        // SAFETY: the range lies in our registered pool, which the Link keeps
        // alive; every caller waits for this wr_id's completion (`expect`)
        // before touching the range again. Remote ranges come from the peer.
        unsafe {
            self.conn.qp().post_send(&[SendWr {
                wr_id,
                op,
                sges: &sge,
                signaled: true,
                fence: false,
            }])?
        };
        Ok(())
    }

    /// SEND a 16-byte control message (after the previous one completed).
    fn send_msg(&self, msg: &[u8; MSG_LEN]) -> Res<()> {
        self.pool.write(SEND_OFF, msg)?;
        self.post(WR_SEND, SendOp::Send, SEND_OFF, MSG_LEN)
    }

    /// The next completion whose wr_id satisfies `want`; others polled on
    /// the way are kept for later calls.
    fn expect(&mut self, what: &str, want: impl Fn(u64) -> bool) -> Result<WorkCompletion, Stop> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(i) = self.pending.iter().position(|w| want(w.wr_id())) {
                let wc = self.pending.remove(i).ok_or("pending vanished")?;
                if wc.status().is_flush() {
                    return Err(Stop::Disconnected);
                }
                if !wc.is_ok() {
                    return Err(format!("{what}: work request failed: {wc:?}").into());
                }
                return Ok(wc);
            }
            // An error on any request ends the connection: report it now.
            if let Some(bad) = self.pending.iter().find(|w| !w.is_ok()) {
                if bad.status().is_flush() {
                    return Err(Stop::Disconnected);
                }
                return Err(format!("waiting for {what}: a work request failed: {bad:?}").into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("timed out waiting for {what}").into());
            }
            // A user-space QP does not flush when the peer disconnects (only
            // the side calling rdma_disconnect moves its QP to error), so
            // look at the CM events too, between short waits on the CQ.
            let mut got = Vec::new();
            match self.cq.next(&mut got, 16, left.min(CM_CHECK)) {
                Ok(_) => self.pending.extend(got),
                Err(VerbsError::Timeout { .. }) => {
                    match self.conn.wait_disconnected(Duration::ZERO) {
                        Ok(()) => {
                            self.disconnected = true;
                            return Err(Stop::Disconnected);
                        }
                        Err(VerbsError::Timeout { .. }) => {}
                        Err(e) => return Err(format!("waiting for {what}: {e}").into()),
                    }
                }
                Err(e) => return Err(format!("waiting for {what}: {e}").into()),
            }
        }
    }

    /// Wait for the next control message; repost its slot; return it.
    fn recv_msg(&mut self, what: &str) -> Result<[u8; MSG_LEN], Stop> {
        let wc = self.expect(what, |id| id < 2)?;
        let len = wc.byte_len().unwrap_or(0) as usize;
        if len != MSG_LEN || wc.opcode() != Some(WcOpcode::Recv) {
            return Err(format!("{what}: expected a {MSG_LEN}-byte message, got {wc:?}").into());
        }
        let mut m = [0u8; MSG_LEN];
        self.pool.read(wc.wr_id() as usize * RECV_SLOT, &mut m)?;
        self.post_recv(wc.wr_id())?;
        Ok(m)
    }
}

fn caps() -> QpCaps {
    QpCaps {
        max_send_wr: 16,
        max_recv_wr: 4,
        max_send_sge: 1,
        max_recv_sge: 1,
        max_inline_data: 0,
    }
}

fn server(o: &Opts) -> Res<()> {
    let listen = SocketAddr::new(o.addr, o.port);
    let listener = CmListener::bind(listen, 3)?;
    println!("rping server: listening on {listen}");
    let req = listener.get_request(o.timeout)?;
    let ctx = req.context()?;
    let pd = ProtectionDomain::new(&ctx)?;
    let ch = CompletionChannel::new(&ctx)?;
    let cq = CompletionQueue::new(&ctx, 64, Some(&ch))?;
    let pool = MemoryPool::new(&pd, POOL_LEN, Access::ALL)?;
    pool.write(SEND_OFF, &[0u8; MSG_LEN])?;
    // The receives can only go up once accept made the QP; the client's
    // first SEND may meet an RNR NAK meanwhile (it retries: rnr_retry 7).
    let conn = req.accept(&pd, &cq, &cq, caps(), &[], o.timeout)?;
    let mut link = Link::new(conn, cq, pool, o.timeout)?;
    let t0 = Instant::now();
    let mut pings = 0u64;
    let mut buf = vec![0u8; MAX_SIZE + 1];
    let end = loop {
        // 1. The source advertisement (or the end of the connection).
        let (addr, rkey, len) = match link.recv_msg("the source advertisement") {
            Ok(m) => decode(&m),
            Err(Stop::Disconnected) => break Ok(()),
            Err(e) => break Err(e),
        };
        let len = len as usize;
        if len == 0 || len > START_OFF - RDMA_OFF {
            break Err(format!("ping {pings}: bad source length {len}").into());
        }
        // 2. RDMA READ it, check it, say go ahead.
        let step = (|| -> Result<(), Stop> {
            link.post(
                WR_READ,
                SendOp::RdmaRead {
                    remote_addr: addr,
                    rkey,
                },
                RDMA_OFF,
                len,
            )?;
            link.expect("the RDMA READ", |id| id == WR_READ)?;
            link.pool.read(RDMA_OFF, &mut buf[..len])?;
            if o.verify {
                let want = ping_data(pings, len);
                if buf[..len] != want[..] {
                    return Err(format!(
                        "ping {pings}: the data read differs from rping's pattern: got {:?}, want {:?}",
                        String::from_utf8_lossy(&buf[..len.min(64)]),
                        String::from_utf8_lossy(&want[..len.min(64)])
                    )
                    .into());
                }
            }
            link.send_msg(&[0u8; MSG_LEN])?;
            link.expect("the go-ahead SEND", |id| id == WR_SEND)?;
            // 3. The sink advertisement; 4. RDMA WRITE the data back.
            let (saddr, srkey, slen) = decode(&link.recv_msg("the sink advertisement")?);
            let n = buf[..len]
                .iter()
                .position(|&b| b == 0)
                .map_or(len, |i| i + 1);
            let n = n.min(slen as usize);
            link.post(
                WR_WRITE,
                SendOp::RdmaWrite {
                    remote_addr: saddr,
                    rkey: srkey,
                },
                RDMA_OFF,
                n,
            )?;
            link.expect("the RDMA WRITE", |id| id == WR_WRITE)?;
            link.send_msg(&[0u8; MSG_LEN])?;
            link.expect("the go-ahead SEND", |id| id == WR_SEND)?;
            Ok(())
        })();
        match step {
            Ok(()) => pings += 1,
            Err(e) => break Err(format!("ping {pings}: {e}").into()),
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    if !link.disconnected {
        let _ = link.conn.wait_disconnected(Duration::from_secs(2));
    }
    end.map_err(|e| e.to_string())?;
    if o.count != 0 && pings != o.count {
        return Err(format!(
            "the client stopped after {pings} pings, expected {}",
            o.count
        )
        .into());
    }
    if pings == 0 {
        return Err("the client disconnected before its first ping".into());
    }
    println!(
        "rping server: {pings} pings of {} B done{} in {secs:.2}s ({:.0} us/ping)",
        o.size,
        if o.verify {
            ", every source read matched rping's pattern"
        } else {
            ""
        },
        secs * 1e6 / pings as f64
    );
    Ok(())
}

fn client(o: &Opts) -> Res<()> {
    let dst = SocketAddr::new(o.addr, o.port);
    let route = ResolvedRoute::resolve(dst, o.timeout)?;
    let ctx = route.context()?;
    let pd = ProtectionDomain::new(&ctx)?;
    let ch = CompletionChannel::new(&ctx)?;
    let cq = CompletionQueue::new(&ctx, 64, Some(&ch))?;
    let pool = MemoryPool::new(&pd, POOL_LEN, Access::ALL)?;
    let conn = route.connect(&pd, &cq, &cq, caps(), &[], o.timeout)?;
    let mut link = Link::new(conn, cq, pool, o.timeout)?;
    println!("rping client: connected to {dst}");
    let (base, rkey) = (link.pool.addr(), link.pool.rkey());
    let size = o.size;
    let zeros = vec![0u8; size];
    let mut sink = vec![0u8; size];
    let t0 = Instant::now();
    let mut ping = 0u64;
    while o.count == 0 || ping < o.count {
        let step = (|| -> Result<(), Stop> {
            let data = ping_data(ping, size);
            link.pool.write(START_OFF, &data)?;
            if o.verify {
                link.pool.write(RDMA_OFF, &zeros)?;
            }
            link.send_msg(&encode(base + START_OFF as u64, rkey, size as u32))?;
            link.expect("the source advertisement SEND", |id| id == WR_SEND)?;
            link.recv_msg("the go-ahead after the RDMA READ")?;
            link.send_msg(&encode(base + RDMA_OFF as u64, rkey, size as u32))?;
            link.expect("the sink advertisement SEND", |id| id == WR_SEND)?;
            link.recv_msg("the go-ahead after the RDMA WRITE")?;
            if o.verify {
                link.pool.read(RDMA_OFF, &mut sink)?;
                if sink != data {
                    return Err(format!(
                        "data mismatch: sent {:?}, got back {:?}",
                        String::from_utf8_lossy(&data[..size.min(64)]),
                        String::from_utf8_lossy(&sink[..size.min(64)])
                    )
                    .into());
                }
            }
            Ok(())
        })();
        if let Err(e) = step {
            return Err(format!("ping {ping}: {e}").into());
        }
        ping += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    link.conn.disconnect()?;
    if !link.disconnected {
        let _ = link.conn.wait_disconnected(Duration::from_secs(2));
    }
    println!(
        "rping client: {ping} pings of {size} B done{} in {secs:.2}s ({:.0} us/ping)",
        if o.verify {
            ", every sink came back equal to its source"
        } else {
            ""
        },
        secs * 1e6 / ping.max(1) as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let res = parse_args().and_then(|o| if o.server { server(&o) } else { client(&o) });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rping: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_data_is_rpings() {
        let d = ping_data(0, 32);
        assert_eq!(&d[..14], b"rdma-ping-0: A");
        assert_eq!(d[31], 0);
        // The start letter advances per ping and wraps after 'z' (122).
        assert_eq!(ping_data(1, 32)[13], b'B');
        assert_eq!(ping_data(57, 40)[14], b'z');
        assert_eq!(ping_data(58, 40)[14], b'A');
        assert!(ping_data(7, 64)[..63].iter().all(|&b| b != 0));
    }

    #[test]
    fn message_round_trip() {
        let m = encode(0x1122_3344_5566_7788, 0xabcd_ef01, 64);
        assert_eq!(m[0], 0x11);
        assert_eq!(decode(&m), (0x1122_3344_5566_7788, 0xabcd_ef01, 64));
    }
}
