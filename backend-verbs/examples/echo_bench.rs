//! SEND/RECV echo latency and message rate on our verbs path, shaped like
//! perftest's `ib_send_lat` / `ib_send_bw` so the numbers can be set side
//! by side (`cargo run -p xtask -- vm-bench` does, in the Soft-RoCE VM).
//!
//! ```text
//! echo_bench [-a ADDR] [-p PORT] [--sizes 64,65536] [--lat-iters 1000,200]
//!            [--bw-iters 2000,500] [--window 128] [--rx-depth 512]
//!            [--signal-every 100,1] [--inline 0] [--cycle-buffer 4096]
//!            [--event] [--timeout SECS]
//! ```
//! One process, two threads: a server thread listens on ADDR:PORT (rdma_cm;
//! on rxe use the address of the rxe netdev, not `lo`) and the main thread
//! connects to it, once per test and size; the connect's private data says
//! which test. Per size (iteration counts pair up with `--sizes`, or one
//! count for all):
//! - `lat`: ping-pong. The client SENDs `size` bytes, the server SENDs
//!   `size` bytes back as soon as its receive completes, and so on. Like
//!   ib_send_lat we report half the round trip (typical = median), and
//!   like it (TX depth 1) every send is signaled.
//! - `bw`: the client keeps up to `--window` SENDs in flight (ib_send_bw's
//!   tx depth 128), signaling every `--signal-every`th (ib_send_bw's CQ
//!   moderation: 100, and 1 for large messages), against a server
//!   that keeps `--rx-depth` receives posted (ib_send_bw's 512) and reposts
//!   each one as it completes. Time runs from the first post to the last
//!   send completion (RC: acknowledged, so received).
//!
//! Messages of at most `--inline` bytes are sent inline (`IBV_SEND_INLINE`:
//! the payload is copied into the work request), larger ones from
//! registered memory; the default, 0, is what perftest uses on rxe (its
//! header says `Max inline data : 0[B]`). Like perftest, receives land in a
//! cycle buffer: slot `i` at `(i % bufs) * size`, with as many buffers as
//! fit `--cycle-buffer` bytes (perftest's default, a page: one 64 KiB
//! buffer for every receive, 64 for 64 B messages); 0 gives each slot its
//! own. Nothing reads what was received. Completions are busy-polled, as
//! perftest does, unless `--event`. Latency is timed with the TSC where
//! there is one (x86_64), scaled by the clock over the whole run, as
//! perftest times with its cycle counter: under QEMU TCG the guest's
//! clocksource is hpet, and each clock read is a system call.
//! Results are printed as lines a script can pick up:
//! ```text
//! ECHO lat size=64 iters=1000 typical_us=.. avg_us=.. min_us=.. max_us=..
//! ECHO bw size=64 iters=2000 window=128 signal_every=100 secs=.. mpps=.. mib_s=..
//! ```

use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use rdmaxprt_verbs::{
    Access, CmConnection, CmListener, CompletionChannel, CompletionQueue, Context, MemoryPool,
    ProtectionDomain, QpCaps, RecvWr, ResolvedRoute, SendOp, SendWr, WcOpcode, WorkCompletion,
};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const MODE_LAT: u8 = 1;
const MODE_BW: u8 = 2;
/// Receive slots of a latency connection (either side).
const LAT_RECVS: usize = 16;
/// wr_id flag of send-queue requests (receives use their slot number).
const SEND_FLAG: u64 = 1 << 63;

#[derive(Debug, Clone)]
struct Opts {
    addr: IpAddr,
    port: u16,
    sizes: Vec<usize>,
    lat_iters: Vec<u32>,
    bw_iters: Vec<u32>,
    window: usize,
    rx_depth: usize,
    signal_every: Vec<usize>,
    inline: usize,
    cycle_buffer: usize,
    event: bool,
    timeout: Duration,
}

