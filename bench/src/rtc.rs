//! B4 (a) run-to-completion: one thread drives N client/server pairs on
//! mock QPs with `Delivery::Inline` (a post executes at once), so what is
//! measured is the code path's CPU, no thread wakeups. Per pair and loop
//! turn: the client starts calls up to its window; the server polls its
//! completions and, if its hook was enqueued, runs a worker pass (recvfrom
//! -> dispatch -> sendto -> release_ctxt until no call, then release_ctxt
//! once more); the client polls and collects replies in order.
//!
//! The floor ([`RawPair`]) is the same loop with no transport: raw Send/Recv
//! on a mock QP pair, the server sending each received message straight
//! back from its receive buffer.
//!
//! The client passes the payload one of two ways ([`ClientPath`]): copied
//! (`start_call` with the payload's bytes, `try_wait` returning the reply
//! copied out) or lent (`lend` + `start_lent`, `try_wait_lent`: the
//! arguments written in place in a registered buffer, the reply read in
//! place; after the warm-up only an 8-byte stamp is written and checked,
//! as the floor sends pre-filled buffers and checks lengths).

use crate::copies::{self, Phase};
use crate::e2e::{elapsed_ns, process_cpu, E2eResult, EchoService, Payload, PROG, VERS};
use rdmaxprt::client::{ClientConfig, LentReply, RpcClient, Ticket};
use rdmaxprt::mock::{MockBuf, MockDevice, MockError, MockMr, MockQp, QpConfig};
use rdmaxprt::service::{Dispatcher, ReplyBody};
use rdmaxprt_core::backend::{
    DmaBuf, DmaDevice, QueuePair, RecvWr, SendWr, Sge, Wc, WcOpcode, WcStatus, WrOp,
};
use rdmaxprt_core::lifecycle::Deferred;
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{SvcRdmaXprt, XprtConfig};
use rdmaxprt_core::wait::CondvarWait;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The runtime stand-in: an enqueue marks the transport for a worker pass
/// on the next loop turn and is counted.
#[derive(Debug, Default)]
pub struct Hook {
    flags: XprtFlags,
    scheduled: AtomicBool,
    enqueues: AtomicU64,
}

impl Hook {
    /// Takes the "enqueued" mark: whether a worker pass is due.
    pub fn take(&self) -> bool {
        self.scheduled.swap(false, Ordering::Relaxed)
    }

    /// Enqueues so far.
    pub fn enqueues(&self) -> u64 {
        self.enqueues.load(Ordering::Relaxed)
    }
}

impl Enqueue for Hook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::Relaxed);
        self.scheduled.store(true, Ordering::Relaxed);
    }
}

/// The server transport (Deferred release) driven by hand.
pub type RtcServer = SvcRdmaXprt<Deferred<MockDevice, Arc<Hook>>, MockQp, Arc<Hook>, CondvarWait>;
/// The client.
pub type RtcClient = RpcClient<MockQp, MockDevice>;

/// One connection: client, server transport, its hook, calls in flight.
pub struct RtcConn {
    /// The client end.
    pub client: RtcClient,
    /// The server transport.
    pub server: RtcServer,
    /// The server's enqueue hook.
    pub hook: Arc<Hook>,
    /// Calls in flight: ticket, start, stamp (lent path).
    window: VecDeque<(Ticket, Instant, u64)>,
    /// The next stamp.
    seq: u64,
}

/// How the B4 client passes the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPath {
    /// `start_call` / `try_wait`: the client copies the arguments into
    /// its registered chunk region and the Write chunk out of it.
    Copy,
    /// `lend` / `start_lent` / `try_wait_lent`: both in place.
    Lend,
}

impl RtcConn {
    /// A connected pair with Inline delivery: the server maps on
    /// `server_dev` (shared, like one NIC), the client on a device of its
    /// own; the client asks for `window` credits.
    pub fn new(server_dev: &MockDevice, window: usize) -> Self {
        let cdev = MockDevice::new();
        let (cq, sq) =
            MockDevice::connect_pair(&cdev, server_dev, QpConfig::default()).expect("mock QP pair");
        let hook = Arc::new(Hook::default());
        let cfg = XprtConfig::default();
        let caps = sq.caps();
        let pool = PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge);
        let life = Deferred::new(server_dev.clone(), pool, Arc::clone(&hook));
        let server = SvcRdmaXprt::new(cfg, sq, life, Arc::clone(&hook)).expect("server transport");
        let ccfg = ClientConfig {
            credits: window.max(1) as u32,
            ..ClientConfig::default()
        };
        let client = RpcClient::new(cq, cdev, ccfg).expect("client");
        Self {
            client,
            server,
            hook,
            window: VecDeque::new(),
            seq: 0,
        }
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }

    /// Tears down in the kernel's order (server transport freed after its
    /// QP drain, then the client). Returns contexts teardown had to
    /// reclaim (0 unless something was lost).
    pub fn finish(self) -> usize {
        let td = self.server.free();
        drop(self.client);
        td.reclaimed_send
    }
}

