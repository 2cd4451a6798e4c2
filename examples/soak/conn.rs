//! One connection of the soak, from connect to teardown: a mock client and
//! a server transport on their own devices (so each teardown can be
//! checked against a tracker no one else uses), the client's calls, their
//! replies checked byte for byte, and the invariants at the end.

use crate::plan::{next_op, OpKind, Plan, Rng};
use crate::totals::Totals;
use crate::worker::{PROC_ECHO, PROC_NULL};
use crate::xprt::{self, SoakXprt, PROG, VERS};
use rdmaxprt::client::{ClientConfig, ClientError, ReplyBytes, ReplyPath, RpcClient, Ticket};
use rdmaxprt::lifecycle::WorkqueuePool;
use rdmaxprt::mock::{FaultCounts, MockDevice, MockQp, QpConfig};
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_core::xprt::XprtFlags;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server transport shared by its lane's driver and poller threads.
pub type SharedXprt = Arc<Box<dyn SoakXprt>>;

/// What went wrong, on which connection.
#[derive(Debug)]
pub struct Failure {
    /// The connection's serial.
    pub serial: u64,
    /// What was seen.
    pub what: String,
}

/// Knobs every connection shares.
#[derive(Debug, Clone, Copy)]
pub struct ConnConfig {
    /// Calls in flight per connection.
    pub inflight: usize,
    /// Client timeout (the dropped calls wait this long).
    pub timeout: Duration,
    /// A call not answered in this long on a live connection is a hang.
    pub hang: Duration,
    /// Pool cap of Workqueue transports (`None`: the transport default).
    pub wq_cap: Option<u32>,
}

struct InFlight {
    ticket: Ticket,
    kind: OpKind,
    expect: Vec<u8>,
    at: Instant,
}

/// One live connection.
pub struct Conn {
    /// Its plan.
    pub plan: Plan,
    /// The server transport (the lane's poller holds a clone).
    pub x: SharedXprt,
    client: RpcClient<MockQp, MockDevice>,
    server_dev: MockDevice,
    client_dev: MockDevice,
    rng: Rng,
    window: VecDeque<InFlight>,
    started: u64,
    /// Calls started that the server drops.
    dropped: u32,
    disconnected: bool,
    /// Since when nothing is in flight and no call can start.
    stalled: Option<Instant>,
    cfg: ConnConfig,
}

impl Conn {
    /// Connects: a QP pair with the plan's faults, the server transport
    /// with the plan's policy, the client.
    pub fn open(plan: Plan, cfg: ConnConfig, wq: &Arc<WorkqueuePool>) -> Result<Self, Failure> {
        let fail = |what: String| Failure {
            serial: plan.serial,
            what,
        };
        let (server_dev, client_dev) = (MockDevice::new(), MockDevice::new());
        let q = QpConfig {
            sq_depth: plan.sq_depth,
            faults: plan.profile.faults(plan.seed),
            ..QpConfig::default()
        };
        let (cq, sq) = MockDevice::connect_pair(&client_dev, &server_dev, q)
            .map_err(|e| fail(format!("connect: {e}")))?;
        let x = xprt::server(
            plan.policy,
            &server_dev,
            sq,
            XprtConfig::default(),
            wq,
            cfg.wq_cap,
        );
        let d = ClientConfig::default();
        let ccfg = ClientConfig {
            timeout: cfg.timeout,
            credits: d.credits.min(plan.sq_depth),
            max_segment_len: plan.max_segment,
            ..d
        };
        let client = RpcClient::new(cq, client_dev.clone(), ccfg)
            .map_err(|e| fail(format!("client: {e}")))?;
        Ok(Self {
            rng: Rng::new(plan.seed, 0x5eed),
            plan,
            x: Arc::new(x),
            client,
            server_dev,
            client_dev,
            window: VecDeque::new(),
            started: 0,
            dropped: 0,
            disconnected: false,
            stalled: None,
            cfg,
        })
    }

    fn fail(&self, what: String) -> Failure {
        Failure {
            serial: self.plan.serial,
            what,
        }
    }

    /// Whether every planned call has been started or the connection
    /// broke, and nothing is in flight (or the plan closes abruptly).
    pub fn finished(&self) -> bool {
        let out = self.started >= self.plan.calls || self.client.is_broken();
        out && (self.window.is_empty() || self.plan.abrupt)
    }

    /// Planned calls never started (the connection broke first).
    pub fn unstarted(&self) -> u64 {
        self.plan.calls.saturating_sub(self.started)
    }

