//! `bench-report`: runs a short version of every benchmark with its own
//! timing loop (median over repeated runs, not criterion), prints the
//! tables and writes `target/bench-report/report.md` and
//! `target/bench-report/pool_size.svg`.
//!
//! ```text
//! cargo run -p rdmaxprt-bench --release --bin bench-report [-- --quick] [--out DIR]
//! ```
//! `--quick` (CI) finishes in well under a minute.

use rdmaxprt_bench::drain;
use rdmaxprt_bench::e2e::E2eResult;
use rdmaxprt_bench::freelist::{self, ListKind};
use rdmaxprt_bench::idle::{self, IdleResult};
use rdmaxprt_bench::keepup::{self, DeviceKind, KeepupResult, KeepupSpec};
use rdmaxprt_bench::plot::{self, Series};
use rdmaxprt_bench::put::{self, PutSpec};
use rdmaxprt_bench::report::Table;
use rdmaxprt_bench::setup::PolicyKind;
use rdmaxprt_bench::summary::{fmt_ns, fmt_rate, fmt_ratio, median, ratio, rel_change, verdict};
use rdmaxprt_bench::timing::{collect_runs, Timed};
use rdmaxprt_bench::{rtc, threaded};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How hard to try.
struct Mode {
    quick: bool,
    /// Repetitions a median is taken over.
    reps: usize,
    /// B1 rounds per repetition.
    put_rounds: usize,
    /// B1 contexts per thread per round.
    put_batch: usize,
    /// B2 contexts released per repetition (at least).
    drain_ctxts: usize,
    /// B3 window per policy.
    keepup_for: Duration,
    /// B6 pairs per thread per repetition.
    pairs: u64,
    /// B4 timed window per run.
    e2e_for: Duration,
    /// B4 runs per configuration (median).
    e2e_reps: usize,
    /// B5 idle edges per variant.
    idle_trials: usize,
}

impl Mode {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                reps: 9,
                put_rounds: 32,
                put_batch: 1024,
                drain_ctxts: 4096,
                keepup_for: Duration::from_millis(300),
                pairs: 200_000,
                e2e_for: Duration::from_millis(150),
                e2e_reps: 3,
                idle_trials: 300,
            }
        } else {
            Self {
                quick,
                reps: 15,
                put_rounds: 128,
                put_batch: 1024,
                drain_ctxts: 16384,
                keepup_for: Duration::from_millis(1500),
                pairs: 1_000_000,
                e2e_for: Duration::from_millis(700),
                e2e_reps: 5,
                idle_trials: 2000,
            }
        }
    }
}

/// Medians over repeated runs.
#[derive(Debug, Clone, Copy)]
struct Med {
    /// Median ns/op.
    ns: f64,
    /// Fastest run.
    lo: f64,
    /// Slowest run.
    hi: f64,
    /// Median thread overlap (multi-threaded runs).
    overlap: Option<f64>,
    /// Runs the figures come from / runs made.
    kept: usize,
    tried: usize,
    /// Whether the kept runs overlapped enough (multi-threaded runs).
    qualified: bool,
}

impl Med {
    fn range(&self) -> String {
        format!("{}..{}", fmt_ns(self.lo), fmt_ns(self.hi))
    }

    /// The overlap cell: median overlap and how many runs were kept.
    fn overlap_cell(&self) -> String {
        match self.overlap {
            None => "-".into(),
            Some(o) => format!(
                "{:.0}% ({}/{}{})",
                o * 100.0,
                self.kept,
                self.tried,
                if self.qualified {
                    ""
                } else {
                    ", none overlapped"
                }
            ),
        }
    }
}

/// Smallest thread overlap for a multi-threaded run to count.
const MIN_OVERLAP: f64 = 0.5;

/// Median ns/op of `reps` qualifying runs of `f` (multi-threaded runs must
/// overlap at least [`MIN_OVERLAP`]; up to `3 * reps` tries), with the min,
/// max and overlap.
fn med(reps: usize, f: impl FnMut() -> Timed) -> Med {
    let runs = collect_runs(reps, 3 * reps, MIN_OVERLAP, f);
    let xs: Vec<f64> = runs.kept.iter().map(Timed::ns_per_op).collect();
    let ovl: Vec<f64> = runs.kept.iter().filter_map(|t| t.overlap).collect();
    Med {
        ns: median(&xs).unwrap_or(f64::NAN),
        lo: xs.iter().copied().fold(f64::INFINITY, f64::min),
        hi: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        overlap: median(&ovl),
        kept: runs.kept.len(),
        tried: runs.tried,
        qualified: runs.qualified,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn us(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        format!("{} us", d.as_secs_f64() * 1e6)
    }
}

const UNMAP_COSTS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_nanos(500),
    Duration::from_micros(2),
];
const THREADS: [usize; 2] = [1, 2];