fn usage() -> &'static str {
    "usage: echo_bench [-a ADDR] [-p PORT] [--sizes 64,65536] [--lat-iters 1000,200] \
     [--bw-iters 2000,500] [--window 128] [--rx-depth 512] [--signal-every 100,1] \
     [--inline 0] [--cycle-buffer 4096] [--event] [--timeout SECS]"
}

fn list<T: std::str::FromStr>(s: &str) -> Res<Vec<T>>
where
    T::Err: Error + Send + Sync + 'static,
{
    s.split(',')
        .map(|x| x.trim().parse::<T>().map_err(Into::into))
        .collect()
}

fn parse_args() -> Res<Opts> {
    let mut o = Opts {
        addr: IpAddr::from([192, 168, 77, 1]),
        port: 7200,
        sizes: vec![64, 65536],
        lat_iters: vec![1000, 200],
        bw_iters: vec![2000, 500],
        window: 128,
        rx_depth: 512,
        signal_every: vec![100, 1],
        inline: 0,
        cycle_buffer: 4096,
        event: false,
        timeout: Duration::from_secs(30),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "-a" => o.addr = value()?.parse()?,
            "-p" => o.port = value()?.parse()?,
            "--sizes" => o.sizes = list(&value()?)?,
            "--lat-iters" => o.lat_iters = list(&value()?)?,
            "--bw-iters" => o.bw_iters = list(&value()?)?,
            "--window" => o.window = value()?.parse()?,
            "--rx-depth" => o.rx_depth = value()?.parse()?,
            "--signal-every" => o.signal_every = list(&value()?)?,
            "--inline" => o.inline = value()?.parse()?,
            "--cycle-buffer" => o.cycle_buffer = value()?.parse()?,
            "--event" => o.event = true,
            "--timeout" => o.timeout = Duration::from_secs(value()?.parse()?),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}\n{}", usage()).into()),
        }
    }
    for (name, v) in [("--lat-iters", &o.lat_iters), ("--bw-iters", &o.bw_iters)] {
        if v.len() != 1 && v.len() != o.sizes.len() {
            return Err(format!("{name}: give one count or one per size").into());
        }
    }
    if o.signal_every.len() != 1 && o.signal_every.len() != o.sizes.len() {
        return Err("--signal-every: give one count or one per size".into());
    }
    if o.sizes.iter().any(|&s| s == 0 || s > 1 << 20)
        || o.window == 0
        || o.rx_depth == 0
        || o.signal_every.contains(&0)
    {
        return Err("sizes must be 1..=1 MiB; window, rx depth, signal-every > 0".into());
    }
    if o.signal_every.iter().any(|&n| n > o.window) {
        // The window would fill with unsignaled sends and never drain.
        return Err("--signal-every must not exceed --window".into());
    }
    Ok(o)
}

/// The value for size number `i` of a per-size list (one value: for all).
fn per_size<T: Copy>(v: &[T], i: usize) -> T {
    if v.len() == 1 {
        v[0]
    } else {
        v[i]
    }
}

/// The test a connection is for, carried in the connect's private data.
#[derive(Debug, Clone, Copy)]
struct Spec {
    mode: u8,
    size: u32,
    iters: u32,
}

impl Spec {
    fn encode(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = b'E';
        b[1] = self.mode;
        b[4..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..12].copy_from_slice(&self.iters.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Res<Self> {
        if b.len() < 12 || b[0] != b'E' {
            return Err(format!("not an echo_bench connect: {b:?}").into());
        }
        let word = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[at..at + 4]);
            u32::from_le_bytes(w)
        };
        Ok(Self {
            mode: b[1],
            size: word(4),
            iters: word(8),
        })
    }
}

/// One side of a connection: its CQ, QP and memory. Slot `i` of the
/// receive area is `size` bytes at `(i % bufs) * size`; the send buffer
/// follows.
struct End {
    conn: CmConnection,
    /// The message, for inline sends (`Some` iff `size` <= `--inline`).
    inline_msg: Option<Vec<u8>>,
    cq: CompletionQueue,
    pool: MemoryPool,
    size: usize,
    /// Distinct receive buffers the slots cycle through (perftest's cycle
    /// buffer).
    bufs: usize,
    /// Wait on the completion channel instead of spinning.
    event: bool,
    timeout: Duration,
    wcs: Vec<WorkCompletion>,
}