/// One worker pass, as the runtime's worker does it: recvfrom -> dispatch
/// -> sendto -> release_ctxt until recvfrom has nothing, then release_ctxt.
/// Returns the calls served.
pub fn worker_pass(x: &RtcServer, d: &Dispatcher) -> usize {
    let mut n = 0;
    // As the runtime's pass: the thread's last reply body is reused.
    let mut body = REPLY_BODY.with(Cell::take);
    while let Ok(Some(call)) = x.recvfrom() {
        if let Some(reply) = d.dispatch_reusing(call.msg(), std::mem::take(&mut body)) {
            let parts: [&[u8]; 2] = [&reply.header, &reply.body.results];
            if let Err(e) = x.sendto(&call, &parts, reply.bulk(call.msg())) {
                if e.is_fatal() {
                    x.close();
                }
            }
            body = reply.recycle();
        }
        x.release_ctxt();
        n += 1;
    }
    REPLY_BODY.with(|b| b.set(body));
    x.release_ctxt();
    n
}

thread_local! {
    /// The driving thread's reply body, recycled across passes (the
    /// runtime keeps one per worker or group thread).
    static REPLY_BODY: Cell<ReplyBody> = Cell::new(ReplyBody::default());
}

/// The server half of one loop turn, until quiet: poll completions, then
/// a worker pass if the transport was enqueued; again while either did
/// something (a call with a Read chunk surfaces only after its Read
/// completion is polled). Returns the worker passes run.
pub fn server_turn(x: &RtcServer, hook: &Hook, d: &Dispatcher) -> usize {
    let mut passes = 0;
    loop {
        let polled = x.poll(usize::MAX).unwrap_or(0);
        let pass = hook.take();
        if pass {
            worker_pass(x, d);
            passes += 1;
        }
        if polled == 0 && !pass {
            return passes;
        }
    }
}

/// N connections driven by one thread.
pub struct Rtc {
    conns: Vec<RtcConn>,
    dispatcher: Dispatcher,
    payload: Payload,
    window: usize,
    server_dev: MockDevice,
    path: ClientPath,
    /// Lent path: write the whole payload into each lent buffer (the
    /// warm-up), not just the stamp.
    fill: bool,
}

impl Rtc {
    /// `conns` connections, `window` calls in flight each, `size`-byte
    /// echoes, the payload copied by the client.
    pub fn new(conns: usize, size: usize, window: usize) -> Self {
        Self::with_path(conns, size, window, ClientPath::Copy)
    }

    /// As [`new`](Self::new), the client passing the payload `path`'s way.
    pub fn with_path(conns: usize, size: usize, window: usize, path: ClientPath) -> Self {
        let server_dev = MockDevice::new();
        Self {
            path,
            fill: true,
            conns: (0..conns)
                .map(|_| RtcConn::new(&server_dev, window))
                .collect(),
            dispatcher: Dispatcher::new().with(EchoService::default()),
            payload: Payload::new(size),
            window: window.max(1),
            server_dev,
        }
    }

