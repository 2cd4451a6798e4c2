//! B3 (keep-up: completion vs release) and its targets.

use super::*;

pub(super) fn b3(mode: &Mode) -> (Table, Table, Vec<KeepupResult>) {
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
            "largest drain batch",
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
            r.batch_max.to_string(),
            r.waits_at_cap.to_string(),
        ]);
    }
    let s = &results[0].spec;
    t.note = format!(
        "Each policy runs {:?}: one producer thread (get -> map 1 page -> post -> NIC FIFO of {} \
         in flight -> put), unmap cost {} per context, sampled every {:?}. Deferred: a worker \
         drains in a loop (and get drains when the free list is empty); cap = sq_depth + credits \
         = {}. Workqueue: {} release worker(s) (one per CPU), safety cap {}; at the cap its `get` \
         waits inside for contexts in transit (so few AtCap waits reach the producer). \
         Inline: release inside put. Lag = completed - released at a sample. \
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
    tt.row(vec![
        "Deferred never waits at its cap (rule: waits_at_cap = 0; `get` drains before it \
         allocates, so it meets the cap only if release falls behind by the credits)"
            .into(),
        format!("{} waits (cap {})", d.waits_at_cap, d.spec.cap()),
        verdict(Some(d.waits_at_cap == 0)).into(),
    ]);
    let bound = d.in_flight_bound() + u64::from(d.spec.credits) / 2;
    tt.row(vec![
        "Deferred pool high-water near the in-flight bound (rule: pool max <= NIC depth + 1 \
         being built + credits / 2; `get` allocates only when nothing waits for release, so \
         the excess is what a worker holds mid-drain, far below the cap)"
            .into(),
        format!(
            "max {} <= {} + {} = {} (cap {}; largest drain batch {})",
            d.pool_hwm(),
            d.in_flight_bound(),
            d.spec.credits / 2,
            bound,
            d.spec.cap(),
            d.batch_max
        ),
        verdict(Some(d.pool_hwm() <= bound)).into(),
    ]);
    let half = d.secs() / 2.0;
    let late_lag = d.max_lag_between(half, f64::INFINITY);
    let lag_bound = u64::from(d.spec.credits) / 2;
    tt.row(vec![
        "Deferred lag stays low over time (rule: completed - released <= credits / 2 at every \
         sample of the second half; a release path that falls behind pins it near the credits, \
         the room between the in-flight bound and the cap)"
            .into(),
        format!(
            "max lag {} in the second half, {} in the first (bound {})",
            late_lag,
            d.max_lag_between(0.0, half),
            lag_bound
        ),
        verdict(Some(late_lag <= lag_bound)).into(),
    ]);
    let w = get(PolicyKind::Workqueue);
    let wu = w.until_cap();
    let lags = w.pool_hwm() > u64::from(d.spec.cap()) && wu.release_rate < wu.completion_rate;
    tt.row(vec![
        "Workqueue shows the lag (rule: until its cap, release rate < completion rate, and its \
         pool grows past Deferred's cap)"
            .into(),
        format!(
            "release {} vs completion {} until the cap ({:.2} s), pool max {}, max lag {}, waits \
             at cap {}",
            fmt_rate(wu.release_rate),
            fmt_rate(wu.completion_rate),
            wu.secs,
            w.pool_hwm(),
            w.max_lag_between(0.0, f64::INFINITY),
            w.waits_at_cap
        ),
        verdict(Some(lags)).into(),
    ]);
    (t, tt, results)
}