/// How many distinct `size`-byte buffers `slots` receives cycle through:
/// as many as fit `--cycle-buffer` bytes (at least one, at most `slots`),
/// or one per slot with `--cycle-buffer 0`.
fn recv_bufs(o: &Opts, size: usize, slots: usize) -> usize {
    if o.cycle_buffer == 0 {
        slots
    } else {
        (o.cycle_buffer / size).clamp(1, slots)
    }
}

/// PD, CQ (busy-poll or event mode) and pool on `ctx`.
fn resources(
    ctx: &Context,
    o: &Opts,
    cq_depth: i32,
    pool_len: usize,
) -> Res<(ProtectionDomain, CompletionQueue, MemoryPool)> {
    let pd = ProtectionDomain::new(ctx)?;
    let ch = if o.event {
        Some(CompletionChannel::new(ctx)?)
    } else {
        None
    };
    let cq = CompletionQueue::new(ctx, cq_depth, ch.as_ref())?;
    let pool = MemoryPool::new(&pd, pool_len, Access::ALL)?;
    Ok((pd, cq, pool))
}

fn caps(send: usize, recv: usize, inline: usize) -> QpCaps {
    QpCaps {
        max_send_wr: send as u32,
        max_recv_wr: recv as u32,
        max_send_sge: 1,
        max_recv_sge: 1,
        max_inline_data: inline as u32,
    }
}

/// The inline payload of a `size`-byte message filled with `byte`, if
/// `size` fits the inline limit.
fn inline_msg(o: &Opts, size: usize, byte: u8) -> Option<Vec<u8>> {
    (size <= o.inline).then(|| vec![byte; size])
}

impl End {
    fn send_off(&self) -> usize {
        self.bufs * self.size
    }

    fn recv_off(&self, slot: usize) -> usize {
        (slot % self.bufs) * self.size
    }

    /// Repost one receive slot (the per-message case: no allocation).
    fn post_recv_one(&self, slot: usize) -> Res<()> {
        let sge = [self.pool.sge(self.recv_off(slot), self.size as u32)?];
        // SAFETY: as in post_recvs.
        unsafe {
            self.conn.qp().post_recv(&[RecvWr {
                wr_id: slot as u64,
                sges: &sge,
            }])?
        };
        Ok(())
    }

    fn post_recvs(&self, slots: impl Iterator<Item = usize>) -> Res<()> {
        let slots: Vec<usize> = slots.collect();
        let sges: Vec<[rdmaxprt_verbs::Sge; 1]> = slots
            .iter()
            .map(|&s| Ok([self.pool.sge(self.recv_off(s), self.size as u32)?]))
            .collect::<Res<_>>()?;
        let wrs: Vec<RecvWr<'_>> = slots
            .iter()
            .zip(&sges)
            .map(|(&slot, s)| RecvWr {
                wr_id: slot as u64,
                sges: s,
            })
            .collect();
        // SAFETY: each slot is a `size`-byte range of our pool, which lives
        // as long as the QP's work (the End owns both). Slots may share a
        // buffer (the cycle buffer): only the device writes them, this
        // program never reads received bytes, and a slot is reposted only
        // after its completion was polled.
        unsafe { self.conn.qp().post_recv(&wrs)? };
        Ok(())
    }