    /// One loop turn over every connection. `start`: whether to start new
    /// calls. Latencies of completed calls go to `lat` (if given); returns
    /// `(completed, errors)`.
    pub fn turn(&mut self, start: bool, mut lat: Option<&mut Vec<u64>>) -> (u64, u64) {
        let (mut done, mut errors) = (0, 0);
        let p = &self.payload;
        for c in &mut self.conns {
            copies::enter(Phase::Client);
            while start && c.window.len() < self.window && c.client.has_credit() {
                let stamp = c.seq;
                let started = match self.path {
                    ClientPath::Copy => c
                        .client
                        .start_call(PROG, VERS, p.proc, &p.args, &p.opts())
                        .map_err(drop),
                    ClientPath::Lend => start_lent(&mut c.client, p, stamp, self.fill),
                };
                match started {
                    Ok(t) => {
                        c.seq = c.seq.wrapping_add(1);
                        c.window.push_back((t, Instant::now(), stamp));
                    }
                    Err(()) => {
                        errors += 1;
                        break;
                    }
                }
            }
            copies::enter(Phase::Server);
            server_turn(&c.server, &c.hook, &self.dispatcher);
            copies::enter(Phase::Client);
            while let Some((t, at, stamp)) = c.window.front() {
                let ok = match self.path {
                    ClientPath::Copy => match c.client.try_wait(t) {
                        None => break,
                        Some(r) => r.is_ok_and(|b| {
                            let ok = p.check(&b);
                            // Its buffers carry later replies, as the
                            // floor's receive buffers are reposted.
                            c.client.recycle(b);
                            ok
                        }),
                    },
                    ClientPath::Lend => match c.client.try_wait_lent(t) {
                        None => break,
                        // Dropped at once: its regions go back to the pool.
                        Some(r) => r.is_ok_and(|r| check_lent(p, &r, *stamp)),
                    },
                };
                if ok {
                    done += 1;
                    if let Some(l) = lat.as_deref_mut() {
                        l.push(elapsed_ns(*at));
                    }
                } else {
                    errors += 1;
                }
                c.window.pop_front();
            }
        }
        copies::enter(Phase::Off);
        (done, errors)
    }

    /// Lent path: from now on write only the stamp into lent buffers (the
    /// pooled regions hold the payload from the warm-up: each one was
    /// filled or written by an echo of it).
    pub fn stop_filling(&mut self) {
        self.fill = false;
    }

    /// Runs for `dur` (timed), then completes the calls in flight
    /// (untimed).
    pub fn run_for(&mut self, dur: Duration) -> E2eResult {
        let r = timed_loop(dur, |lat| self.turn(true, Some(lat)));
        self.quiesce();
        r
    }

    /// Completes exactly `calls` calls (at least; whole turns) and returns
    /// the time it took (for criterion).
    pub fn run_calls(&mut self, calls: u64) -> (Duration, u64) {
        let t0 = Instant::now();
        let mut n = 0;
        while n < calls {
            n += self.turn(true, None).0;
        }
        let d = t0.elapsed();
        self.quiesce();
        (d, n)
    }

    /// Lets every call in flight complete, without starting new ones.
    pub fn quiesce(&mut self) {
        for _ in 0..100_000 {
            if self.conns.iter().all(|c| c.in_flight() == 0) {
                break;
            }
            self.turn(false, None);
        }
        for c in &self.conns {
            // Trailing releases: the last Send completions.
            server_turn(&c.server, &c.hook, &self.dispatcher);
        }
    }

    /// The connections.
    pub fn conns(&self) -> &[RtcConn] {
        &self.conns
    }

    /// Tears everything down; returns an error message if teardown found
    /// reclaimed contexts or the device tracker is not clean.
    pub fn finish(self) -> Result<(), String> {
        let reclaimed: usize = self.conns.into_iter().map(RtcConn::finish).sum();
        if reclaimed != 0 {
            return Err(format!("{reclaimed} send contexts reclaimed at teardown"));
        }
        self.server_dev.tracker().check()
    }
}

/// Runs `turn` (one loop turn over every connection: `(completed,
/// errors)`, latencies pushed to its argument) for `dur`; the wall and
/// process CPU time of exactly that window.
pub fn timed_loop(dur: Duration, mut turn: impl FnMut(&mut Vec<u64>) -> (u64, u64)) -> E2eResult {
    let mut lat = Vec::with_capacity(1 << 16);
    let (mut calls, mut errors) = (0, 0);
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let (wall, allocs) = crate::alloc_count::count(|| {
        let mut turns = 0u32;
        loop {
            let (d, e) = turn(&mut lat);
            calls += d;
            errors += e;
            turns = turns.wrapping_add(1);
            if turns % 16 == 0 && t0.elapsed() >= dur {
                break;
            }
        }
        t0.elapsed()
    });
    let cpu = process_cpu().saturating_sub(cpu0);
    // The latency Vec may have grown inside the window (amortized, a few
    // allocations per run): counted, not subtracted.
    let mut r = E2eResult::new(calls, errors, wall, cpu, lat);
    r.allocs = allocs;
    r
}

