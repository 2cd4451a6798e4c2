//! B4 (end-to-end echo), B5 (idle trailing edge) and their targets.

use super::*;

/// B4 modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum E2eMode {
    /// One thread, Inline delivery.
    Rtc,
    /// The runtime's thread pool.
    Threaded,
    /// The runtime's poll groups.
    PollGroup,
}

/// The raw floors of the threaded modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Floor {
    /// A server thread per connection.
    PerPair,
    /// This many server threads, the connections shared out.
    Grouped(usize),
}

impl E2eMode {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Rtc => "(a) run-to-completion",
            Self::Threaded => "(b) threaded",
            Self::PollGroup => "(c) poll groups",
        }
    }

    /// One run of the transport, with the server's wakeups (threaded
    /// modes).
    pub(super) fn run(self, conns: usize, size: usize, dur: Duration) -> Run {
        let policy = rdmaxprt::lifecycle::Policy::Deferred;
        let mode = match self {
            Self::Rtc => return (rtc::run(conns, size, E2E_WINDOW, dur), None),
            Self::Threaded => rdmaxprt::runtime::ServerMode::ThreadPool,
            Self::PollGroup => rdmaxprt::runtime::ServerMode::PollGroup,
        };
        let (r, w) = threaded::run_mode(conns, size, E2E_WINDOW, dur, policy, mode);
        (r, Some(w))
    }

    /// The server threads of this mode's floor: as many as the mode's
    /// server runs calls on ((b): its workers and completion pollers; (c):
    /// its groups).
    pub(super) fn floor(self) -> Floor {
        match self {
            Self::Rtc => Floor::PerPair,
            Self::Threaded => Floor::Grouped(
                threaded::WORKERS + rdmaxprt::runtime::ServerConfig::default().pollers,
            ),
            Self::PollGroup => Floor::Grouped(threaded::groups()),
        }
    }

    /// One run of this mode's floor: (a) its own single-thread raw loop;
    /// the threaded modes `floor`.
    pub(super) fn run_floor(self, floor: Floor, conns: usize, size: usize, dur: Duration) -> Run {
        let r = match (self, floor) {
            (Self::Rtc, _) => rtc::run_raw(conns, size, E2E_WINDOW, dur),
            (_, Floor::PerPair) => threaded::run_raw(conns, size, E2E_WINDOW, dur),
            (_, Floor::Grouped(n)) => threaded::run_raw_grouped(conns, size, E2E_WINDOW, dur, n),
        };
        (r, None)
    }
}

/// A run and, for the threaded modes, the server's wakeups in it.
pub(super) type Run = (E2eResult, Option<threaded::Wakeups>);

/// Calls in flight per connection.
pub(super) const E2E_WINDOW: usize = 8;
pub(super) const E2E_CONNS: [usize; 3] = [1, 16, 64];
pub(super) const E2E_SIZES: [usize; 2] = [64, 64 << 10];

/// The median run of `reps` (by calls/s), with the median CPU per call
/// and the median server wakeups and passes per call.
#[derive(Debug, Clone)]
pub(super) struct E2eMed {
    /// The run with the median rate (its latencies are reported).
    run: E2eResult,
    rate: f64,
    cpu_ns: f64,
    /// Median heap allocations per call (run-to-completion only).
    allocs: Option<f64>,
    errors: u64,
    /// Server thread wakeups per call (threaded modes).
    wakeups: Option<f64>,
    /// Passes per call (threaded modes).
    passes: Option<f64>,
    /// Calls handed to a worker, summed over runs (threaded modes).
    handoffs: u64,
}

