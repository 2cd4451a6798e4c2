//! The `--only-*` single-configuration modes (no files; for callgrind).

use super::*;

/// `--only-put POLICY:UNMAP_NS:THREADS[:ROUNDS]`: one B1 configuration.
pub(super) fn only_put(arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let parts: Vec<&str> = arg.split(':').collect();
    let [policy, unmap_ns, threads, rest @ ..] = parts.as_slice() else {
        return Err(format!("bad --only-put spec {arg:?}").into());
    };
    let policy = match *policy {
        "deferred" => Some(PolicyKind::Deferred),
        "workqueue" => Some(PolicyKind::Workqueue),
        "inline" => Some(PolicyKind::Inline),
        "floor" => None,
        "floor-slots" => {
            let t = put::time_bare_push_slots(
                threads.parse()?,
                1024,
                rest.first().map_or(Ok(32), |r| r.parse())?,
            );
            println!(
                "{arg}: {} per push over {} pushes",
                fmt_ns(t.ns_per_op()),
                t.ops
            );
            return Ok(());
        }
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
pub(super) fn only_drain(arg: &str) -> Result<(), Box<dyn std::error::Error>> {
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

/// `--only-e2e MODE:KIND:CONNS:SIZE[:MS]`: one B4 run (MODE rtc, threaded
/// or poll-group; KIND transport, lend (rtc only: the client lending its
/// buffers, `start_lent`), raw (a server thread per pair; rtc: its
/// one-thread loop) or raw-grouped (the mode's server thread count: see
/// `E2eMode::floor`)), no files (for callgrind).
pub(super) fn only_e2e(arg: &str) -> Result<(), Box<dyn std::error::Error>> {
    let parts: Vec<&str> = arg.split(':').collect();
    let [m, kind, conns, size, rest @ ..] = parts.as_slice() else {
        return Err(format!("bad --only-e2e spec {arg:?}").into());
    };
    let m = match *m {
        "rtc" => E2eMode::Rtc,
        "threaded" => E2eMode::Threaded,
        "poll-group" => E2eMode::PollGroup,
        x => return Err(format!("unknown mode {x:?}").into()),
    };
    let (floor, lend) = match *kind {
        "transport" => (None, false),
        "lend" if m == E2eMode::Rtc => (None, true),
        "raw" => (Some(Floor::PerPair), false),
        "raw-grouped" => (Some(m.floor()), false),
        x => return Err(format!("unknown kind {x:?} for this mode").into()),
    };
    let ms: u64 = rest.first().map_or(Ok(300), |r| r.parse())?;
    let (conns, size, dur) = (conns.parse()?, size.parse()?, Duration::from_millis(ms));
    let (r, w) = match floor {
        None if lend => (
            rtc::run_path(
                conns,
                size,
                E2E_WINDOW,
                dur,
                rdmaxprt_bench::rtc::ClientPath::Lend,
            ),
            None,
        ),
        None => m.run(conns, size, dur),
        Some(f) => m.run_floor(f, conns, size, dur),
    };
    let w = w.map_or(String::new(), |w| {
        format!(
            ", {:.2} server wakeups and {:.2} passes per call, {} handoffs",
            w.per_call(),
            w.passes_per_call(),
            w.handoffs
        )
    });
    println!(
        "{arg}: {} calls, {}, p50 {} p99 {}, CPU {} per call, {} allocations per call, {} errors{w} (load {})",
        r.calls,
        fmt_rate(r.rate()),
        fmt_ns(r.lat(0.5)),
        fmt_ns(r.lat(0.99)),
        fmt_ns(r.cpu_ns_per_call()),
        r.allocs_per_call().map_or("n/a".into(), |a| format!("{a:.2}")),
        r.errors,
        loadavg()
    );
    Ok(())
}