/// Starts one lent call of payload `p` stamped `stamp` (its first 8
/// bytes, or fewer for a shorter payload); `fill`: write the whole payload
/// first.
fn start_lent(c: &mut RtcClient, p: &Payload, stamp: u64, fill: bool) -> Result<Ticket, ()> {
    let mut a = c.lend(p.size.max(1)).map_err(drop)?;
    if fill {
        a.copy_from_slice(&p.args);
    }
    let s = stamp.to_le_bytes();
    let n = s.len().min(a.len());
    a[..n].copy_from_slice(&s[..n]);
    c.start_lent(PROG, VERS, p.proc, a, &p.opts()).map_err(drop)
}

/// Whether a lent reply echoes a payload of `p`'s size stamped `stamp`.
fn check_lent(p: &Payload, r: &LentReply<MockMr>, stamp: u64) -> bool {
    let got = if p.write_chunk.is_some() {
        r.bulk().unwrap_or_default()
    } else {
        r.results()
    };
    let s = stamp.to_le_bytes();
    let n = s.len().min(p.size);
    got.len() == p.size && got[..n] == s[..n]
}

/// B4 (a), transport: `conns` pairs x `window` calls, `size`-byte echo,
/// timed for `dur`.
pub fn run(conns: usize, size: usize, window: usize, dur: Duration) -> E2eResult {
    run_path(conns, size, window, dur, ClientPath::Copy)
}

/// [`run`] with the client passing the payload `path`'s way.
pub fn run_path(
    conns: usize,
    size: usize,
    window: usize,
    dur: Duration,
    path: ClientPath,
) -> E2eResult {
    let mut r = Rtc::with_path(conns, size, window, path);
    // Warm-up: pools, receive rings, allocator.
    r.run_calls((conns * window * 4) as u64);
    r.stop_filling();
    let res = r.run_for(dur);
    if let Err(e) = r.finish() {
        eprintln!("B4 run-to-completion teardown: {e}");
    }
    res
}

/// A completion slot to poll into.
pub(crate) const NO_WC: Wc = Wc {
    wr_id: u64::MAX,
    status: WcStatus::Other(0),
    opcode: WcOpcode::Unknown,
    byte_len: 0,
    invalidated_rkey: None,
};

/// A mapped buffer.
struct Mapped {
    buf: MockBuf,
    sge: Sge,
}

impl Mapped {
    fn new(dev: &MockDevice, size: usize, fill: u8) -> Result<Self, MockError> {
        let mut buf = dev.alloc_buf(size.max(1))?;
        buf.as_mut_slice().fill(fill);
        let sge = dev.dma_map(&buf, 0, size.max(1))?;
        Ok(Self { buf, sge })
    }

    fn many(dev: &MockDevice, n: usize, size: usize, fill: u8) -> Vec<Self> {
        (0..n)
            .map(|_| Self::new(dev, size, fill).expect("mock buffer"))
            .collect()
    }
}

/// Drains `qp` (flushes everything it has posted), reaps the completions
/// and unmaps `bufs`: after the drain the NIC cannot touch them.
fn teardown(qp: &MockQp, dev: &MockDevice, bufs: &mut Vec<Mapped>) {
    let _ = qp.drain_qp();
    let mut wcs = [NO_WC; 16];
    while qp.poll_recv(&mut wcs).unwrap_or(0) > 0 {}
    while qp.poll_send(&mut wcs).unwrap_or(0) > 0 {}
    for m in bufs.drain(..) {
        let _ = dev.dma_unmap(m.sge);
        drop(m.buf);
    }
}

/// Posts receive `i` of `bufs` on `qp`.
fn post_recv(qp: &MockQp, bufs: &[Mapped], i: usize) {
    // SAFETY: the buffer stays mapped and owned by its end until that end
    // is dropped, which drains the QP first; the host never touches a
    // posted receive buffer (the server sends from it, read-only for the
    // NIC, and reposts it only after that Send completed).
    let _ = unsafe {
        qp.post_recv(&[RecvWr {
            wr_id: i as u64,
            sge: bufs[i].sge,
        }])
    };
}

/// The client end of the floor: sends from `window` pre-filled buffers,
/// at most `window` messages in flight, and counts the echoes.
pub struct RawClient {
    dev: MockDevice,
    /// The QP.
    pub qp: MockQp,
    size: usize,
    send: Vec<Mapped>,
    recv: Vec<Mapped>,
    window: VecDeque<Instant>,
    max_window: usize,
    sends_out: usize,
    next: usize,
}