    /// SEND `len` bytes of the send buffer (inline when the message is
    /// small enough); wr_id `SEND_FLAG | tag`.
    fn post_send(&self, tag: u64, len: usize, signaled: bool) -> Res<()> {
        if let Some(msg) = self.inline_msg.as_deref().filter(|m| len <= m.len()) {
            self.conn
                .qp()
                .post_send_inline(SEND_FLAG | tag, &msg[..len], signaled)?;
            return Ok(());
        }
        let sge = [self.pool.sge(self.send_off(), len as u32)?];
        // SAFETY: the send buffer lies in our pool, alive as long as the QP's
        // work; its bytes are written only before the first send (every
        // send of a run carries the same bytes), never while one is posted.
        unsafe {
            self.conn.qp().post_send(&[SendWr {
                wr_id: SEND_FLAG | tag,
                op: SendOp::Send,
                sges: &sge,
                signaled,
                fence: false,
            }])?
        };
        Ok(())
    }

    /// Wait for at least one completion; any failed one is an error.
    fn poll(&mut self) -> Res<&[WorkCompletion]> {
        self.wcs.clear();
        if self.event {
            self.cq.next(&mut self.wcs, 32, self.timeout)?;
        } else {
            self.spin()?;
        }
        if let Some(bad) = self.wcs.iter().find(|w| !w.is_ok()) {
            return Err(format!("work request failed: {bad:?}").into());
        }
        Ok(&self.wcs)
    }

    /// Busy-poll the way perftest does: `ibv_poll_cq` in a bare loop, no
    /// PAUSE between polls (under QEMU TCG a PAUSE leaves the translated
    /// code for the emulator's main loop), the clock read only every 1,024
    /// empty polls for the timeout.
    fn spin(&mut self) -> Res<()> {
        let mut deadline = None;
        let mut empty = 0u32;
        while self.cq.poll(&mut self.wcs, 32)? == 0 {
            empty = empty.wrapping_add(1);
            if empty % 1024 == 0 {
                let now = Instant::now();
                if now >= *deadline.get_or_insert(now + self.timeout) {
                    return Err("timed out waiting for a completion".into());
                }
            }
        }
        Ok(())
    }

    /// Wait for one receive (counting send completions on the way);
    /// returns its slot and the number of sends completed meanwhile.
    fn wait_recv(&mut self, sends_done: &mut usize) -> Res<usize> {
        loop {
            let mut slot = None;
            for w in self.poll()? {
                if w.wr_id() & SEND_FLAG != 0 {
                    *sends_done += 1;
                } else if w.opcode() == Some(WcOpcode::Recv) {
                    slot = Some(w.wr_id() as usize);
                }
            }
            // Latency connections have one message in flight per direction,
            // so a batch holds at most one receive.
            if let Some(s) = slot {
                return Ok(s);
            }
        }
    }
}

/// Serve one connection per test, as the client asks.
fn server(listener: CmListener, o: Opts, conns: usize) -> Res<()> {
    for _ in 0..conns {
        let req = listener.get_request(o.timeout)?;
        let spec = Spec::decode(req.private_data())?;
        let size = spec.size as usize;
        let ctx = req.context()?;
        let recv_slots = if spec.mode == MODE_BW {
            o.rx_depth
        } else {
            LAT_RECVS
        };
        let bufs = recv_bufs(&o, size, recv_slots);
        let (pd, cq, pool) = resources(&ctx, &o, (recv_slots + 64) as i32, (bufs + 1) * size)?;
        let conn = req.accept(
            &pd,
            &cq,
            &cq,
            caps(32, recv_slots, o.inline),
            &[],
            o.timeout,
        )?;
        let mut end = End {
            conn,
            inline_msg: inline_msg(&o, size, 0x5a),
            cq,
            pool,
            size,
            bufs,
            timeout: o.timeout,
            wcs: Vec::with_capacity(32),
            event: o.event,
        };
        end.pool.fill(end.send_off(), size, 0x5a)?;
        end.post_recvs(0..recv_slots)?;
        // "Ready": every receive is up, the client may start the clock.
        end.post_send(u64::from(u32::MAX), 4, true)?;
        let mut sends_done = 0usize;
        let mut sends_posted = 1usize;
        match spec.mode {
            MODE_LAT => {
                for i in 0..spec.iters {
                    let slot = end.wait_recv(&mut sends_done)?;
                    end.post_recv_one(slot)?;
                    end.post_send(u64::from(i), size, true)?;
                    sends_posted += 1;
                }
            }
            MODE_BW => {
                let mut got = 0u32;
                let mut t_first = None;
                while got < spec.iters {
                    let mut slots = Vec::new();
                    for w in end.poll()? {
                        if w.wr_id() & SEND_FLAG != 0 {
                            sends_done += 1;
                        } else {
                            slots.push(w.wr_id() as usize);
                        }
                    }
                    if !slots.is_empty() {
                        t_first.get_or_insert_with(Instant::now);
                        got += slots.len() as u32;
                        end.post_recvs(slots.into_iter())?;
                    }
                }
                let secs = t_first.map_or(0.0, |t| t.elapsed().as_secs_f64());
                eprintln!(
                    "echo_bench server: {got} x {size} B received in {secs:.3}s (first to last)"
                );
            }
            m => return Err(format!("unknown mode {m}").into()),
        }
        while sends_done < sends_posted {
            for w in end.poll()? {
                if w.wr_id() & SEND_FLAG != 0 {
                    sends_done += 1;
                }
            }
        }
        end.conn.wait_disconnected(o.timeout)?;
    }
    Ok(())
}