/// B1 results: `(policy or None for the floor, unmap, threads) -> median ns`.
type PutResults = HashMap<(Option<PolicyKind>, Duration, usize), f64>;
/// B1 floors: `threads -> median`.
type Floors = HashMap<usize, Med>;

fn b1(mode: &Mode) -> (Table, PutResults) {
    let mut res = PutResults::new();
    let mut floors = Floors::new();
    let mut t = Table::new(
        "B1 completion path: time per put",
        &[
            "policy",
            "unmap cost",
            "completion threads",
            "ns/put (median)",
            "min..max",
            "floor: bare ReleaseList::push",
            "ratio to floor",
            "thread overlap (kept/tried): put / floor",
        ],
    );
    let spec = |policy, unmap, threads| PutSpec {
        policy,
        unmap,
        threads,
        batch: mode.put_batch,
    };
    for threads in THREADS {
        let f = med(mode.reps, || {
            put::run(&spec(None, Duration::ZERO, threads), mode.put_rounds)
        });
        res.insert((None, Duration::ZERO, threads), f.ns);
        floors.insert(threads, f);
    }
    for policy in PolicyKind::ALL {
        for unmap in UNMAP_COSTS {
            for threads in THREADS {
                let m = med(mode.reps, || {
                    put::run(&spec(Some(policy), unmap, threads), mode.put_rounds)
                });
                res.insert((Some(policy), unmap, threads), m.ns);
                let floor = floors[&threads];
                t.row(vec![
                    policy.to_string(),
                    us(unmap),
                    threads.to_string(),
                    fmt_ns(m.ns),
                    m.range(),
                    fmt_ns(floor.ns),
                    fmt_ratio(ratio(m.ns, floor.ns)),
                    if threads == 1 {
                        "-".into()
                    } else {
                        format!("{} / {}", m.overlap_cell(), floor.overlap_cell())
                    },
                ]);
            }
        }
    }
    t.note = format!(
        "Only `put` is timed: {} contexts per thread are built and posted before each timed batch, \
         and drained/flushed after it. One page (one unmap) per context. Workqueue: one release \
         thread, running during the timed window. Median of {} runs of {} batches. \
         With 2 threads both push back-to-back onto one list head, so every put pays a \
         cross-core cache-line transfer (the floor shows it too) - if the threads really run \
         side by side. \"Thread overlap\" is the share of the timed time both threads were \
         inside it at once: near 0% means the other core was taken (by another process) and \
         the run is effectively single-threaded. Two-thread figures are medians over runs \
         that overlapped >= 50% only (up to 3x the runs are tried; \"none overlapped\" = the \
         figure is not a contended one).",
        mode.put_batch, mode.reps, mode.put_rounds
    );
    (t, res)
}

fn b1_targets(res: &PutResults) -> Table {
    let mut t = Table::new("B1 targets", &["target", "threads", "measured", "verdict"]);
    for threads in THREADS {
        let floor = res[&(None, Duration::ZERO, threads)];
        let d0 = res[&(Some(PolicyKind::Deferred), Duration::ZERO, threads)];
        let d2 = res[&(
            Some(PolicyKind::Deferred),
            Duration::from_micros(2),
            threads,
        )];
        let r = ratio(d0, floor);
        t.row(vec![
            "Deferred put <= 1.5x bare push (unmap 0)".into(),
            threads.to_string(),
            fmt_ratio(r),
            verdict(r.map(|r| r <= 1.5)).into(),
        ]);
        for unmap in UNMAP_COSTS {
            let d = res[&(Some(PolicyKind::Deferred), unmap, threads)];
            let w = res[&(Some(PolicyKind::Workqueue), unmap, threads)];
            let r = ratio(w, d);
            t.row(vec![
                format!("Workqueue put >= 20x Deferred put (unmap {})", us(unmap)),
                threads.to_string(),
                fmt_ratio(r),
                verdict(r.map(|r| r >= 20.0)).into(),
            ]);
        }
        let c = rel_change(d0, d2);
        t.row(vec![
            "Deferred put changes <= 10% from unmap 0 to 2 us".into(),
            threads.to_string(),
            c.map_or("n/a".into(), |c| format!("{:+.1}%", c * 100.0)),
            verdict(c.map(|c| c.abs() <= 0.10)).into(),
        ]);
    }
    t
}