/// The server end of the floor: sends each received message straight back
/// from the receive buffer it landed in, and reposts that buffer once the
/// echo's Send completed.
pub struct RawServer {
    dev: MockDevice,
    /// The QP.
    pub qp: MockQp,
    recv: Vec<Mapped>,
}

/// Both ends of one floor connection.
pub struct RawPair {
    /// Client end.
    pub client: RawClient,
    /// Server end.
    pub server: RawServer,
}

impl RawPair {
    /// A connected pair on `qcfg`, `size`-byte messages, `window` in flight;
    /// the server maps on `server_dev`, the client on a device of its own.
    pub fn new(server_dev: &MockDevice, size: usize, window: usize, qcfg: QpConfig) -> Self {
        let window = window.max(1);
        let cdev = MockDevice::new();
        let (c, s) = MockDevice::connect_pair(&cdev, server_dev, qcfg).expect("mock QP pair");
        let client = RawClient {
            send: Mapped::many(&cdev, window, size, 0x5a),
            recv: Mapped::many(&cdev, window, size, 0),
            dev: cdev,
            qp: c,
            size,
            window: VecDeque::new(),
            max_window: window,
            sends_out: 0,
            next: 0,
        };
        let server = RawServer {
            recv: Mapped::many(server_dev, window, size, 0),
            dev: server_dev.clone(),
            qp: s,
        };
        for i in 0..window {
            post_recv(&client.qp, &client.recv, i);
            post_recv(&server.qp, &server.recv, i);
        }
        Self { client, server }
    }
}

impl RawClient {
    /// Starts messages up to the window.
    pub fn start(&mut self) {
        while self.window.len() < self.max_window && self.sends_out < self.max_window {
            let i = self.next % self.max_window;
            self.next = self.next.wrapping_add(1);
            let sges = [self.send[i].sge];
            let wr = SendWr {
                wr_id: i as u64,
                op: WrOp::Send,
                sges: &sges,
                signaled: true,
            };
            // SAFETY: buffer `i` is mapped until `Drop` (after a QP drain)
            // and never written after setup; at most `max_window` Sends are
            // outstanding, so it is not reused before its completion.
            if unsafe { self.qp.post_send(&[wr]) }.is_err() {
                return;
            }
            self.sends_out += 1;
            self.window.push_back(Instant::now());
        }
    }

    /// Reaps Send completions and echoes. Returns `(echoes, errors,
    /// completions handled)`.
    pub fn poll(&mut self, mut lat: Option<&mut Vec<u64>>) -> (u64, u64, usize) {
        let mut wcs = [NO_WC; 16];
        let (mut done, mut errors, mut handled) = (0, 0, 0);
        loop {
            let n = self.qp.poll_send(&mut wcs).unwrap_or(0);
            self.sends_out -= n.min(self.sends_out);
            let m = self.qp.poll_recv(&mut wcs).unwrap_or(0);
            for wc in &wcs[..m] {
                if wc.status != WcStatus::Success {
                    errors += 1;
                    continue;
                }
                let at = self.window.pop_front();
                if wc.byte_len as usize == self.size.max(1) {
                    done += 1;
                    if let (Some(l), Some(at)) = (lat.as_deref_mut(), at) {
                        l.push(elapsed_ns(at));
                    }
                } else {
                    errors += 1;
                }
                post_recv(&self.qp, &self.recv, wc.wr_id as usize);
            }
            handled += n + m;
            if n + m == 0 {
                return (done, errors, handled);
            }
        }
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }
}

impl RawServer {
    /// Echoes every received message; reposts receives whose echo
    /// completed. Returns how many completions were handled.
    pub fn turn(&self) -> usize {
        let mut wcs = [NO_WC; 16];
        let mut handled = 0;
        loop {
            let n = self.qp.poll_recv(&mut wcs).unwrap_or(0);
            for wc in &wcs[..n] {
                if wc.status != WcStatus::Success {
                    continue;
                }
                let i = wc.wr_id as usize;
                let sges = [Sge {
                    length: wc.byte_len,
                    ..self.recv[i].sge
                }];
                let wr = SendWr {
                    wr_id: i as u64,
                    op: WrOp::Send,
                    sges: &sges,
                    signaled: true,
                };
                // SAFETY: receive buffer `i` completed and is not reposted
                // until this Send's completion is polled below.
                let _ = unsafe { self.qp.post_send(&[wr]) };
            }
            let m = self.qp.poll_send(&mut wcs).unwrap_or(0);
            for wc in &wcs[..m] {
                if wc.status == WcStatus::Success {
                    post_recv(&self.qp, &self.recv, wc.wr_id as usize);
                }
            }
            handled += n + m;
            if n + m == 0 {
                return handled;
            }
        }
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        let mut bufs: Vec<Mapped> = self.send.drain(..).chain(self.recv.drain(..)).collect();
        teardown(&self.qp, &self.dev, &mut bufs);
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        teardown(&self.qp, &self.dev, &mut self.recv);
    }
}

