//! Runs the send-context lifecycle on the mock NIC under load, once per
//! release policy, and prints the counters side by side.
//!
//! A worker thread builds replies (get a context, map a reply page, post a
//! Send) and drains between "requests"; a completion thread polls the Send
//! CQ and `put`s each context; a client thread keeps receives posted. The
//! mock charges a busy-wait per DMA unmap, standing in for a strict IOMMU.
//!
//! `cargo run --release --example lifecycle -- --secs 1 --unmap-ns 1000`

use clap::Parser;
use rdmaxprt::backend::{DmaDevice, QueuePair, RecvWr, SendWr, Wc, WcOpcode, WcStatus, WrOp};
use rdmaxprt::lifecycle::{
    Deferred, GetError, Inline, SendCtxtLifecycle, Workqueue, WorkqueuePool,
};
use rdmaxprt::mock::{Delivery, DeviceConfig, MockDevice, MockQp, QpConfig};
use rdmaxprt::pool::PoolConfig;
use rdmaxprt::sq::SqAccount;
use rdmaxprt::stats::StatsSnapshot;
use rdmaxprt::wait::{CondvarWait, WaitQueue};
use rdmaxprt::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "send-context lifecycle under load on the mock NIC, per release policy")]
struct Args {
    /// Seconds per policy.
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Busy-wait per DMA unmap, in nanoseconds (strict IOMMU stand-in).
    #[arg(long, default_value_t = 1000)]
    unmap_ns: u64,
    /// Send Queue depth.
    #[arg(long, default_value_t = 128)]
    sq_depth: u32,
    /// Reply bytes per Send.
    #[arg(long, default_value_t = 256)]
    reply_bytes: usize,
}

/// The backstop's enqueue, counted (the worker drains every iteration).
#[derive(Default)]
struct Hook {
    flags: XprtFlags,
    enqueues: AtomicU64,
}

impl Enqueue for Hook {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        self.enqueues.fetch_add(1, Ordering::Relaxed);
    }
}

struct Run {
    stats: StatsSnapshot,
    replies: u64,
    secs: f64,
    clean: bool,
}

fn wc0() -> Wc {
    Wc {
        wr_id: 0,
        status: WcStatus::Success,
        opcode: WcOpcode::Unknown,
        byte_len: 0,
        invalidated_rkey: None,
    }
}

/// Keeps receives posted on the client end and counts arrivals.
fn client(qp: &MockQp, dev: &MockDevice, stop: &AtomicBool) {
    let bufs: Vec<_> = (0..256)
        .map(|_| dev.alloc_buf(4096).expect("alloc"))
        .collect();
    let sges: Vec<_> = bufs
        .iter()
        .map(|b| dev.dma_map(b, 0, 4096).expect("map"))
        .collect();
    let wrs: Vec<RecvWr> = sges
        .iter()
        .enumerate()
        .map(|(i, s)| RecvWr {
            wr_id: i as u64,
            sge: *s,
        })
        .collect();
    // SAFETY: the buffers live until after the QP is drained below.
    unsafe { qp.post_recv(&wrs) }.expect("post_recv");
    let mut wcs = [wc0(); 32];
    while !stop.load(Ordering::Relaxed) {
        let n = qp.poll_recv(&mut wcs).unwrap_or(0);
        for wc in &wcs[..n] {
            if wc.status == WcStatus::Success {
                let i = wc.wr_id as usize;
                // SAFETY: as above.
                let _ = unsafe {
                    qp.post_recv(&[RecvWr {
                        wr_id: wc.wr_id,
                        sge: sges[i],
                    }])
                };
            }
        }
        if n == 0 {
            qp.wait_for_completions(Duration::from_millis(1));
        }
    }
    let _ = qp.drain_qp();
    while qp.poll_recv(&mut wcs).unwrap_or(0) > 0 {}
    for s in sges {
        let _ = dev.dma_unmap(s);
    }
}