fn b2(mode: &Mode) -> Table {
    let mut t = Table::new(
        "B2 drain: time per context released (Deferred)",
        &[
            "batch",
            "unmap cost",
            "ns/context (median)",
            "min..max",
            "floor: take_all + unmap wait + free push",
            "ratio to floor",
        ],
    );
    for unmap in [Duration::ZERO, Duration::from_nanos(500)] {
        for batch in [1usize, 8, 64, 512] {
            let rounds = mode.drain_ctxts.div_ceil(batch);
            let m = med(mode.reps, || drain::time_drain(batch, unmap, rounds));
            let f = med(mode.reps, || drain::time_drain_floor(batch, unmap, rounds));
            t.row(vec![
                batch.to_string(),
                us(unmap),
                fmt_ns(m.ns),
                m.range(),
                fmt_ns(f.ns),
                fmt_ratio(ratio(m.ns, f.ns)),
            ]);
        }
    }
    t.note = format!(
        "Timed: one `drain` releasing the batch (unmap, page release, free-list push, stats). \
         Median of {} runs of >= {} contexts.",
        mode.reps, mode.drain_ctxts
    );
    t
}

fn b3(mode: &Mode) -> (Table, Table, Vec<KeepupResult>) {
    const WARMUP: f64 = 0.2;
    let runs = PolicyKind::ALL
        .iter()
        .map(|&p| (p, DeviceKind::Cost))
        .chain([
            (PolicyKind::Deferred, DeviceKind::Mock),
            (PolicyKind::Workqueue, DeviceKind::Mock),
        ]);
    let results: Vec<KeepupResult> = runs
        .map(|(p, device)| {
            let mut spec = KeepupSpec::new(p, mode.keepup_for);
            spec.device = device;
            keepup::run(&spec)
        })
        .collect();
    let mut t = Table::new(
        "B3 keep-up: completion vs release under a full-rate producer",
        &[
            "policy",
            "device",
            "cap",
            "completion rate (floor of release)",
            "release rate",
            "ratio release / completion",
            "until cap: completion vs release (s)",
            "pool after warm-up",
            "pool max (hwm)",
            "growth after warm-up",
            "max lag (completed - released)",
            "waits at cap (get -> AtCap)",
        ],
    );
    for r in &results {
        let max_lag = r
            .samples
            .iter()
            .map(|s| s.completed.saturating_sub(s.released))
            .max()
            .unwrap_or(0);
        t.row(vec![
            r.spec.policy.to_string(),
            r.spec.device.to_string(),
            r.spec.cap().to_string(),
            fmt_rate(r.completion_rate()),
            fmt_rate(r.release_rate()),
            fmt_ratio(ratio(r.release_rate(), r.completion_rate())),
            {
                let u = r.until_cap();
                format!(
                    "{} vs {} ({:.2} s)",
                    fmt_rate(u.completion_rate),
                    fmt_rate(u.release_rate),
                    u.secs
                )
            },
            r.pool_after_warmup(WARMUP).to_string(),
            r.pool_hwm().to_string(),
            r.growth_after_warmup(WARMUP).to_string(),
            max_lag.to_string(),
            r.waits_at_cap.to_string(),
        ]);
    }
    let s = &results[0].spec;
    t.note = format!(
        "Each policy runs {:?}: one producer thread (get -> map 1 page -> post -> NIC FIFO of {} \
         in flight -> put), unmap cost {} per context, sampled every {:?}. Deferred: a worker \
         drains in a loop (and get drains when the free list is empty); cap = sq_depth + credits \
         = {}. Workqueue: {} release thread(s), safety cap {}. Inline: release inside put. \
         The floor of the release rate is the completion rate (ratio 1.00x = keeping up). \
         \"Until cap\": rates from the start to the first sample at the cap (the whole window if \
         the cap is never reached): the lag phase before `get` starts to wait. \
         Device: the cost-model device; the rdmaxprt-mock rows rerun Deferred and Workqueue on \
         `MockDevice` (same unmap busy wait plus its mapping tracker) as a cross-check; the \
         targets below use the cost-model rows. \
         Warm-up = first {:.0}% of the window. Plot: pool_size.svg.",
        mode.keepup_for,
        s.sq_depth,
        us(s.unmap),
        s.sample_every,
        s.sq_depth + s.credits,
        s.wq_threads,
        s.wq_cap,
        WARMUP * 100.0
    );
    let mut tt = Table::new("B3 targets", &["target", "measured", "verdict"]);
    let get = |p| {
        results
            .iter()
            .find(|r| r.spec.policy == p && r.spec.device == DeviceKind::Cost)
            .expect("ran")
    };
    let d = get(PolicyKind::Deferred);
    // Two readings of "flat at/under its cap": bounded (never above the cap,
    // the OOM question) and flat (after warm-up it moves by at most 5 % of
    // the cap; `get` may allocate up to the cap by design when the worker
    // holds the whole release list mid-drain).
    let cap = u64::from(d.spec.cap());
    tt.row(vec![
        "Deferred pool bounded: never above its cap".into(),
        format!("max {} (cap {})", d.pool_hwm(), cap),
        verdict(Some(d.pool_hwm() <= cap)).into(),
    ]);
    tt.row(vec![
        "Deferred pool flat after warm-up (grows <= 5% of the cap)".into(),
        format!(
            "pool {} -> max {} (growth {})",
            d.pool_after_warmup(WARMUP),
            d.pool_hwm(),
            d.growth_after_warmup(WARMUP),
        ),
        verdict(Some(d.growth_after_warmup(WARMUP) * 20 <= cap)).into(),
    ]);
    let last = d.samples.last().copied();
    let keeps_up = last.map(|s| s.completed.saturating_sub(s.released) <= u64::from(d.spec.cap()));
    tt.row(vec![
        "Deferred release rate == completion rate (gap bounded by the cap)".into(),
        format!(
            "{} vs {} ({})",
            fmt_rate(d.release_rate()),
            fmt_rate(d.completion_rate()),
            fmt_ratio(ratio(d.release_rate(), d.completion_rate()))
        ),
        verdict(keeps_up).into(),
    ]);
    let w = get(PolicyKind::Workqueue);
    let wu = w.until_cap();
    let lags = w.pool_hwm() > u64::from(d.spec.cap()) && wu.release_rate < wu.completion_rate;
    tt.row(vec![
        "Workqueue shows the lag (release < completion, pool grows past Deferred's cap)".into(),
        format!(
            "release {} vs completion {} until the cap ({:.2} s), pool max {} (waits at cap {})",
            fmt_rate(wu.release_rate),
            fmt_rate(wu.completion_rate),
            wu.secs,
            w.pool_hwm(),
            w.waits_at_cap
        ),
        verdict(Some(lags)).into(),
    ]);
    (t, tt, results)
}

