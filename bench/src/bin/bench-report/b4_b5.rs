//! B4 (end-to-end echo), B5 (idle trailing edge) and their targets.

use super::*;

/// B4 modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum E2eMode {
    /// One thread, Inline delivery.
    Rtc,
    /// The runtime's threads.
    Threaded,
}

impl E2eMode {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Rtc => "(a) run-to-completion",
            Self::Threaded => "(b) threaded",
        }
    }

    /// One run: the transport (`raw` false) or its floor.
    pub(super) fn run(self, raw: bool, conns: usize, size: usize, dur: Duration) -> E2eResult {
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
pub(super) const E2E_WINDOW: usize = 8;
pub(super) const E2E_CONNS: [usize; 3] = [1, 16, 64];
pub(super) const E2E_SIZES: [usize; 2] = [64, 64 << 10];

/// The median run of `reps` (by calls/s), with the median CPU per call.
#[derive(Debug, Clone)]
pub(super) struct E2eMed {
    /// The run with the median rate (its latencies are reported).
    run: E2eResult,
    rate: f64,
    cpu_ns: f64,
    /// Median heap allocations per call (run-to-completion only).
    allocs: Option<f64>,
    errors: u64,
}

pub(super) fn e2e_med(reps: usize, mut f: impl FnMut() -> E2eResult) -> E2eMed {
    let mut runs: Vec<E2eResult> = (0..reps.max(1)).map(|_| f()).collect();
    let cpu: Vec<f64> = runs.iter().map(E2eResult::cpu_ns_per_call).collect();
    let allocs: Vec<f64> = runs.iter().filter_map(E2eResult::allocs_per_call).collect();
    let errors = runs.iter().map(|r| r.errors).sum();
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let run = runs.swap_remove(runs.len() / 2);
    E2eMed {
        rate: run.rate(),
        cpu_ns: median(&cpu).unwrap_or(f64::NAN),
        allocs: median(&allocs),
        run,
        errors,
    }
}

pub(super) fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

/// B4 results: `(mode, conns, size) -> (transport, floor)`.
pub(super) type E2eResults = Vec<((E2eMode, usize, usize), E2eMed, E2eMed)>;

pub(super) fn b4(mode: &Mode) -> (Table, E2eResults) {
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
            "allocations per call (transport / floor)",
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
                    match (x.allocs, f.allocs) {
                        (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                        _ => "n/a".into(),
                    },
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
         with no thread wakeups. (b) threaded: the real `runtime::Server` ({} workers, {} shared \
         completion poller thread(s), the ServerConfig defaults) and one client thread per \
         connection, as \
         examples/loadgen.rs. Floor: raw mock Send/Recv echo on a QP pair with no transport \
         (client sends from pre-filled buffers, server sends each message back from its \
         receive buffer), same sizes, same window, same mode ((b): a server thread and a \
         client thread per pair). CPU = process user+sys (getrusage, every thread, both ends) \
         over the timed window / calls. calls/s and CPU: median of {} runs of {:?}; latency \
         (start_call to reply) from the median run; in (a) it is the time of a loop turn over \
         every connection, in (b) it includes thread wakeups. Errors: transport / floor, \
         summed over runs. Allocations per call ((a) only): heap \
         alloc/alloc_zeroed/realloc calls in the timed window / calls (bench-report's counting \
         global allocator), median of the runs. Load average: see the header (the threaded runs add up to {} \
         threads on 2 cores).",
        rdmaxprt_bench::e2e::Payload::new(64 << 10).path(),
        threaded::WORKERS,
        rdmaxprt::runtime::ServerConfig::default().pollers,
        mode.e2e_reps,
        mode.e2e_for,
        // 64 client threads, the workers, the pollers, the accept thread.
        E2E_CONNS[E2E_CONNS.len() - 1]
            + threaded::WORKERS
            + rdmaxprt::runtime::ServerConfig::default().pollers
            + 1,
    );
    (t, res)
}

pub(super) fn b5(mode: &Mode) -> (Table, Vec<(String, IdleResult)>) {
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
            "already released when the client had the reply (left out of the next two)",
            "worker passes per trailing edge (min..max)",
            "trailing edges with exactly 1",
            "backstop enqueues per trial (min..max)",
        ],
    );
    let mut all = Vec::new();
    for size in E2E_SIZES {
        eprintln!("B5 {} ...", size_name(size));
        let runs = [
            (
                "threaded runtime (wakeups = runtime worker passes)",
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
            let (blo, bhi) = r.backstops();
            t.row(vec![
                name.into(),
                size_name(size),
                r.edges.len().to_string(),
                (r.edges.len() - r.timed_out()).to_string(),
                q(0.5),
                q(0.99),
                q(1.0),
                r.already().to_string(),
                format!("{lo}..{hi}"),
                one.to_string(),
                format!("{blo}..{bhi}"),
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
              ran first; these say nothing about the trailing edge and are left out of the \
              wakeup columns and the verdict. Worker passes (threaded) = the runtime's \
              `worker_passes` (counted as a pass starts) started between the client's first look \
              after the reply and the release (a pass that started just before that look counts \
              0); backstop enqueues are shown apart (one per empty -> non-empty push by \
              construction, so they prove nothing by themselves). Run-to-completion: after the reply, \
              loop { poll completions; if enqueued, one worker pass } until the pool census has \
              nothing pending release and in-use is back to the baseline. Released = within 2 s \
              (threaded) or 16 turns (run-to-completion)."
        .into();
    (t, all)
}

pub(super) fn b45_targets(res: &E2eResults, idle: &[(String, IdleResult)]) -> Table {
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
    for conns in E2E_CONNS {
        if let Some((_, x, f)) = res.iter().find(|r| r.0 == (E2eMode::Rtc, conns, 64)) {
            // Both medians come from runs alternating in one invocation.
            let r = ratio(x.cpu_ns, f.cpu_ns);
            t.row(vec![
                format!(
                    "B4 {} x{conns} 64 B: CPU per call (both ends) <= 1.5x the raw mock loop's",
                    E2eMode::Rtc.name()
                ),
                format!(
                    "{} vs {}: {}",
                    fmt_ns(x.cpu_ns),
                    fmt_ns(f.cpu_ns),
                    fmt_ratio(r)
                ),
                verdict(r.map(|r| r <= 1.5)).into(),
            ]);
        }
    }
    for (name, r) in idle {
        let (lo, hi, _) = r.wakeups();
        let trailing = r.edges.len() - r.already();
        // Threaded: a backstop pass that started just before the client's
        // look counts 0, so the rule there is "at most one".
        let threaded = name.starts_with("threaded");
        let ok =
            r.timed_out() == 0 && trailing > 0 && hi == 1 && (lo == 1 || (threaded && lo == 0));
        t.row(vec![
            format!(
                "B5 {name}: released within one worker wakeup, no further RPC (rule: every edge \
                 released; every trailing edge, not already released, took exactly 1 worker \
                 pass after the reply (threaded: at most 1, and 1 for some); at least one \
                 trailing edge)"
            ),
            format!(
                "{} of {} released, {} trailing, passes {lo}..{hi}",
                r.edges.len() - r.timed_out(),
                r.edges.len(),
                trailing
            ),
            verdict(Some(ok)).into(),
        ]);
    }
    t
}
