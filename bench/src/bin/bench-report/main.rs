//! `bench-report`: runs a short version of every benchmark with its own
//! timing loop (median over repeated runs, not criterion), prints the
//! tables and writes `target/bench-report/report.md`,
//! `target/bench-report/pool_size.svg` and `target/bench-report/idle_shrink.svg`.
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

mod b1_b2;
mod b3;
mod b4_b5;
mod b4_copies;
mod b6;
mod b7;
mod copy_hooks;
mod only;

/// Counts allocations in B4's run-to-completion windows.
#[global_allocator]
static ALLOC: rdmaxprt_bench::alloc_count::CountingAlloc =
    rdmaxprt_bench::alloc_count::CountingAlloc;

use b1_b2::*;
use b3::*;
use b4_b5::*;
use b4_copies::*;
use b6::*;
use b7::*;
use only::*;

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
        println!("         one B4 run, no files; MODE rtc, threaded or poll-group; KIND");
        println!("         transport, raw or raw-grouped (rtc also: lend, the client");
        println!("         lending its buffers)");
        println!("       bench-report --only-b13 [--quick]");
        println!("         the B1 and B3 tables and their targets only, on stdout");
        println!("       bench-report --only-b45 [--quick]");
        println!("         the B4 and B5 tables only, on stdout");
        println!("       bench-report --only-b5 [--quick]");
        println!("         the B5 table (threaded, poll groups, run-to-completion) and its");
        println!("         targets only, on stdout");
        println!("       bench-report --only-b4 [--quick]");
        println!("         the B4 tables and their targets only, on stdout");
        println!("       bench-report --only-b4-bulk [--quick]");
        println!("         the B4 64 KiB echo copies/zero-fills per end and rate vs the floor");
        println!("       bench-report --only-scale [--quick] [--out DIR]");
        println!("         the B7 tables on stdout and DIR/idle_shrink.svg");
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--scale-child") {
        let spec = args.get(i + 1).ok_or("--scale-child needs CONNS:ACTIVE")?;
        return scale_child(spec, args.iter().any(|a| a == "--quick"));
    }
    if args.iter().any(|a| a == "--only-scale") {
        let mode = Mode::new(args.iter().any(|a| a == "--quick"));
        let started = Instant::now();
        let (tables, series) = b7(&mode);
        for t in &tables {
            println!("{}", t.to_markdown());
        }
        let dir = out_dir(&args);
        std::fs::create_dir_all(&dir)?;
        b7_svg(&dir.join("idle_shrink.svg"), &series)?;
        println!(
            "{:.1} s, load {}",
            started.elapsed().as_secs_f64(),
            loadavg()
        );
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
    if args.iter().any(|a| a == "--only-b13") {
        let mode = Mode::new(args.iter().any(|a| a == "--quick"));
        println!(
            "cores {}, load {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg()
        );
        let (t1, r1) = b1(&mode);
        println!("{}", t1.to_markdown());
        println!("{}", b1_targets(&r1).to_markdown());
        let (t3, t3t, _) = b3(&mode);
        println!("{}", t3.to_markdown());
        println!("{}", t3t.to_markdown());
        return Ok(());
    }
    if args.iter().any(|a| a == "--only-b4-bulk") {
        let mode = Mode::new(args.iter().any(|a| a == "--quick"));
        println!(
            "cores {}, load {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg()
        );
        let (t, r) = b4_bulk(&mode);
        println!("{}", t.to_markdown());
        println!("{}", b4_bulk_rates(&r).to_markdown());
        println!("{}", b4_bulk_targets(&r).to_markdown());
        println!("load {}", loadavg());
        return Ok(());
    }
    if args.iter().any(|a| a == "--only-b5") {
        let mode = Mode::new(args.iter().any(|a| a == "--quick"));
        println!("load {}", loadavg());
        let (t5, r5) = b5(&mode);
        println!("{}", t5.to_markdown());
        println!("{}", b45_targets(&Vec::new(), &r5).to_markdown());
        println!("load {}", loadavg());
        return Ok(());
    }
    if args.iter().any(|a| a == "--only-b4") {
        let mode = Mode::new(args.iter().any(|a| a == "--quick"));
        let started = Instant::now();
        println!(
            "cores {}, load {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg()
        );
        let (t4, r4) = b4(&mode);
        println!("{}", t4.to_markdown());
        println!("{}", b45_targets(&r4, &[]).to_markdown());
        let (tb, rb) = b4_bulk(&mode);
        println!("{}", tb.to_markdown());
        println!("{}", b4_bulk_rates(&rb).to_markdown());
        println!("{}", b4_bulk_targets(&rb).to_markdown());
        println!(
            "{:.1} s, load {}",
            started.elapsed().as_secs_f64(),
            loadavg()
        );
        return Ok(());
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
        let (tb, rb) = b4_bulk(&mode);
        println!("{}", tb.to_markdown());
        println!("{}", b4_bulk_rates(&rb).to_markdown());
        println!("{}", b4_bulk_targets(&rb).to_markdown());
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
    let (tb, rb) = b4_bulk(&mode);
    emit(&tb, &mut sections);
    emit(&b4_bulk_rates(&rb), &mut sections);
    emit(&b4_bulk_targets(&rb), &mut sections);
    emit(&rdmaxprt_bench::profile::table(), &mut sections);
    emit(&rdmaxprt_bench::profile::bulk_table(), &mut sections);
    eprintln!("B7 ...");
    let (t7, s7) = b7(&mode);
    for t in &t7 {
        emit(t, &mut sections);
    }
    let svg7 = dir.join("idle_shrink.svg");
    b7_svg(&svg7, &s7)?;

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
    md.push_str("- plots: `pool_size.svg` (B3, log scale), `idle_shrink.svg` (B7, log scale)\n\n");
    for t in &sections {
        md.push_str(&t.to_markdown());
        md.push('\n');
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md)?;
    eprintln!(
        "wrote {}, {} and {} in {:.1} s (cores {cores}, load {})",
        path.display(),
        svg.display(),
        svg7.display(),
        started.elapsed().as_secs_f64(),
        loadavg()
    );
    Ok(())
}