fn b6(mode: &Mode) -> Table {
    let mut t = Table::new(
        "B6 free-list pop+push pairs",
        &[
            "list",
            "threads",
            "ns/pair (median)",
            "min..max",
            "floor: 2 shared fetch_add",
            "ratio to floor",
            "thread overlap (kept/tried): list / floor",
        ],
    );
    for threads in THREADS {
        let f = med(mode.reps, || {
            freelist::time_pairs(ListKind::Floor, threads, mode.pairs)
        });
        for kind in [ListKind::Locked, ListKind::Tagged] {
            let m = med(mode.reps, || {
                freelist::time_pairs(kind, threads, mode.pairs)
            });
            t.row(vec![
                kind.to_string(),
                threads.to_string(),
                fmt_ns(m.ns),
                m.range(),
                fmt_ns(f.ns),
                fmt_ratio(ratio(m.ns, f.ns)),
                if threads == 1 {
                    "-".into()
                } else {
                    format!("{} / {}", m.overlap_cell(), f.overlap_cell())
                },
            ]);
        }
    }
    t.note = format!(
        "{} pairs per thread per run, {} nodes on the list, median of {} runs; per-pair time \
         as each thread sees it.",
        mode.pairs,
        freelist::NODES,
        mode.reps
    );
    t
}

/// B4 modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum E2eMode {
    /// One thread, Inline delivery.
    Rtc,
    /// The runtime's threads.
    Threaded,
}

impl E2eMode {
    fn name(self) -> &'static str {
        match self {
            Self::Rtc => "(a) run-to-completion",
            Self::Threaded => "(b) threaded",
        }
    }

    /// One run: the transport (`raw` false) or its floor.
    fn run(self, raw: bool, conns: usize, size: usize, dur: Duration) -> E2eResult {
        match (self, raw) {
            (Self::Rtc, false) => rtc::run(conns, size, E2E_WINDOW, dur),
            (Self::Rtc, true) => rtc::run_raw(conns, size, E2E_WINDOW, dur),
            (Self::Threaded, false) => threaded::run(
                conns,
                size,
                E2E_WINDOW,
                dur,
                rdmaxprt::lifecycle::Policy::Deferred,
            ),
            (Self::Threaded, true) => threaded::run_raw(conns, size, E2E_WINDOW, dur),
        }
    }
}