/// Cheap timestamps for the latency loop, like perftest's get_cycles: the
/// TSC on x86_64 (one instruction; a clock read may be a system call),
/// nanoseconds of the monotonic clock elsewhere. [`Clock::ticks_per_us`]
/// scales them by the monotonic clock over the whole run.
struct Clock {
    t0: Instant,
    s0: u64,
}

impl Clock {
    fn start() -> Self {
        let t0 = Instant::now();
        let mut c = Self { t0, s0: 0 };
        c.s0 = c.stamp();
        c
    }

    #[cfg(target_arch = "x86_64")]
    fn stamp(&self) -> u64 {
        // SAFETY: RDTSC has no preconditions (every x86_64 CPU has it).
        unsafe { std::arch::x86_64::_rdtsc() }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn stamp(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Ticks per microsecond since `start`.
    fn ticks_per_us(&self) -> f64 {
        let us = self.t0.elapsed().as_secs_f64() * 1e6;
        let ticks = self.stamp().wrapping_sub(self.s0) as f64;
        if us > 0.0 && ticks > 0.0 {
            ticks / us
        } else {
            1e3
        }
    }
}

/// Connect for `spec`, post the receives, wait for the server's ready.
fn client_connect(o: &Opts, spec: Spec, send_depth: usize) -> Res<End> {
    let route = ResolvedRoute::resolve(SocketAddr::new(o.addr, o.port), o.timeout)?;
    let ctx = route.context()?;
    let size = spec.size as usize;
    let bufs = recv_bufs(o, size, LAT_RECVS);
    let (pd, cq, pool) = resources(&ctx, o, (send_depth + LAT_RECVS + 16) as i32, {
        (bufs + 1) * size
    })?;
    let conn = route.connect(
        &pd,
        &cq,
        &cq,
        caps(send_depth + 4, LAT_RECVS, o.inline),
        &spec.encode(),
        o.timeout,
    )?;
    let mut end = End {
        conn,
        inline_msg: inline_msg(o, size, 0xa5),
        cq,
        pool,
        size,
        bufs,
        timeout: o.timeout,
        wcs: Vec::with_capacity(32),
        event: o.event,
    };
    end.pool.fill(end.send_off(), size, 0xa5)?;
    end.post_recvs(0..LAT_RECVS)?;
    let mut ignored = 0;
    let slot = end.wait_recv(&mut ignored)?;
    end.post_recv_one(slot)?;
    Ok(end)
}

fn finish(end: End) -> Res<()> {
    end.conn.disconnect()?;
    let _ = end.conn.wait_disconnected(Duration::from_secs(5));
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run_lat(o: &Opts, size: usize, iters: u32) -> Res<()> {
    let spec = Spec {
        mode: MODE_LAT,
        size: size as u32,
        iters,
    };
    let mut end = client_connect(o, spec, 16)?;
    let mut ticks = Vec::with_capacity(iters as usize);
    let (mut done, mut posted) = (0usize, 0usize);
    let clock = Clock::start();
    for i in 0..iters {
        let t = clock.stamp();
        end.post_send(u64::from(i), size, true)?;
        posted += 1;
        let slot = end.wait_recv(&mut done)?;
        ticks.push(clock.stamp().wrapping_sub(t));
        end.post_recv_one(slot)?;
    }
    let per_us = clock.ticks_per_us();
    let rtts: Vec<f64> = ticks.iter().map(|&t| t as f64 / per_us).collect();
    while done < posted {
        for w in end.poll()? {
            if w.wr_id() & SEND_FLAG != 0 {
                done += 1;
            }
        }
    }
    finish(end)?;
    // One-way latency = half the round trip, as ib_send_lat reports it.
    let mut half: Vec<f64> = rtts.iter().map(|r| r / 2.0).collect();
    half.sort_by(f64::total_cmp);
    let avg = half.iter().sum::<f64>() / half.len().max(1) as f64;
    println!(
        "ECHO lat size={size} iters={iters} typical_us={:.2} avg_us={avg:.2} min_us={:.2} max_us={:.2} p99_us={:.2}",
        percentile(&half, 0.5),
        half[0],
        half[half.len() - 1],
        percentile(&half, 0.99),
    );
    Ok(())
}

fn run_bw(o: &Opts, size: usize, iters: u32, signal_every: usize) -> Res<()> {
    let spec = Spec {
        mode: MODE_BW,
        size: size as u32,
        iters,
    };
    let mut end = client_connect(o, spec, o.window)?;
    let n = iters as usize;
    let (mut posted, mut completed) = (0usize, 0usize);
    let t0 = Instant::now();
    while completed < n {
        while posted < n && posted - completed < o.window {
            let last = posted + 1 == n;
            let signaled = last || (posted + 1) % signal_every == 0;
            end.post_send(posted as u64, size, signaled)?;
            posted += 1;
        }
        for w in end.poll()? {
            if w.wr_id() & SEND_FLAG != 0 {
                // A signaled completion covers every send before it.
                completed = completed.max((w.wr_id() & !SEND_FLAG) as usize + 1);
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    finish(end)?;
    let rate = n as f64 / secs;
    println!(
        "ECHO bw size={size} iters={iters} window={} signal_every={signal_every} secs={secs:.4} mpps={:.6} mib_s={:.2}",
        o.window,
        rate / 1e6,
        rate * size as f64 / f64::from(1u32 << 20),
    );
    Ok(())
}

fn run(o: Opts) -> Res<()> {
    let listener = CmListener::bind(SocketAddr::new(o.addr, o.port), 8)?;
    let conns = 2 * o.sizes.len();
    let so = o.clone();
    let srv = thread::spawn(move || server(listener, so, conns));
    for (i, &size) in o.sizes.iter().enumerate() {
        // On an error the server thread may still wait for a connection
        // that never comes (bounded by its timeout): do not join it then.
        run_lat(&o, size, per_size(&o.lat_iters, i))?;
        run_bw(
            &o,
            size,
            per_size(&o.bw_iters, i),
            per_size(&o.signal_every, i),
        )?;
    }
    srv.join().map_err(|_| "server thread panicked")??;
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip() {
        let s = Spec {
            mode: MODE_BW,
            size: 65536,
            iters: 500,
        };
        let d = Spec::decode(&s.encode()).unwrap();
        assert_eq!((d.mode, d.size, d.iters), (MODE_BW, 65536, 500));
        assert!(Spec::decode(b"nope").is_err());
    }

    #[test]
    fn percentile_picks_the_median() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
    }
}