pub(super) fn e2e_med(reps: usize, mut f: impl FnMut() -> Run) -> E2eMed {
    let all: Vec<Run> = (0..reps.max(1)).map(|_| f()).collect();
    let cpu: Vec<f64> = all.iter().map(|r| r.0.cpu_ns_per_call()).collect();
    let allocs: Vec<f64> = all.iter().filter_map(|r| r.0.allocs_per_call()).collect();
    let errors = all.iter().map(|r| r.0.errors).sum();
    let w: Vec<threaded::Wakeups> = all.iter().filter_map(|r| r.1).collect();
    let per = |f: fn(&threaded::Wakeups) -> f64| {
        (!w.is_empty()).then(|| median(&w.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN))
    };
    let wakeups = per(threaded::Wakeups::per_call);
    let passes = per(threaded::Wakeups::passes_per_call);
    let handoffs = w.iter().map(|w| w.handoffs).sum();
    let mut runs: Vec<E2eResult> = all.into_iter().map(|r| r.0).collect();
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let run = runs.swap_remove(runs.len() / 2);
    E2eMed {
        rate: run.rate(),
        cpu_ns: median(&cpu).unwrap_or(f64::NAN),
        allocs: median(&allocs),
        run,
        errors,
        wakeups,
        passes,
        handoffs,
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

/// A threaded floor at `(conns, size)`, measured once per run of the
/// report (the per-pair one is shared by (b) and (c)).
fn floor_med(
    cache: &mut HashMap<(Floor, usize, usize), E2eMed>,
    mode: &Mode,
    floor: Floor,
    conns: usize,
    size: usize,
) -> E2eMed {
    cache
        .entry((floor, conns, size))
        .or_insert_with(|| {
            e2e_med(mode.e2e_reps, || {
                E2eMode::Threaded.run_floor(floor, conns, size, mode.e2e_for)
            })
        })
        .clone()
}

pub(super) fn b4(mode: &Mode) -> (Table, E2eResults) {
    let mut res = E2eResults::new();
    let mut floors = HashMap::new();
    let mut t = Table::new(
        "B4 end-to-end echo over the mock NIC (Deferred)",
        &[
            "mode",
            "conns",
            "size",
            "calls/s",
            "floor calls/s",
            "ratio transport/raw",
            "floor server threads",
            "floor with a server thread per connection: calls/s (ratio)",
            "server wakeups per call",
            "passes per call",
            "handoffs",
            "p50 / p99 latency",
            "floor p50 / p99",
            "CPU per call (both ends)",
            "floor CPU per call",
            "CPU ratio transport/raw",
            "allocations per call (transport / floor)",
            "errors",
        ],
    );
    for m in [E2eMode::Rtc, E2eMode::Threaded, E2eMode::PollGroup] {
        for conns in E2E_CONNS {
            for size in E2E_SIZES {
                eprintln!("B4 {} x{conns} {} ...", m.name(), size_name(size));
                let x = e2e_med(mode.e2e_reps, || m.run(conns, size, mode.e2e_for));
                let (f, threads, per_pair) = match m.floor() {
                    Floor::PerPair => (
                        e2e_med(mode.e2e_reps, || {
                            m.run_floor(Floor::PerPair, conns, size, mode.e2e_for)
                        }),
                        "1 (both ends)".to_string(),
                        "-".to_string(),
                    ),
                    g @ Floor::Grouped(n) => {
                        let f = floor_med(&mut floors, mode, g, conns, size);
                        let p = floor_med(&mut floors, mode, Floor::PerPair, conns, size);
                        let pp = format!(
                            "{} ({})",
                            fmt_rate(p.rate),
                            fmt_ratio(ratio(x.rate, p.rate))
                        );
                        (f, n.min(conns).to_string(), pp)
                    }
                };
                let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
                t.row(vec![
                    m.name().into(),
                    conns.to_string(),
                    size_name(size),
                    fmt_rate(x.rate),
                    fmt_rate(f.rate),
                    fmt_ratio(ratio(x.rate, f.rate)),
                    threads,
                    per_pair,
                    opt(x.wakeups),
                    opt(x.passes),
                    if m == E2eMode::Rtc {
                        "-".into()
                    } else {
                        x.handoffs.to_string()
                    },
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
         with no thread wakeups. (b) threaded: the real `runtime::Server` in \
         `ServerMode::ThreadPool` ({} workers, {} shared completion poller thread(s), the \
         ServerConfig defaults). (c) poll groups: the real `runtime::Server` in \
         `ServerMode::PollGroup` ({} group threads, one per CPU; each polls, receives, \
         dispatches, replies and releases for its transports, no handoff). (b) and (c): one \
         client thread per connection, as examples/loadgen.rs. Floor: raw mock Send/Recv echo \
         on a QP pair with no transport (client sends from pre-filled buffers, server sends \
         each message back from its receive buffer), same sizes, same window; (a): the same \
         single-thread loop; (b) and (c): a client thread per pair and as many server threads \
         as the mode runs calls on ((b) {} workers + pollers, (c) {} groups), each looping \
         over its share of the pairs and sleeping on a doorbell the QPs ring. For reference, \
         the floor with a server thread per pair (the only floor before (c) existed), and \
         the ratio to it: on 2 cores, {} server threads against one client thread per pair \
         get a smaller share of the CPU than one server thread per pair does. Server wakeups per call: \
         (poller and group sleeps ended + worker sleeps ended with a job) / calls in the \
         window; passes: transport passes (a worker's or a group's) / calls; handoffs: calls \
         a group handed to a worker, summed over runs (0: nothing blocks here). CPU = process \
         user+sys (getrusage, every thread, both ends) over the timed window / calls. calls/s \
         and CPU: median of {} runs of {:?}; latency (start_call to reply) from the median \
         run; in (a) it is the time of a loop turn over every connection, in (b) and (c) it \
         includes thread wakeups. Errors: transport / floor, summed over runs. Allocations per \
         call ((a) only): heap alloc/alloc_zeroed/realloc calls in the timed window / calls \
         (bench-report's counting global allocator), median of the runs. Load average: \
         see the header (the threaded runs add up to {} threads on 2 cores).",
        rdmaxprt_bench::e2e::Payload::new(64 << 10).path(),
        threaded::WORKERS,
        rdmaxprt::runtime::ServerConfig::default().pollers,
        threaded::groups(),
        threaded::WORKERS + rdmaxprt::runtime::ServerConfig::default().pollers,
        threaded::groups(),
        "a few",
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
                "poll groups (wakeups = group passes)",
                idle::poll_group(mode.idle_trials, size, Duration::from_secs(2)),
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
              nothing pending release and in-use is back to the baseline. Poll groups: as \
              threaded, the runtime in poll-group mode (its group thread polls, runs the passes \
              and the backstop's pass itself; group passes counted); shown without a verdict: \
              its edges are released before the client's first look after the reply, and \
              neither removing the backstop's enqueue nor the idle pass's drain made one \
              trailing edge show, so what releases them there is not pinned down by this \
              measurement. Released = within 2 s \
              (threaded, poll groups) or 16 turns (run-to-completion)."
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
    for m in [E2eMode::Threaded, E2eMode::PollGroup] {
        let rows: Vec<Option<f64>> = res
            .iter()
            .filter(|r| r.0 .0 == m)
            .map(|r| ratio(r.1.rate, r.2.rate))
            .collect();
        let worst = rows
            .iter()
            .copied()
            .try_fold(f64::INFINITY, |w, r| r.map(|r| w.min(r)));
        t.row(vec![
            format!(
                "B4 {} >= 0.5x the raw mock loop at {E2E_CONNS:?} connections (rule: every \
                 size and connection count, against the raw loop with the mode's server \
                 thread count)",
                m.name()
            ),
            format!("worst {}", fmt_ratio(worst.filter(|_| !rows.is_empty()))),
            verdict(worst.filter(|_| !rows.is_empty()).map(|w| w >= 0.5)).into(),
        ]);
    }
    for m in [E2eMode::Rtc, E2eMode::Threaded, E2eMode::PollGroup] {
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
        // Poll groups: measured, no verdict (see the B5 note).
        if name.starts_with("poll groups") {
            continue;
        }
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