/// Calls in flight per connection.
const E2E_WINDOW: usize = 8;
const E2E_CONNS: [usize; 3] = [1, 16, 64];
const E2E_SIZES: [usize; 2] = [64, 64 << 10];

/// The median run of `reps` (by calls/s), with the median CPU per call.
#[derive(Debug, Clone)]
struct E2eMed {
    /// The run with the median rate (its latencies are reported).
    run: E2eResult,
    rate: f64,
    cpu_ns: f64,
    errors: u64,
}

fn e2e_med(reps: usize, mut f: impl FnMut() -> E2eResult) -> E2eMed {
    let mut runs: Vec<E2eResult> = (0..reps.max(1)).map(|_| f()).collect();
    let cpu: Vec<f64> = runs.iter().map(E2eResult::cpu_ns_per_call).collect();
    let errors = runs.iter().map(|r| r.errors).sum();
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let run = runs.swap_remove(runs.len() / 2);
    E2eMed {
        rate: run.rate(),
        cpu_ns: median(&cpu).unwrap_or(f64::NAN),
        run,
        errors,
    }
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

/// B4 results: `(mode, conns, size) -> (transport, floor)`.
type E2eResults = Vec<((E2eMode, usize, usize), E2eMed, E2eMed)>;

fn b4(mode: &Mode) -> (Table, E2eResults) {
    let mut res = E2eResults::new();
    let mut t = Table::new(
        "B4 end-to-end echo over the mock NIC (Deferred)",
        &[
            "mode",
            "conns",
            "size",
            "calls/s",
            "floor calls/s",
            "ratio transport/raw",
            "p50 / p99 latency",
            "floor p50 / p99",
            "CPU per call (both ends)",
            "floor CPU per call",
            "CPU ratio transport/raw",
            "errors",
        ],
    );
    for m in [E2eMode::Rtc, E2eMode::Threaded] {
        for conns in E2E_CONNS {
            for size in E2E_SIZES {
                eprintln!("B4 {} x{conns} {} ...", m.name(), size_name(size));
                let x = e2e_med(mode.e2e_reps, || m.run(false, conns, size, mode.e2e_for));
                let f = e2e_med(mode.e2e_reps, || m.run(true, conns, size, mode.e2e_for));
                t.row(vec![
                    m.name().into(),
                    conns.to_string(),
                    size_name(size),
                    fmt_rate(x.rate),
                    fmt_rate(f.rate),
                    fmt_ratio(ratio(x.rate, f.rate)),
                    format!("{} / {}", fmt_ns(x.run.lat(0.5)), fmt_ns(x.run.lat(0.99))),
                    format!("{} / {}", fmt_ns(f.run.lat(0.5)), fmt_ns(f.run.lat(0.99))),
                    fmt_ns(x.cpu_ns),
                    fmt_ns(f.cpu_ns),
                    fmt_ratio(ratio(x.cpu_ns, f.cpu_ns)),
                    format!("{} / {}", x.errors, f.errors),
                ]);
                res.push(((m, conns, size), x, f));
            }
        }
    }
    t.note = format!(
        "Echo of the payload each way, {E2E_WINDOW} calls in flight per connection, release \
         policy Deferred, Inline mock delivery (a post executes at once). 64 B: inline both \
         ways. 64 KiB: {}. \
         (a) run-to-completion: one thread drives every client and server transport in a loop \
         (client start_call up to the window; server poll, and if enqueued a worker pass: \
         recvfrom -> dispatch -> sendto -> release_ctxt; client try_wait): the code path's CPU \
         with no thread wakeups. (b) threaded: the real `runtime::Server` ({} workers, one \
         completion poller per connection) and one client thread per connection, as \
         examples/loadgen.rs. Floor: raw mock Send/Recv echo on a QP pair with no transport \
         (client sends from pre-filled buffers, server sends each message back from its \
         receive buffer), same sizes, same window, same mode ((b): a server thread and a \
         client thread per pair). CPU = process user+sys (getrusage, every thread, both ends) \
         over the timed window / calls. calls/s and CPU: median of {} runs of {:?}; latency \
         (start_call to reply) from the median run; in (a) it is the time of a loop turn over \
         every connection, in (b) it includes thread wakeups. Errors: transport / floor, \
         summed over runs. Load average: see the header (the threaded runs add up to 130 \
         threads on 2 cores).",
        rdmaxprt_bench::e2e::Payload::new(64 << 10).path(),
        threaded::WORKERS,
        mode.e2e_reps,
        mode.e2e_for,
    );
    (t, res)
}

fn b5(mode: &Mode) -> (Table, Vec<(String, IdleResult)>) {
    let mut t = Table::new(
        "B5 idle trailing edge: last Send completion to release, no further RPC",
        &[
            "variant",
            "size",
            "trials",
            "released",
            "median",
            "p99",
            "max",
            "wakeups per edge (min..max)",
            "edges with exactly 1",
            "already released when the client had the reply",
        ],
    );
    let mut all = Vec::new();
    for size in E2E_SIZES {
        eprintln!("B5 {} ...", size_name(size));
        let runs = [
            (
                "threaded runtime (wakeups = backstop_enqueues delta)",
                idle::threaded(mode.idle_trials, size, Duration::from_secs(2)),
            ),
            (
                "run-to-completion (wakeups = worker passes)",
                idle::rtc(mode.idle_trials, size, 16),
            ),
        ];
        for (name, r) in runs {
            let ns = r.sorted_ns();
            let q = |q| {
                rdmaxprt_bench::e2e::percentile(&ns, q).map_or("n/a".into(), |v| fmt_ns(v as f64))
            };
            let (lo, hi, one) = r.wakeups();
            t.row(vec![
                name.into(),
                size_name(size),
                r.edges.len().to_string(),
                (r.edges.len() - r.timed_out()).to_string(),
                q(0.5),
                q(0.99),
                q(1.0),
                format!("{lo}..{hi}"),
                one.to_string(),
                r.already().to_string(),
            ]);
            all.push((format!("{name}, {}", size_name(size)), r));
        }
    }
    t.note = "Per trial: one echo call on an otherwise idle connection, then time from the \
              reply's Send completion to the context back on the free list. Threaded (real \
              runtime): the client thread spins (try_wait + yield_now, no blocking wait); with \
              Inline delivery its receive completion is queued in the same step as the server's \
              Send completion, so the moment it sees the reply marks the Send completion to \
              within one spin; the edge ends when the runtime's counters show contexts in use \
              back to the idle baseline. On a busy 2-core box the spinning client competes with \
              the poller and worker it waits for. \"Already released\" = released before the \
              client's first look after the reply (counted as 0 ns): the worker's own \
              release_ctxt after sendto found the completion handled, or the backstop's worker \
              ran first; the backstop still fired once. Run-to-completion: after the reply, \
              loop { poll completions; if enqueued, one worker pass } until the pool census has \
              nothing pending release and in-use is back to the baseline. Released = within 2 s \
              (threaded) or 16 turns (run-to-completion)."
        .into();
    (t, all)
}

fn b45_targets(res: &E2eResults, idle: &[(String, IdleResult)]) -> Table {
    let mut t = Table::new("B4, B5 targets", &["target", "measured", "verdict"]);
    for (m, conns, size) in res.iter().map(|r| r.0) {
        let Some((_, x, f)) = res.iter().find(|r| r.0 == (m, conns, size)) else {
            continue;
        };
        let r = ratio(x.rate, f.rate);
        t.row(vec![
            format!(
                "B4 {} x{conns} {}: calls/s >= 0.5x the raw mock loop",
                m.name(),
                size_name(size)
            ),
            fmt_ratio(r),
            verdict(r.map(|r| r >= 0.5)).into(),
        ]);
    }
    for m in [E2eMode::Rtc, E2eMode::Threaded] {
        for conns in E2E_CONNS {
            if let Some((_, x, _)) = res.iter().find(|r| r.0 == (m, conns, 64)) {
                t.row(vec![
                    format!(
                        "B4 {} x{conns} 64 B: CPU per call (both ends) < 0.5 us",
                        m.name()
                    ),
                    fmt_ns(x.cpu_ns),
                    verdict(x.cpu_ns.is_finite().then_some(x.cpu_ns < 500.0)).into(),
                ]);
            }
        }
    }
    for (name, r) in idle {
        let (lo, hi, _) = r.wakeups();
        let ok = r.timed_out() == 0 && lo == 1 && hi == 1;
        t.row(vec![
            format!("B5 {name}: released within one worker wakeup, no further RPC"),
            format!(
                "{} of {} released, wakeups {lo}..{hi}",
                r.edges.len() - r.timed_out(),
                r.edges.len()
            ),
            verdict(Some(ok)).into(),
        ]);
    }
    t
}

fn out_dir(args: &[String]) -> PathBuf {
    if let Some(i) = args.iter().position(|a| a == "--out") {
        if let Some(d) = args.get(i + 1) {
            return PathBuf::from(d);
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-report")
}

/// `--only-put POLICY:UNMAP_NS:THREADS[:ROUNDS]`: one B1 configuration.
fn only_put(arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let parts: Vec<&str> = arg.split(':').collect();
    let [policy, unmap_ns, threads, rest @ ..] = parts.as_slice() else {
        return Err(format!("bad --only-put spec {arg:?}").into());
    };
    let policy = match *policy {
        "deferred" => Some(PolicyKind::Deferred),
        "workqueue" => Some(PolicyKind::Workqueue),
        "inline" => Some(PolicyKind::Inline),
        "floor" => None,
        p => return Err(format!("unknown policy {p:?}").into()),
    };
    let rounds: usize = rest.first().map_or(Ok(32), |r| r.parse())?;
    let spec = PutSpec {
        policy,
        unmap: Duration::from_nanos(unmap_ns.parse()?),
        threads: threads.parse()?,
        batch: 1024,
    };
    let t = put::run(&spec, rounds);
    println!(
        "{arg}: {} per put over {} puts",
        fmt_ns(t.ns_per_op()),
        t.ops
    );
    Ok(())
}

/// `--only-drain BATCH:UNMAP_NS[:ROUNDS]`: one B2 configuration.
fn only_drain(arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let parts: Vec<&str> = arg.split(':').collect();
    let [batch, unmap_ns, rest @ ..] = parts.as_slice() else {
        return Err(format!("bad --only-drain spec {arg:?}").into());
    };
    let rounds: usize = rest.first().map_or(Ok(64), |r| r.parse())?;
    let t = drain::time_drain(
        batch.parse()?,
        Duration::from_nanos(unmap_ns.parse()?),
        rounds,
    );
    println!(
        "{arg}: {} per context over {} contexts",
        fmt_ns(t.ns_per_op()),
        t.ops
    );
    Ok(())
}

/// `--only-e2e MODE:KIND:CONNS:SIZE[:MS]`: one B4 run (MODE rtc or
/// threaded, KIND transport or raw), no files (for callgrind).
fn only_e2e(arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let parts: Vec<&str> = arg.split(':').collect();
    let [m, kind, conns, size, rest @ ..] = parts.as_slice() else {
        return Err(format!("bad --only-e2e spec {arg:?}").into());
    };
    let m = match *m {
        "rtc" => E2eMode::Rtc,
        "threaded" => E2eMode::Threaded,
        x => return Err(format!("unknown mode {x:?}").into()),
    };
    let raw = match *kind {
        "transport" => false,
        "raw" => true,
        x => return Err(format!("unknown kind {x:?}").into()),
    };
    let ms: u64 = rest.first().map_or(Ok(300), |r| r.parse())?;
    let r = m.run(
        raw,
        conns.parse()?,
        size.parse()?,
        Duration::from_millis(ms),
    );
    println!(
        "{arg}: {} calls, {}, p50 {} p99 {}, CPU {} per call, {} errors (load {})",
        r.calls,
        fmt_rate(r.rate()),
        fmt_ns(r.lat(0.5)),
        fmt_ns(r.lat(0.99)),
        fmt_ns(r.cpu_ns_per_call()),
        r.errors,
        loadavg()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: bench-report [--quick] [--out DIR]");
        println!("       bench-report --only-put POLICY:UNMAP_NS:THREADS[:ROUNDS]");
        println!("         one B1 configuration, no files (for callgrind); POLICY is");
        println!("         deferred, workqueue, inline or floor");
        println!("       bench-report --only-drain BATCH:UNMAP_NS[:ROUNDS]");
        println!("         one B2 configuration (Deferred drain), no files");
        println!("       bench-report --only-e2e MODE:KIND:CONNS:SIZE[:MS]");
        println!("         one B4 run, no files; MODE rtc or threaded, KIND transport or raw");
        println!("       bench-report --only-b45 [--quick]");
        println!("         the B4 and B5 tables only, on stdout");
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--only-drain") {
        let spec = args.get(i + 1).ok_or("--only-drain needs BATCH:UNMAP_NS")?;
        return only_drain(spec);
    }
    if let Some(i) = args.iter().position(|a| a == "--only-e2e") {
        let spec = args
            .get(i + 1)
            .ok_or("--only-e2e needs MODE:KIND:CONNS:SIZE")?;
        return only_e2e(spec);
    }
    if args.iter().any(|a| a == "--only-b45") {
        let mode = Mode::new(args.iter().any(|a| a == "--quick"));
        let started = Instant::now();
        println!(
            "cores {}, load {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg()
        );
        let (t4, r4) = b4(&mode);
        println!("{}", t4.to_markdown());
        let (t5, r5) = b5(&mode);
        println!("{}", t5.to_markdown());
        println!("{}", b45_targets(&r4, &r5).to_markdown());
        println!("{}", rdmaxprt_bench::profile::table().to_markdown());
        println!("{}", rdmaxprt_bench::profile::bulk_table().to_markdown());
        println!(
            "{:.1} s, load {}",
            started.elapsed().as_secs_f64(),
            loadavg()
        );
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--only-put") {
        let spec = args
            .get(i + 1)
            .ok_or("--only-put needs POLICY:UNMAP_NS:THREADS")?;
        return only_put(spec);
    }
    let mode = Mode::new(args.iter().any(|a| a == "--quick"));
    let dir = out_dir(&args);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let load_start = loadavg();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    let mut sections: Vec<Table> = Vec::new();
    let emit = |t: &Table, sections: &mut Vec<Table>| {
        println!("{}", t.to_markdown());
        sections.push(t.clone());
    };
    eprintln!("B1 ...");
    let (t1, res1) = b1(&mode);
    emit(&t1, &mut sections);
    emit(&b1_targets(&res1), &mut sections);
    eprintln!("B2 ...");
    emit(&b2(&mode), &mut sections);
    eprintln!("B3 ...");
    let (t3, t3t, r3) = b3(&mode);
    emit(&t3, &mut sections);
    emit(&t3t, &mut sections);
    let series: Vec<Series> = r3
        .iter()
        .map(|r| Series {
            label: format!(
                "{} on {} (cap {})",
                r.spec.policy,
                r.spec.device,
                r.spec.cap()
            ),
            points: r.pool_series(),
        })
        .collect();
    let svg = dir.join("pool_size.svg");
    plot::pool_size_svg(
        &svg,
        &format!(
            "B3: send-context pool size, unmap {} per context",
            us(r3[0].spec.unmap)
        ),
        &series,
        &[(
            format!("deferred/inline cap {}", r3[0].spec.cap()),
            f64::from(r3[0].spec.cap()),
        )],
    )?;
    eprintln!("B6 ...");
    emit(&b6(&mode), &mut sections);

    let (t4, r4) = b4(&mode);
    emit(&t4, &mut sections);
    let (t5, r5) = b5(&mode);
    emit(&t5, &mut sections);
    emit(&b45_targets(&r4, &r5), &mut sections);
    emit(&rdmaxprt_bench::profile::table(), &mut sections);
    emit(&rdmaxprt_bench::profile::bulk_table(), &mut sections);

    let cmd = format!(
        "cargo run -p rdmaxprt-bench --release --bin bench-report{}",
        if mode.quick { " -- --quick" } else { "" }
    );
    let mut md = String::new();
    md.push_str("# rdmaxprt lifecycle benchmarks\n\n");
    md.push_str(&format!("- command: `{cmd}`\n"));
    md.push_str(&format!(
        "- mode: {}\n",
        if mode.quick { "quick" } else { "full" }
    ));
    md.push_str(&format!("- cores: {cores}\n"));
    md.push_str(&format!(
        "- load average (1/5/15 min): {load_start} at start, {} at end\n",
        loadavg()
    ));
    md.push_str(&format!(
        "- wall time: {:.1} s\n",
        started.elapsed().as_secs_f64()
    ));
    md.push_str(
        "- device: cost-model `CostDevice` (unmap = busy wait; nothing else costs) for B1-B3, B6; \
         the rdmaxprt-mock NIC (Inline delivery) for B4, B5\n",
    );
    md.push_str("- plot: `pool_size.svg` (B3, log scale)\n\n");
    for t in &sections {
        md.push_str(&t.to_markdown());
        md.push('\n');
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md)?;
    eprintln!(
        "wrote {} and {} in {:.1} s (cores {cores}, load {})",
        path.display(),
        svg.display(),
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    Ok(())
}