fn run<L: SendCtxtLifecycle<Dev = MockDevice> + 'static>(
    life: Arc<L>,
    qp: MockQp,
    peer: MockQp,
    args: &Args,
) -> Run {
    let dev = life.pool().device().clone();
    let sq = Arc::new(SqAccount::<CondvarWait>::new(args.sq_depth));
    let stop = Arc::new(AtomicBool::new(false));
    let qp = Arc::new(qp);
    let replies = Arc::new(AtomicU64::new(0));
    let client_t = {
        let (stop, dev) = (stop.clone(), dev.clone());
        std::thread::spawn(move || client(&peer, &dev, &stop))
    };
    let completer = {
        let (life, qp, sq, stop) = (life.clone(), qp.clone(), sq.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut wcs = [wc0(); 32];
            loop {
                let n = qp.poll_send(&mut wcs).unwrap_or(0);
                for wc in &wcs[..n] {
                    if let Ok(sqes) = life.put(wc.wr_id) {
                        sq.release(sqes);
                    }
                }
                if n == 0 {
                    if stop.load(Ordering::Relaxed) && qp.sq_outstanding() == 0 {
                        return;
                    }
                    qp.wait_for_completions(Duration::from_millis(1));
                }
            }
        })
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.secs);
    let payload = vec![0xabu8; args.reply_bytes];
    while Instant::now() < deadline {
        let mut c = match life.get() {
            Ok(c) => c,
            Err(GetError::AtCap) => {
                sq.space_wait()
                    .wait_until(&|| life.pool().has_free() || life.pool().has_pending_release());
                continue;
            }
            Err(e) => panic!("get: {e}"),
        };
        let mut page = dev.alloc_buf(payload.len()).expect("alloc");
        rdmaxprt::backend::DmaBuf::as_mut_slice(&mut page).copy_from_slice(&payload);
        let p = c.add_page(page);
        c.map_page(&dev, p, 0, payload.len()).expect("map");
        c.set_header_len(28).expect("header");
        c.set_sqecount(1);
        if sq.reserve(1).is_err() {
            break;
        }
        let posted = c.post(|wr_id, ctxt| {
            let wr = SendWr {
                wr_id,
                op: WrOp::Send,
                sges: ctxt.sges(),
                signaled: true,
            };
            // SAFETY: the context owns every SGE's memory until its
            // completion is put and drained.
            unsafe { qp.post_send(&[wr]) }
        });
        if posted.is_err() {
            sq.release(1);
        } else {
            replies.fetch_add(1, Ordering::Relaxed);
        }
        life.drain(); // xpo_release_ctxt, between requests
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    completer.join().expect("completer");
    life.flush();
    client_t.join().expect("client");
    let _ = qp.drain_qp();
    let mut wcs = [wc0(); 32];
    while qp.poll_send(&mut wcs).unwrap_or(0) > 0 {}
    let stats = life.stats().snapshot();
    let c = life.pool().census();
    assert_eq!(
        c.free, c.allocated,
        "every context back on the free list: {c:?}"
    );
    drop(life);
    let clean = dev.tracker().check().is_ok();
    Run {
        stats,
        replies: replies.load(Ordering::Relaxed),
        secs,
        clean,
    }
}

fn main() {
    let args = Args::parse();
    let unmap = Duration::from_nanos(args.unmap_ns);
    let qcfg = QpConfig {
        sq_depth: args.sq_depth,
        rq_depth: 256,
        delivery: Delivery::Inline,
        ..QpConfig::default()
    };
    let pcfg = PoolConfig {
        xprt_id: 1,
        ..PoolConfig::for_transport(args.sq_depth, 64, 16)
    };
    let mut rows = Vec::new();
    for policy in ["deferred", "workqueue", "inline"] {
        let dev = MockDevice::with_config(DeviceConfig {
            map_cost: Duration::ZERO,
            unmap_cost: unmap,
        });
        let (srv, cli) = MockDevice::connect_pair(&dev, &dev, qcfg).expect("pair");
        let r = match policy {
            "deferred" => run(
                Arc::new(Deferred::<_, _>::new(dev.clone(), pcfg, Hook::default())),
                srv,
                cli,
                &args,
            ),
            "workqueue" => {
                let wq = WorkqueuePool::new(1);
                let cfg = PoolConfig {
                    cap: 1 << 16,
                    ..pcfg
                };
                run(
                    Arc::new(Workqueue::<_>::new(dev.clone(), cfg, wq)),
                    srv,
                    cli,
                    &args,
                )
            }
            _ => run(
                Arc::new(Inline::<_>::new(dev.clone(), pcfg)),
                srv,
                cli,
                &args,
            ),
        };
        rows.push((policy, r));
    }
    println!("send-context lifecycle on the mock NIC: {:.1}s per policy, unmap cost {} ns, SQ depth {}, {} B replies", args.secs, args.unmap_ns, args.sq_depth, args.reply_bytes);
    println!("| policy | replies/s | completions | drains | ctx/drain (min/mean/max) | pool size | in-use hwm | allocations | waits at cap | cap hits | backstop enqueues | unmaps | tracker |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (p, r) in rows {
        let s = r.stats;
        println!(
            "| {p} | {:.0} | {} | {} | {}/{:.1}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.replies as f64 / r.secs,
            s.completions,
            s.drains,
            s.batch_min,
            s.batch_mean(),
            s.batch_max,
            s.pool_size,
            s.in_use_hwm,
            s.allocations,
            s.waits_at_cap,
            s.cap_hits,
            s.backstop_enqueues,
            s.unmaps,
            if r.clean { "clean" } else { "LEAKS/VIOLATIONS" }
        );
    }
}
