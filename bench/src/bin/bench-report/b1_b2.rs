//! B1 (completion path) and B2 (drain).

use super::*;

pub(super) const UNMAP_COSTS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_nanos(500),
    Duration::from_micros(2),
];
pub(super) const THREADS: [usize; 2] = [1, 2];

/// B1 results.
#[derive(Debug, Default)]
pub(super) struct PutResults {
    /// `(policy or None for the floor, unmap, threads) -> median ns`.
    pub(super) by: HashMap<(Option<PolicyKind>, Duration, usize), f64>,
    /// `threads -> median ns` of the push on slot-laid links.
    pub(super) slot_floor: HashMap<usize, f64>,
}

pub(super) fn b1(mode: &Mode) -> (Table, PutResults) {
    let mut res = PutResults::default();
    let mut floors: HashMap<usize, Med> = HashMap::new();
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
            "floor 2: push on slot-laid links",
            "ratio to floor 2",
            "worker wakeups per put",
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
        res.by.insert((None, Duration::ZERO, threads), f.ns);
        floors.insert(threads, f);
        let f2 = med(mode.reps, || {
            put::time_bare_push_slots(threads, mode.put_batch, mode.put_rounds)
        });
        res.slot_floor.insert(threads, f2.ns);
    }
    for policy in PolicyKind::ALL {
        for unmap in UNMAP_COSTS {
            for threads in THREADS {
                let mut wakeups = Vec::new();
                let m = med(mode.reps, || {
                    let (t, w) =
                        put::run_counting(&spec(Some(policy), unmap, threads), mode.put_rounds);
                    wakeups.extend(w);
                    t
                });
                res.by.insert((Some(policy), unmap, threads), m.ns);
                let floor = floors[&threads];
                let floor2 = res.slot_floor[&threads];
                t.row(vec![
                    policy.to_string(),
                    us(unmap),
                    threads.to_string(),
                    fmt_ns(m.ns),
                    m.range(),
                    fmt_ns(floor.ns),
                    fmt_ratio(ratio(m.ns, floor.ns)),
                    fmt_ns(floor2),
                    fmt_ratio(ratio(m.ns, floor2)),
                    median(&wakeups).map_or("-".into(), |w| format!("{w:.3}")),
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
         and drained/flushed after it. One page (one unmap) per context. Puts are handled in \
         CQ batches of {} under one `completions()` hold each (the completion lock: one \
         completion handler per pool at a time, as the transport's poll does), so a put \
         validates with plain loads and one store, then pushes. Workqueue: {} release workers \
         (`WorkqueuePool::default_threads`, one per CPU), running during the timed window; \
         \"worker wakeups per put\" = condvar notifications / puts (each one futex wake; the \
         pool wakes a worker only when none is awake). Floor: push of dense indices (4-byte \
         links, 16 per cache line). Floor 2: the same push on links one cache line apart, as \
         they sit in the pool's slots (a put touches one line per context). Median of {} runs \
         of {} batches. With 2 threads the Deferred and Inline puts serialize on the \
         completion lock (a pool's completions have one handler at a time, like a CQ), while \
         the floors push concurrently; a preempted lock holder makes the other spin. \
         \"Thread overlap\" is the share of the timed time both threads were inside it at \
         once: near 0% means the other core was taken (by another process) and the run is \
         effectively single-threaded. Two-thread figures are medians over runs that \
         overlapped >= 50% only (up to 3x the runs are tried; \"none overlapped\" = the figure \
         is not a contended one).",
        mode.put_batch,
        rdmaxprt_bench::put::CQ_BATCH,
        rdmaxprt_core::lifecycle::WorkqueuePool::default_threads(),
        mode.reps,
        mode.put_rounds
    );
    (t, res)
}

pub(super) fn b1_targets(res: &PutResults) -> Table {
    let mut t = Table::new("B1 targets", &["target", "threads", "measured", "verdict"]);
    let at = |p, unmap, threads| res.by[&(p, unmap, threads)];
    for threads in THREADS {
        let floor = at(None, Duration::ZERO, threads);
        let d0 = at(Some(PolicyKind::Deferred), Duration::ZERO, threads);
        let d2 = at(
            Some(PolicyKind::Deferred),
            Duration::from_micros(2),
            threads,
        );
        let r = ratio(d0, floor);
        t.row(vec![
            "Deferred put <= 1.5x bare push (unmap 0; rule: median put / median dense push, same run)"
                .into(),
            threads.to_string(),
            fmt_ratio(r),
            verdict(r.map(|r| r <= 1.5)).into(),
        ]);
        let r2 = ratio(d0, res.slot_floor[&threads]);
        t.row(vec![
            "Deferred put <= 1.5x push on slot-laid links (unmap 0; same memory, no validation)"
                .into(),
            threads.to_string(),
            fmt_ratio(r2),
            verdict(r2.map(|r| r <= 1.5)).into(),
        ]);
        for unmap in UNMAP_COSTS {
            let d = at(Some(PolicyKind::Deferred), unmap, threads);
            let w = at(Some(PolicyKind::Workqueue), unmap, threads);
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
            "Deferred put changes <= 10% from unmap 0 to 2 us (rule: the put never unmaps)".into(),
            threads.to_string(),
            c.map_or("n/a".into(), |c| format!("{:+.1}%", c * 100.0)),
            verdict(c.map(|c| c.abs() <= 0.10)).into(),
        ]);
    }
    t
}

pub(super) fn b2(mode: &Mode) -> Table {
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