/// One loop turn of the floor over `pairs`: clients start messages (if
/// `start`), servers echo, clients reap. Returns `(echoes, errors)`.
pub fn raw_turn(pairs: &mut [RawPair], start: bool, mut lat: Option<&mut Vec<u64>>) -> (u64, u64) {
    let (mut d, mut e) = (0, 0);
    for p in pairs.iter_mut() {
        copies::enter(Phase::Client);
        if start {
            p.client.start();
        }
        copies::enter(Phase::Server);
        p.server.turn();
        copies::enter(Phase::Client);
        let (dd, ee, _) = p.client.poll(lat.as_deref_mut());
        d += dd;
        e += ee;
    }
    copies::enter(Phase::Off);
    (d, e)
}

/// B4 (a), floor: `conns` raw pairs, one thread, timed for `dur`.
pub fn run_raw(conns: usize, size: usize, window: usize, dur: Duration) -> E2eResult {
    let sdev = MockDevice::new();
    let mut pairs: Vec<RawPair> = (0..conns)
        .map(|_| RawPair::new(&sdev, size, window, QpConfig::default()))
        .collect();
    let turn = |pairs: &mut [RawPair], start: bool, lat: Option<&mut Vec<u64>>| {
        raw_turn(pairs, start, lat)
    };
    // Warm-up.
    let mut warm = 0;
    while warm < (conns * window * 4) as u64 {
        warm += turn(&mut pairs, true, None).0;
    }
    let r = timed_loop(dur, |lat| turn(&mut pairs, true, Some(lat)));
    for _ in 0..10_000 {
        if pairs.iter().all(|p| p.client.in_flight() == 0) {
            break;
        }
        turn(&mut pairs, false, None);
    }
    drop(pairs);
    if let Err(e) = sdev.tracker().check() {
        eprintln!("B4 raw floor teardown: {e}");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdmaxprt_core::lifecycle::SendCtxtLifecycle;

    #[test]
    fn transport_echo_small_and_large_complete_without_errors() {
        for size in [64, 64 << 10] {
            let mut r = Rtc::new(2, size, 4);
            let (_, n) = r.run_calls(50);
            assert!(n >= 50);
            let res = r.run_for(Duration::from_millis(20));
            assert!(res.calls > 0, "size {size}: no calls");
            assert_eq!(res.errors, 0, "size {size}");
            assert_eq!(res.lat_ns.len() as u64, res.calls);
            // Every context released once the trailing edge was drained.
            for c in r.conns() {
                let census = c.server.send_lifecycle().pool().census();
                assert_eq!(census.pending_release, 0, "{census:?}");
                assert_eq!(census.posted + census.owned, 0, "{census:?}");
            }
            r.finish().expect("clean teardown");
        }
    }

    #[test]
    fn lent_echo_checks_the_stamp_and_completes_without_errors() {
        for size in [64, 64 << 10] {
            let res = run_path(2, size, 4, Duration::from_millis(20), ClientPath::Lend);
            assert!(res.calls > 0, "size {size}: no calls");
            assert_eq!(res.errors, 0, "size {size}");
        }
        // A reply whose stamp is not its call's fails the check.
        let mut r = Rtc::with_path(1, 64 << 10, 1, ClientPath::Lend);
        r.run_calls(4);
        let p = Payload::new(64 << 10);
        let c = &mut r.conns[0];
        let t = start_lent(&mut c.client, &p, 41, false).unwrap();
        server_turn(&c.server, &c.hook, &r.dispatcher);
        let reply = c.client.wait_lent(t).unwrap();
        assert!(check_lent(&p, &reply, 41));
        assert!(!check_lent(&p, &reply, 42));
        drop(reply);
        r.finish().expect("clean teardown");
    }

    #[test]
    fn raw_floor_echoes() {
        for size in [64, 64 << 10] {
            let res = run_raw(2, size, 4, Duration::from_millis(20));
            assert!(res.calls > 0);
            assert_eq!(res.errors, 0, "size {size}");
        }
    }
}