    /// One step: start calls, serve, collect replies. Returns how many
    /// calls it resolved.
    pub fn step(&mut self, totals: &Totals) -> Result<u64, Failure> {
        while self.window.len() < self.cfg.inflight
            && self.started < self.plan.calls
            && !self.client.is_broken()
            && self.client.has_credit()
        {
            // A dropped call keeps its credit for good: drop only while
            // at most half the granted credits are held that way (the
            // grant is 1 until the first reply).
            let may_drop = 2 * (self.dropped + 1) <= self.client.credits();
            let op = next_op(&mut self.rng, may_drop);
            self.dropped += u32::from(op.kind == OpKind::Drop);
            let proc = match op.kind {
                OpKind::Null => PROC_NULL,
                OpKind::Drop => op.proc,
                _ => PROC_ECHO,
            };
            match self
                .client
                .start_call(PROG, VERS, proc, &op.args, &op.options())
            {
                Ok(ticket) => {
                    self.started += 1;
                    self.window.push_back(InFlight {
                        ticket,
                        kind: op.kind,
                        expect: op.expect,
                        at: Instant::now(),
                    });
                }
                Err(_) => {
                    // A failed post (injected on the client's end) or no
                    // credit after all: try again next step.
                    totals.start_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        // A worker takes the transport only when it was enqueued.
        if self.x.take_ready() {
            if self.x.flags().test(XprtFlags::CLOSE) {
                if !self.disconnected {
                    // What the runtime's teardown does to the connection:
                    // the client sees the loss instead of waiting.
                    self.disconnected = true;
                    self.x.qp().disconnect();
                }
            } else {
                self.x.worker_pass();
                if self.x.flags().test(XprtFlags::DATA) {
                    self.x.requeue();
                }
            }
        }
        self.check_stall()?;
        self.collect(totals)
    }

    /// Nothing in flight, calls left to make, and still none can start
    /// (no credit): a connection that can never finish.
    fn check_stall(&mut self) -> Result<(), Failure> {
        let stuck = self.window.is_empty() && !self.finished() && !self.client.is_broken();
        match (stuck, self.stalled) {
            (false, _) => self.stalled = None,
            (true, None) => self.stalled = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() >= self.cfg.hang => {
                return Err(self.fail(format!(
                    "no call in flight and none can start for {:?}\n{}",
                    self.cfg.hang,
                    self.status()
                )))
            }
            (true, Some(_)) => {}
        }
        Ok(())
    }

    fn collect(&mut self, totals: &Totals) -> Result<u64, Failure> {
        let mut resolved = 0;
        let mut i = 0;
        while i < self.window.len() {
            let f = &self.window[i];
            let r = match self.client.try_wait(&f.ticket) {
                Some(r) => r,
                None if f.kind == OpKind::Drop && f.at.elapsed() >= self.cfg.timeout => {
                    let Some(f) = self.window.remove(i) else {
                        break;
                    };
                    match self.client.wait(f.ticket) {
                        Err(ClientError::Timeout { .. }) => {
                            totals.timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(ClientError::Disconnected) => {
                            totals.disconnected.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            return Err(self.fail(format!(
                                "a dropped call did not time out: {:?}",
                                other.map(|b| b.xid)
                            )))
                        }
                    }
                    resolved += 1;
                    continue;
                }
                None if f.at.elapsed() >= self.cfg.hang => {
                    return Err(self.fail(format!(
                        "a {:?} call got no reply in {:?}\n{}",
                        f.kind,
                        self.cfg.hang,
                        self.status()
                    )));
                }
                None => {
                    i += 1;
                    continue;
                }
            };
            let Some(f) = self.window.remove(i) else {
                break;
            };
            resolved += 1;
            self.check_reply(&f, r, totals)?;
        }
        Ok(resolved)
    }

    fn check_reply(
        &self,
        f: &InFlight,
        r: Result<ReplyBytes, ClientError>,
        totals: &Totals,
    ) -> Result<(), Failure> {
        match r {
            Ok(b) => {
                if f.kind == OpKind::Drop {
                    return Err(self.fail("the server answered a dropped call".into()));
                }
                let bulk = matches!(f.kind, OpKind::Write | OpKind::ReadList);
                let got = if bulk {
                    b.bulk.as_deref().unwrap_or_default()
                } else {
                    &b.results[..]
                };
                if got != f.expect {
                    return Err(self.fail(format!(
                        "{:?} reply differs: {} bytes back, {} expected",
                        f.kind,
                        got.len(),
                        f.expect.len()
                    )));
                }
                if f.kind == OpKind::Reply && b.reply_path != ReplyPath::ReplyChunk {
                    return Err(self.fail("a large reply did not use the Reply chunk".into()));
                }
                totals.ok(f.kind, self.plan.policy);
            }
            Err(ClientError::Disconnected) => {
                totals.disconnected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if self.client.is_broken() || self.disconnected => {
                // The connection failed under this call.
                totals.disconnected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%e, "call failed with its connection");
            }
            Err(e) => {
                return Err(self.fail(format!(
                    "{:?} call failed on a live connection: {e}",
                    f.kind
                )))
            }
        }
        Ok(())
    }

    /// The closing half for an abrupt end: close the transport and drop
    /// the connection with calls in flight, then reap what the client
    /// sees.
    pub fn close_abruptly(&mut self, totals: &Totals) -> Result<(), Failure> {
        if self.window.is_empty() {
            return Ok(());
        }
        totals.abrupt_closes.fetch_add(1, Ordering::Relaxed);
        self.x.close();
        self.disconnected = true;
        self.x.qp().disconnect();
        let deadline = Instant::now() + self.cfg.hang;
        while !self.window.is_empty() {
            self.collect(totals)?;
            if Instant::now() > deadline {
                return Err(self.fail(format!(
                    "calls in flight at an abrupt close never failed\n{}",
                    self.status()
                )));
            }
        }
        Ok(())
    }

    /// A one-paragraph state dump (for hang reports).
    pub fn status(&self) -> String {
        let x = &self.x;
        let mut s = String::new();
        let _ = write!(
            s,
            "  conn {} ({:?}, faults {:?}, SQ {}, segments of {} B, {} of {} calls started, {} in flight{}): server flags {:?}, census {:?}, has_wspace {}, recvs posted {}, client in flight {}, broken {}",
            self.plan.serial,
            self.plan.policy,
            self.plan.profile,
            self.plan.sq_depth,
            self.plan.max_segment,
            self.started,
            self.plan.calls,
            self.window.len(),
            if self.plan.abrupt { ", abrupt close" } else { "" },
            x.flags(),
            x.census(),
            x.has_wspace(),
            x.recvs_posted(),
            self.client.in_flight(),
            self.client.is_broken(),
        );
        s
    }

    /// The faults both ends injected so far.
    pub fn faults(&self) -> FaultCounts {
        let mut n = self.x.qp().fault_counts();
        n.add(&self.client.qp().fault_counts());
        n
    }

    /// Teardown, once the lane's poller has let go of the transport: the
    /// quiescence checks on a transport still open, `free`, and the
    /// trackers of both devices.
    pub fn teardown(self, totals: &Totals) -> Result<(), Failure> {
        let serial = self.plan.serial;
        let fail = |what: String| Failure { serial, what };
        let faults = self.faults();
        let Conn {
            x,
            client,
            server_dev,
            client_dev,
            ..
        } = self;
        let x =
            Arc::try_unwrap(x).map_err(|_| fail("the poller still holds the transport".into()))?;
        if !x.flags().test(XprtFlags::CLOSE) {
            quiesce(x.as_ref()).map_err(fail)?;
        } else {
            totals.closed_by_faults.fetch_add(1, Ordering::Relaxed);
        }
        let partial = x.counters().partial_posts.load(Ordering::Relaxed) as usize;
        let sq_waits = x.sq_waits();
        let td = x.free();
        if td.stuck_recvs != 0 || td.reclaimed_send != partial || td.send_stats.in_use != 0 {
            return Err(fail(format!(
                "teardown: {td:?}, {partial} partial posts (reclaimed must equal them, stuck receives 0, every context back on the free list)"
            )));
        }
        client.close();
        server_dev
            .tracker()
            .check()
            .map_err(|e| fail(format!("server device after free: {e}")))?;
        client_dev
            .tracker()
            .check()
            .map_err(|e| fail(format!("client device after close: {e}")))?;
        totals.retired(&faults, &td, partial, sq_waits);
        Ok(())
    }
}

/// A transport still open, all calls answered: handle every completion,
/// drain the release list, and check completions == releases with every
/// context back on the free list.
fn quiesce(x: &dyn SoakXprt) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        x.poll();
        x.release_ctxt();
        let c = x.census();
        if c.posted + c.owned + c.pending_release == 0 && c.free == c.allocated {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("not quiescent after 10 s: census {c:?}"));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    let s = x.stats();
    let n = x.counters();
    let sent = n.replies.load(Ordering::Relaxed) + n.error_replies.load(Ordering::Relaxed);
    if s.completions != s.drained || s.completions != sent || s.in_use != 0 {
        return Err(format!(
            "at quiescence: {} completions, {} released, {sent} replies posted, {} in use",
            s.completions, s.drained, s.in_use
        ));
    }
    Ok(())
}
