//! Shared harness of the `transport_*` tests (each includes this file with
//! `#[path]`): a server transport on one end of a mock QP pair, driven by
//! hand (no runtime): a counting enqueue hook, a tiny echo service and the
//! worker pass (poll, recvfrom, sendto, release_ctxt), optionally on a
//! thread of its own.
#![allow(dead_code)]

#[path = "support/worker.rs"]
pub mod worker;
use rdmaxprt::client::{ClientConfig, RpcClient};
use rdmaxprt::mock::{MockBuf, MockDevice, MockError, MockQp, QpConfig};
use rdmaxprt_core::backend::{
    DmaBuf, DmaDevice, QueuePair, RecvWr, SendWr, Sge, Wc, WcOpcode, WcStatus, WrOp,
};
use rdmaxprt_core::lifecycle::Deferred;
use rdmaxprt_core::oncrpc;
use rdmaxprt_core::pool::PoolConfig;
use rdmaxprt_core::transport::{RecvdCall, SvcRdmaXprt, TeardownReport, XprtConfig, XprtError};
use rdmaxprt_core::wait::CondvarWait;
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The echo program.
pub const PROG: u32 = 0x2000_0042;
/// Its version.
pub const VERS: u32 = 1;
// Not every suite uses both.
#[allow(unused_imports)]
pub use worker::{PROC_ECHO, PROC_NULL};

/// The enqueue hook: counts every `svc_xprt_enqueue`.
#[derive(Debug, Default)]
pub struct Hook {
    /// The transport's flags.
    pub flags: XprtFlags,
    /// Enqueues so far.
    pub enqueues: AtomicUsize,
}

impl Hook {
    /// Enqueues so far.
    pub fn enqueues(&self) -> usize {
        self.enqueues.load(Ordering::SeqCst)
    }
}

impl Enqueue for Hook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::SeqCst);
    }
}

/// The server transport under test.
pub type Server = SvcRdmaXprt<Deferred<MockDevice, Arc<Hook>>, MockQp, Arc<Hook>, CondvarWait>;

/// The mock client.
pub type Client = RpcClient<MockQp, MockDevice>;

/// A server transport on `qp` with a Deferred lifecycle mapping on `dev`.
pub fn server(dev: &MockDevice, qp: MockQp, cfg: XprtConfig) -> (Server, Arc<Hook>) {
    let hook = Arc::new(Hook::default());
    let caps = qp.caps();
    let pool = PoolConfig::for_transport(caps.sq_depth, cfg.credits, caps.max_send_sge);
    let life = Deferred::new(dev.clone(), pool, Arc::clone(&hook));
    let x = SvcRdmaXprt::new(cfg, qp, life, Arc::clone(&hook)).expect("server transport");
    (x, hook)
}

/// A connected client and server on `dev`.
pub fn pair(
    dev: &MockDevice,
    qcfg: QpConfig,
    xcfg: XprtConfig,
    ccfg: ClientConfig,
) -> (Client, Server, Arc<Hook>) {
    let (cq, sq) = MockDevice::connect_pair(dev, dev, qcfg).expect("qp pair");
    let (x, hook) = server(dev, sq, xcfg);
    let c = RpcClient::new(cq, dev.clone(), ccfg).expect("client");
    (c, x, hook)
}

/// A connected client and server with every default (Inline delivery).
pub fn default_pair(dev: &MockDevice) -> (Client, Server, Arc<Hook>) {
    pair(
        dev,
        QpConfig::default(),
        XprtConfig::default(),
        ClientConfig::default(),
    )
}

/// The echo service (see `support/worker.rs`), for program [`PROG`].
pub fn echo(x: &Server, call: &RecvdCall<'_>) -> Result<(), XprtError<MockError>> {
    worker::echo_call(x, call, PROG)
}

/// Worker passes until nothing moves (see `support/worker.rs`).
pub fn serve(x: &Server) -> usize {
    worker::serve_for(x, PROG)
}

/// Exactly one worker pass (see `support/worker.rs`).
pub fn worker_pass(x: &Server) -> usize {
    worker::worker_pass_for(x, PROG)
}

/// Servers running on threads until stopped, the way the runtime runs
/// them: a completion poller thread (the completion handlers) and a worker
/// thread (worker passes), so a worker waiting for SQ space is woken by
/// completions the poller handles. A transport found closing is
/// disconnected (what the runtime's teardown does to the connection), so
/// its client sees the loss instead of waiting for replies forever.
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    xs: Arc<Vec<Server>>,
    poller: JoinHandle<()>,
    worker: JoinHandle<()>,
}

impl ServerThread {
    /// Starts serving every transport of `xs`.
    pub fn spawn(xs: Vec<Server>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let xs = Arc::new(xs);
        let (s, v) = (Arc::clone(&stop), Arc::clone(&xs));
        let poller = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let n: usize = v.iter().map(|x| x.poll(usize::MAX).unwrap_or(0)).sum();
                if n == 0 {
                    match v.first() {
                        Some(x) if v.len() == 1 => {
                            x.qp().wait_for_completions(Duration::from_millis(2));
                        }
                        _ => std::thread::sleep(Duration::from_micros(100)),
                    }
                }
            }
        });
        let (s, v) = (Arc::clone(&stop), Arc::clone(&xs));
        let worker = std::thread::spawn(move || {
            let mut disconnected = vec![false; v.len()];
            while !s.load(Ordering::SeqCst) {
                let mut n = 0;
                for (i, x) in v.iter().enumerate() {
                    if x.flags().test(XprtFlags::CLOSE) {
                        if !disconnected[i] {
                            disconnected[i] = true;
                            x.qp().disconnect();
                        }
                        continue;
                    }
                    n += worker_pass(x);
                }
                if n == 0 {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        });
        Self {
            stop,
            xs,
            poller,
            worker,
        }
    }

    /// The transports being served.
    pub fn servers(&self) -> &[Server] {
        &self.xs
    }

    /// Stops both threads and gives the transports back (for `free`).
    pub fn stop(self) -> Vec<Server> {
        self.stop.store(true, Ordering::SeqCst);
        self.poller.join().expect("poller thread panicked");
        self.worker.join().expect("worker thread panicked");
        match Arc::try_unwrap(self.xs) {
            Ok(xs) => xs,
            Err(_) => panic!("harness invariant: both threads are joined"),
        }
    }
}

