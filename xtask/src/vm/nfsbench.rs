//! `vm-nfs-bench`: the Linux kernel's NFS client over RDMA against
//! examples/nfs-server (once per send-context release policy, once on
//! poll groups) and then
//! against the kernel's own nfsd, one after the other in one VM boot, on
//! the same rxe0 with the same client options and workloads
//! (xtask/vm-nfs-bench.txt, guest/nfs3-bench.sh, guest/knfsd-v3.sh).
//! Prints the table (rows: workloads; columns: ours per policy, the kernel
//! nfsd, ratios ours / kernel) and writes it, with the raw lines, to
//! `target/vm-nfs-bench/report.md`.
//!
//! Not a test: under TCG the numbers are those of an emulated CPU on a
//! shared host; read the ratios, and expect them to move between runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Instant;

use super::host::{self, Res};
use super::{
    boot_pairs, build_examples, fetch, loadavg, manifest, target_dir, workspace_root, write_report,
    PairsBoot, Plan,
};
use crate::VmNfsBenchArgs;

/// The manifest the subcommand runs.
pub const MANIFEST: &str = "xtask/vm-nfs-bench.txt";

/// The label nfs3-bench prints for the kernel's nfsd.
pub const KERNEL: &str = "kernel-nfsd";

/// The workloads of guest/nfs3-bench.sh, in its order, with the row names.
const WORKLOADS: &[(&str, &str)] = &[
    ("seq-write", "sequential write, dd bs=1M oflag=direct"),
    ("seq-read", "sequential read, dd bs=1M iflag=direct"),
    ("read-8k", "8 KiB direct reads, one dd"),
    ("rand-8k", "8 KiB direct reads at random offsets, a dd each"),
    ("metadata", "create + ls -l + remove (3 ops per file)"),
];

/// One `NFS3BENCH` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Meas {
    /// MB/s or ops/s.
    pub rate: f64,
    /// `MB/s` or `ops/s`.
    pub unit: String,
    /// The client's NFS RPCs during the workload.
    pub rpcs: u64,
    /// The server's CPU time per RPC, in microseconds.
    pub server_us: f64,
    /// The whole guest's busy CPU time per RPC, in microseconds.
    pub guest_us: f64,
    /// Seconds the workload took.
    pub secs: f64,
}

/// Parses `NFS3BENCH label workload rate unit rpcs server_us guest_us (secs
/// s)` into (label, workload, measurement).
pub fn parse_line(line: &str) -> Option<(String, String, Meas)> {
    let mut w = line.trim().strip_prefix("NFS3BENCH ")?.split_whitespace();
    let label = w.next()?.to_owned();
    let workload = w.next()?.to_owned();
    let rate = w.next()?.parse().ok()?;
    let unit = w.next()?.to_owned();
    let rpcs = w.next()?.parse().ok()?;
    let server_us = w.next()?.parse().ok()?;
    let guest_us = w.next()?.parse().ok()?;
    let secs = w.next()?.strip_prefix('(')?.parse().ok()?;
    Some((
        label,
        workload,
        Meas {
            rate,
            unit,
            rpcs,
            server_us,
            guest_us,
            secs,
        },
    ))
}

/// Every measurement in the serial log, by (label, workload), and every
/// raw `NFS3BENCH`/`NFSDCALLS`/`FAIL`/`KNFSD`/`TOPCPU` line.
pub fn parse_log(log: &str) -> (BTreeMap<(String, String), Meas>, Vec<String>) {
    let mut m = BTreeMap::new();
    let mut raw = Vec::new();
    for line in log.lines() {
        let Some(text) = line
            .strip_prefix("BENCH ")
            .and_then(|r| r.split_once(" client: "))
            .map(|(_, t)| t)
        else {
            continue;
        };
        if let Some((label, workload, meas)) = parse_line(text) {
            m.insert((label, workload), meas);
        }
        if ["NFS3BENCH", "NFSDCALLS", "FAIL", "KNFSD", "TOPCPU"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            raw.push(text.to_owned());
        }
    }
    (m, raw)
}

/// Which number of a measurement a table shows.
#[derive(Clone, Copy)]
enum Metric {
    Rate,
    ServerCpu,
    GuestCpu,
}