/// A client that sends raw bytes (any transport header at all) from its
/// own QP and collects whatever comes back: for malformed input.
pub struct RawClient {
    /// The client's end of the pair.
    pub qp: MockQp,
    dev: MockDevice,
    recvs: Vec<(MockBuf, Sge)>,
}

impl RawClient {
    /// Posts `n` receive buffers of `size` bytes on `qp`.
    pub fn new(dev: &MockDevice, qp: MockQp, n: usize, size: usize) -> Self {
        let mut c = Self {
            qp,
            dev: dev.clone(),
            recvs: Vec::new(),
        };
        for i in 0..n {
            let buf = dev.alloc_buf(size).unwrap();
            let sge = dev.dma_map(&buf, 0, size).unwrap();
            c.recvs.push((buf, sge));
            c.post_recv(i);
        }
        c
    }

    fn post_recv(&self, i: usize) {
        let wr = RecvWr {
            wr_id: i as u64,
            sge: self.recvs[i].1,
        };
        // SAFETY: the buffer stays mapped and owned by `self.recvs`, read
        // only after its completion is polled in `recv`, unmapped only in
        // `Drop` after the QP is drained.
        unsafe { self.qp.post_recv(&[wr]) }.unwrap();
    }

    /// Sends `bytes` in one Send and waits for its completion.
    pub fn send(&self, bytes: &[u8]) {
        let mut buf = self.dev.alloc_buf(bytes.len()).unwrap();
        buf.as_mut_slice().copy_from_slice(bytes);
        let sge = self.dev.dma_map(&buf, 0, bytes.len()).unwrap();
        let sges = [sge];
        let wr = SendWr {
            wr_id: 7,
            op: WrOp::Send,
            sges: &sges,
            signaled: true,
        };
        // SAFETY: `buf` stays alive and mapped until the completion is
        // polled just below (Inline delivery runs the Send during the post).
        unsafe { self.qp.post_send(&[wr]) }.unwrap();
        let mut wc = [NO_WC; 1];
        assert_eq!(self.qp.poll_send(&mut wc).unwrap(), 1, "Inline delivery");
        self.dev.dma_unmap(sge).unwrap();
        drop(buf);
    }

    /// Every message received since the last call (receives reposted;
    /// flushed receives are skipped: the connection is gone).
    pub fn recv(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut wcs = [NO_WC; 16];
        loop {
            let n = self.qp.poll_recv(&mut wcs).unwrap();
            if n == 0 {
                return out;
            }
            for wc in wcs[..n].iter().filter(|w| w.status == WcStatus::Success) {
                let i = wc.wr_id as usize;
                out.push(self.recvs[i].0.as_slice()[..wc.byte_len as usize].to_vec());
                self.post_recv(i);
            }
        }
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        let _ = self.qp.drain_qp();
        let mut wcs = [NO_WC; 16];
        while self.qp.poll_recv(&mut wcs).unwrap_or(0) > 0 {}
        while self.qp.poll_send(&mut wcs).unwrap_or(0) > 0 {}
        for (buf, sge) in self.recvs.drain(..) {
            let _ = self.dev.dma_unmap(sge);
            drop(buf);
        }
    }
}

/// A completion slot to poll into.
pub const NO_WC: Wc = Wc {
    wr_id: u64::MAX,
    status: WcStatus::Other(0),
    opcode: WcOpcode::Unknown,
    byte_len: 0,
    invalidated_rkey: None,
};

/// XDR words, big-endian.
pub fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// An RPC call message (AUTH_NONE) of the echo procedure with `args`.
pub fn rpc_call(xid: u32, args: &[u8]) -> Vec<u8> {
    let spec = oncrpc::CallSpec {
        xid,
        prog: PROG,
        vers: VERS,
        proc: PROC_ECHO,
        cred: None,
    };
    let mut m = vec![0; spec.encoded_len()];
    oncrpc::encode_call(&mut m, &spec).unwrap();
    m.extend_from_slice(args);
    m
}

/// Frees the server transport and drops the client, then checks the
/// teardown found nothing stuck and the tracker is clean (no leak, no
/// violation). Returns the server's report.
pub fn finish(dev: MockDevice, c: Client, x: Server) -> TeardownReport {
    let report = x.free();
    assert_eq!(report.reclaimed_send, 0, "{report:?}");
    assert_eq!(report.stuck_recvs, 0, "{report:?}");
    assert_eq!(report.bufs_held, 0, "{report:?}");
    drop(c);
    dev.assert_clean();
    report
}

/// Deterministic bytes of length `n` (different for different `seed`s).
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7) as u8 ^ (i >> 8) as u8)
        .collect()
}

/// A server counter.
pub fn counter(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