impl Metric {
    fn get(self, m: &Meas) -> f64 {
        match self {
            Metric::Rate => m.rate,
            Metric::ServerCpu => m.server_us,
            Metric::GuestCpu => m.guest_us,
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A markdown table: one row per workload, a column per label of `ours`,
/// the kernel's, then ours / kernel for each of `ours`.
fn table(
    m: &BTreeMap<(String, String), Meas>,
    ours: &[String],
    metric: Metric,
    quick: bool,
) -> String {
    let mut t = String::from("| workload |");
    for o in ours {
        let _ = write!(t, " {o} |");
    }
    let _ = write!(t, " {KERNEL} |");
    for o in ours {
        let _ = write!(t, " {} / kernel |", o.trim_start_matches("ours-"));
    }
    t.push_str("\n|---|");
    for _ in 0..ours.len() * 2 + 1 {
        t.push_str("---:|");
    }
    t.push('\n');
    let get = |label: &str, w: &str| m.get(&(label.to_owned(), w.to_owned()));
    for (w, what) in WORKLOADS {
        let unit = ours
            .iter()
            .map(String::as_str)
            .chain([KERNEL])
            .find_map(|l| get(l, w).map(|v| v.unit.clone()))
            .unwrap_or_default();
        let unit = match metric {
            Metric::Rate => unit,
            _ => "us/RPC".to_owned(),
        };
        let _ = write!(t, "| {w}: {what}{} ({unit}) |", scale_note(w, quick));
        let kernel = get(KERNEL, w).map(|v| metric.get(v));
        for o in ours {
            let v = get(o, w).map(|v| metric.get(v));
            let _ = write!(t, " {} |", v.map(fmt_num).unwrap_or_else(|| "n/a".into()));
        }
        let _ = write!(
            t,
            " {} |",
            kernel.map(fmt_num).unwrap_or_else(|| "n/a".into())
        );
        for o in ours {
            let r = match (get(o, w).map(|v| metric.get(v)), kernel) {
                (Some(a), Some(k)) if k > 0.0 => format!("{:.2}", a / k),
                _ => "n/a".into(),
            };
            let _ = write!(t, " {r} |");
        }
        t.push('\n');
    }
    t
}

/// The amount of work behind a row (guest/nfs3-bench.sh's counts).
fn scale_note(workload: &str, quick: bool) -> &'static str {
    match (workload, quick) {
        ("seq-write" | "seq-read", false) => ", 64 MiB",
        ("seq-write" | "seq-read", true) => ", 16 MiB",
        ("read-8k", false) => ", 2,000",
        ("read-8k", true) => ", 500",
        ("rand-8k", false) => ", 200",
        ("rand-8k", true) => ", 50",
        ("metadata", false) => ", 1,000 files",
        ("metadata", true) => ", 250 files",
        _ => "",
    }
}

/// The labels of our server's pairs (`nfs3-bench LABEL`), in manifest
/// order: every `bench/nfs3-ours-*` pair's label.
fn our_labels(pair_names: &[&str]) -> Vec<String> {
    pair_names
        .iter()
        .filter_map(|n| n.strip_prefix("bench/nfs3-"))
        .filter(|l| l.starts_with("ours-"))
        .map(str::to_owned)
        .collect()
}

/// Run the benchmark VM; Ok(true) iff every number was measured.
pub fn vm_nfs_bench(a: &VmNfsBenchArgs) -> Res<bool> {
    let t0 = Instant::now();
    host::check_prerequisites()?;
    let root = workspace_root();
    let target = target_dir(&root);
    let cache = target.join("vm-cache");
    fs::create_dir_all(&cache).map_err(|e| format!("mkdir {}: {e}", cache.display()))?;
    let m = manifest(&root, Some(Path::new(MANIFEST)))?;
    let guest = fetch::fetch(&cache)?;
    let examples = build_examples(&root, &m.examples, true)?;
    let mut pairs = m.pairs;
    if a.quick {
        for p in &mut pairs {
            p.client = format!("export NFS3BENCH_QUICK=1; {}", p.client);
        }
    }
    let load_before = loadavg();
    let plan = Plan {
        tests: Vec::new(),
        examples,
        pairs,
    };
    let boot = PairsBoot {
        timeout: a.timeout,
        pair_timeout: a.pair_timeout,
        vm: &a.vm,
        verbose: a.verbose,
    };
    let (outcome, all_passed, log_path, log) =
        boot_pairs(&cache, "nfs-bench-run", &guest, &plan, boot, t0)?;
    let names: Vec<&str> = plan.pairs.iter().map(|p| p.name.as_str()).collect();
    let (meas, raw) = parse_log(&log);
    let ours = our_labels(&names);
    let complete = ours.iter().map(String::as_str).chain([KERNEL]).all(|l| {
        WORKLOADS
            .iter()
            .all(|(w, _)| meas.contains_key(&(l.to_owned(), (*w).to_owned())))
    });

    let rate = table(&meas, &ours, Metric::Rate, a.quick);
    let cpu = table(&meas, &ours, Metric::ServerCpu, a.quick);
    let gcpu = table(&meas, &ours, Metric::GuestCpu, a.quick);
    println!();
    println!(
        "== vm-nfs-bench: nfs_server per release policy and on poll groups vs the kernel's nfsd, NFSv3 over rxe0 ({})",
        outcome.accel
    );
    println!("throughput (higher is better):\n{rate}");
    println!("server CPU per RPC (lower is better):\n{cpu}");
    println!("whole-guest CPU per RPC (lower is better):\n{gcpu}");

    let mut md = String::from(
        "# vm-nfs-bench: nfs_server vs the kernel's nfsd, NFSv3 over RDMA on Soft-RoCE\n\n",
    );
    let _ = writeln!(
        md,
        "One VM boot ({}, {} vCPUs, {} memory, stock Debian kernel {}), rxe0 on dummy0, \
         server and the kernel NFS client in the same guest; VM run {:.1}s; host load \
         average before/after: {} / {}{}. The servers ran one after the other, each \
         exporting a fresh tmpfs, each mounted with the same options (`vers=3,proto=rdma,\
         port=20049,mountproto=tcp,mountport=20048,mountvers=3,nolock,soft,timeo=600,retrans=2`). \
         Ours: `nfs_server` (release build, 4 workers, `--no-squash`) with each release \
         policy, and `pollgroup`: the deferred policy on 2 poll groups running the NFS \
         calls (`--mode poll-group --groups 2 --io-in-groups`); the kernel's: nfsd with 4 threads, NFSv3 only, export \
         `rw,sync,no_root_squash,insecure,no_subtree_check,fsid=1`, MOUNT answered by \
         Debian's rpc.mountd (rpcbind running, as nfsd needs for NFSv3). Under TCG one \
         emulated instruction stream runs the client, the rxe device and the server, and \
         the host is shared: read the ratios, not the absolute figures, and expect them \
         to move between runs.\n",
        outcome.accel,
        a.vm.smp,
        a.vm.mem,
        guest.kver,
        outcome.vm_secs,
        load_before,
        loadavg(),
        if a.quick {
            "; `--quick` (smaller workloads)"
        } else {
            ""
        },
    );
    md.push_str("## Throughput (higher is better)\n\n");
    md.push_str(&rate);
    md.push_str(
        "\n## Server CPU per RPC (us, lower is better)\n\nOurs: user + system time of the \
         `nfs_server` process, all its threads (/proc/PID/stat); the kernel's: its `nfsd` \
         threads plus the `ib-comp-wq` kworkers where svcrdma handles its completions (the \
         counterpart of our completion thread; they also run the kernel NFS client's \
         completions, so this overcounts the kernel's server by the client's share, while \
         nfsd alone would leave svcrdma's completion work out). Neither counts rxe's own \
         work (softirqs), \
         which stands in for the NIC; the whole-guest table below counts everything. Under \
         TCG a vCPU the host descheduled still charges its time to the thread it was \
         running. RPCs: the client's NFSv3 calls (/proc/net/rpc/nfs), the same count for \
         every server; the NFSDCALLS lines are nfsd's own count for the kernel's run, and \
         the TOPCPU lines the ten busiest threads of the guest over each server's run.\n\n",
    );
    md.push_str(&cpu);
    md.push_str(
        "\n## Whole-guest CPU per RPC (us, lower is better)\n\nAll busy time of the guest's \
         vCPUs (/proc/stat: client, rxe, softirqs, kworkers and server) per client RPC.\n\n",
    );
    md.push_str(&gcpu);
    md.push_str("\n## Commands (in the guest)\n\n");
    for p in &plan.pairs {
        if p.server.is_empty() {
            let _ = writeln!(md, "- `{}`", p.client);
        } else {
            let _ = writeln!(md, "- `{}` & then `{}`", p.server, p.client);
        }
    }
    md.push_str("\n## Raw lines\n\n```text\n");
    for l in &raw {
        let _ = writeln!(md, "{l}");
    }
    md.push_str("```\n");
    write_report(
        &target,
        "vm-nfs-bench",
        &md,
        complete && all_passed,
        t0,
        outcome.vm_secs,
        &log_path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nfs3bench_lines() {
        let (l, w, m) =
            parse_line("NFS3BENCH ours-inline seq-write 22.4 MB/s 66 39000 51000 (3.0 s)").unwrap();
        assert_eq!((l.as_str(), w.as_str()), ("ours-inline", "seq-write"));
        assert_eq!(m.rate, 22.4);
        assert_eq!(m.unit, "MB/s");
        assert_eq!(m.rpcs, 66);
        assert_eq!(m.server_us, 39000.0);
        assert_eq!(m.guest_us, 51000.0);
        assert_eq!(m.secs, 3.0);
        // The old seven-field format (no guest CPU) is not taken for a new one.
        assert!(parse_line("NFS3BENCH x seq-write 22.4 MB/s 66 39000 (3.0 s)").is_none());
        assert!(parse_line("NFS3BENCH x seq-write fast MB/s 66 1 2 (3.0 s)").is_none());
    }

    #[test]
    fn the_table_has_a_ratio_per_policy_against_the_kernel() {
        let log = "\
BENCH bench/nfs3-ours-a client: NFS3BENCH ours-a read-8k 300.0 ops/s 2000 1500 2000 (6.7 s)
BENCH bench/nfs3-ours-b client: NFS3BENCH ours-b read-8k 600.0 ops/s 2000 1000 1800 (3.3 s)
BENCH bench/nfs3-ours-b server: NFS3BENCH ours-b seq-read 1.0 MB/s 1 1 1 (1.0 s)
BENCH bench/nfs3-kernel-nfsd client: NFS3BENCH kernel-nfsd read-8k 400.0 ops/s 2000 500 1600 (5.0 s)
BENCH bench/nfs3-kernel-nfsd client: NFSDCALLS kernel-nfsd read-8k 2001
";
        let (m, raw) = parse_log(log);
        // Server-side lines are not the client's measurements.
        assert_eq!(m.len(), 3);
        assert_eq!(raw.len(), 4);
        let ours = our_labels(&[
            "bench/nfs3-ours-a",
            "bench/nfs3-ours-b",
            "bench/nfs3-kernel-nfsd",
        ]);
        assert_eq!(ours, ["ours-a", "ours-b"]);
        let t = table(&m, &ours, Metric::Rate, false);
        let row = t.lines().find(|l| l.starts_with("| read-8k")).unwrap();
        assert_eq!(
            row,
            "| read-8k: 8 KiB direct reads, one dd, 2,000 (ops/s) | 300 | 600 | 400 | 0.75 | 1.50 |"
        );
        let t = table(&m, &ours, Metric::ServerCpu, false);
        let row = t.lines().find(|l| l.starts_with("| read-8k")).unwrap();
        assert!(
            row.ends_with("| 1500 | 1000 | 500 | 3.00 | 2.00 |"),
            "{row}"
        );
        // A workload nobody measured: n/a, not a number.
        let row = t.lines().find(|l| l.starts_with("| seq-write")).unwrap();
        assert!(row.ends_with("| n/a | n/a | n/a | n/a | n/a |"), "{row}");
    }

    #[test]
    fn the_manifest_runs_each_policy_then_the_kernel() {
        let m = manifest(&workspace_root(), Some(Path::new(MANIFEST))).unwrap();
        let names: Vec<&str> = m.pairs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            our_labels(&names),
            [
                "ours-deferred",
                "ours-inline",
                "ours-workqueue",
                "ours-pollgroup"
            ]
        );
        let last = m.pairs.last().unwrap();
        assert_eq!(last.name, format!("bench/nfs3-{KERNEL}"));
        assert!(last.server.is_empty() && last.client.contains("knfsd-v3 start"));
        // Every pair's label is the one its name promises.
        for p in &m.pairs {
            let label = p.name.strip_prefix("bench/nfs3-").unwrap();
            assert!(
                p.client.contains(&format!("nfs3-bench {label} ")),
                "{}",
                p.name
            );
        }
        assert!(m.packages.is_empty() && m.tests.is_empty());
    }
}
