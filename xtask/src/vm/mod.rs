//! `vm-test`: the device tests on Soft-RoCE in a QEMU VM.
//!
//! Steps (everything cached under `target/vm-cache/`):
//! 1. check the host tools and packages, and name the missing apt packages;
//! 2. `apt-get download` the Debian kernel (`linux-image-6.1.0-NN-amd64`,
//!    resolved through `apt-cache depends linux-image-amd64`) and the guest
//!    userspace, `dpkg -x` them (see `fetch`);
//! 3. build the test binaries (`cargo test --no-run`) of the packages named
//!    by `--package` or xtask/vm-tests.txt, plus any `--bin`;
//! 4. build the initramfs: a cached base plus a per-run archive (`initramfs`);
//! 5. boot QEMU (TCG unless hardware KVM is loaded), bounded by `timeout`;
//!    guest/init.sh sets up rxe0 on dummy0 and the kernel's nfsd on
//!    `rdma 20149` (for tests/kernel_nfsd.rs; only when there are test
//!    binaries: `vm-nfs-bench` starts an NFSv3 nfsd itself), runs each
//!    binary serially,
//!    printing `RESULT <name> PASS|FAIL` on the serial console, stops nfsd,
//!    then runs the pairs (guest/kclient-mount.sh is there as
//!    `kclient-mount` for the kernel NFS client's);
//! 6. exit non-zero on any failure, skip (unless `--allow-skips`), missing
//!    result, or timeout.

mod bench;
mod fetch;
mod host;
mod initramfs;
mod nfsbench;
mod qemu;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub use bench::vm_bench;
pub use nfsbench::vm_nfs_bench;

use crate::VmTestArgs;
use host::Res;
use initramfs::{GuestExample, GuestPair, GuestTest};

fn workspace_root() -> PathBuf {
    // xtask/ is one level below the workspace root.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// A program a pair runs: an example of a package (`example PACKAGE NAME
/// [FEATURES]`) or a binary target of one (`bin-of PACKAGE NAME
/// [FEATURES]`), shipped as `/examples/NAME`.
struct GuestProgram {
    package: String,
    name: String,
    features: Option<String>,
    /// `--bin` instead of `--example`.
    bin: bool,
}

impl GuestProgram {
    fn example(package: &str, name: &str, features: Option<&str>) -> Self {
        Self {
            package: package.to_owned(),
            name: name.to_owned(),
            features: features.map(str::to_owned),
            bin: false,
        }
    }
}

/// What xtask/vm-tests.txt asks for.
#[derive(Default)]
struct Manifest {
    packages: Vec<String>,
    /// `test PACKAGE TARGET [FEATURES]`: one test target built with features.
    tests: Vec<Vec<String>>,
    bins: Vec<PathBuf>,
    /// `example` and `bin-of` lines: programs for the pairs.
    examples: Vec<GuestProgram>,
    pairs: Vec<GuestPair>,
}

fn manifest(root: &Path, file: Option<&Path>) -> Res<Manifest> {
    let path = root.join(file.unwrap_or(Path::new("xtask/vm-tests.txt")));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_manifest(&text, &path, root)
}

/// Parses manifest `text` (read from `path`, named in errors; `bin`
/// paths are relative to `root`).
fn parse_manifest(text: &str, path: &Path, root: &Path) -> Res<Manifest> {
    let mut m = Manifest::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("{}:{}: {what}", path.display(), n + 1);
        match line.split_once(char::is_whitespace) {
            Some(("package", p)) => m.packages.push(p.trim().to_owned()),
            Some(("test", rest)) => match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [pkg, target] => m.tests.push(vec![
                    "-p".into(),
                    pkg.into(),
                    "--test".into(),
                    target.into(),
                ]),
                [pkg, target, features] => m.tests.push(vec![
                    "-p".into(),
                    pkg.into(),
                    "--test".into(),
                    target.into(),
                    "--features".into(),
                    features.into(),
                ]),
                _ => return Err(bad("expected `test PACKAGE TARGET [FEATURES]`")),
            },
            Some(("bin", b)) => m.bins.push(root.join(b.trim())),
            Some((kind @ ("example" | "bin-of"), rest)) => {
                let mut p = match rest.split_whitespace().collect::<Vec<_>>()[..] {
                    [pkg, name] => GuestProgram::example(pkg, name, None),
                    [pkg, name, features] => GuestProgram::example(pkg, name, Some(features)),
                    _ => return Err(bad(&format!("expected `{kind} PACKAGE NAME [FEATURES]`"))),
                };
                p.bin = kind == "bin-of";
                m.examples.push(p);
            }
            Some(("pair", rest)) => {
                let (name, cmds) = rest
                    .trim()
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| bad("expected `pair NAME SERVER ;; CLIENT [;; CHECK]`"))?;
                let parts: Vec<&str> = cmds.split(";;").map(str::trim).collect();
                if !(2..=3).contains(&parts.len()) || parts[1].is_empty() {
                    return Err(bad("expected `pair NAME SERVER ;; CLIENT [;; CHECK]`"));
                }
                m.pairs.push(GuestPair {
                    name: name.to_owned(),
                    server: parts[0].to_owned(),
                    client: parts[1].to_owned(),
                    check: parts.get(2).copied().unwrap_or_default().to_owned(),
                });
            }
            _ => {
                return Err(bad(
                    "expected `package NAME`, `bin PATH`, `example PACKAGE NAME`, `bin-of PACKAGE NAME` or `pair ...`",
                ))
            }
        }
    }
    Ok(m)
}

/// `cargo build --example` (or `--bin`) for each program; their
/// executables.
fn build_examples(root: &Path, examples: &[GuestProgram], release: bool) -> Res<Vec<GuestExample>> {
    let mut out = Vec::new();
    for p in examples {
        let (pkg, name, features) = (&p.package, &p.name, &p.features);
        let kind = if p.bin { "bin" } else { "example" };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root).args([
            "build",
            "--message-format=json-render-diagnostics",
            "-p",
            pkg,
            &format!("--{kind}"),
            name,
        ]);
        if release {
            cmd.arg("--release");
        }
        if let Some(f) = features {
            cmd.args(["--features", f]);
        }
        println!(
            "xtask: building {kind}: cargo build -p {pkg} --{kind} {name}{}{}",
            if release { " --release" } else { "" },
            features
                .as_ref()
                .map(|f| format!(" --features {f}"))
                .unwrap_or_default()
        );
        let res = cmd
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cargo: {e}"))?;
        if !res.status.success() {
            return Err(format!("building {kind} {name} of {pkg} failed"));
        }
        let exe = String::from_utf8_lossy(&res.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["reason"] == "compiler-artifact"
                    && v["target"]["name"] == name.as_str()
                    && v["target"]["kind"][0] == kind
            })
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .ok_or_else(|| format!("cargo reported no executable for {kind} {name}"))?;
        out.push(GuestExample {
            name: name.clone(),
            path: exe,
        });
    }
    Ok(out)
}

/// `cargo test --no-run` for `packages`; every test executable it reports.
fn build_tests(root: &Path, packages: &[String], release: bool) -> Res<Vec<GuestTest>> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let args: Vec<String> = packages
        .iter()
        .flat_map(|p| ["-p".to_owned(), p.clone()])
        .collect();
    cargo_test_no_run(root, &args, release)
}

/// `cargo test --no-run ARGS`; every test executable it reports.
fn cargo_test_no_run(root: &Path, sel: &[String], release: bool) -> Res<Vec<GuestTest>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    cmd.args(sel);
    println!(
        "xtask: building tests: cargo test --no-run {}",
        sel.join(" ")
    );
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err("building the test binaries failed".into());
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        // package_id: "path+file:///...#name@0.1.0" (or "...#0.1.0" when the
        // directory name is the package name).
        let id = v["package_id"].as_str().unwrap_or_default();
        let frag = id.rsplit('#').next().unwrap_or(id);
        let pkg = match frag.split_once('@') {
            Some((name, _)) => name.to_owned(),
            None => id
                .rsplit('/')
                .next()
                .unwrap_or(id)
                .split('#')
                .next()
                .unwrap_or(id)
                .to_owned(),
        };
        let target = v["target"]["name"].as_str().unwrap_or("?");
        let kind = v["target"]["kind"][0].as_str().unwrap_or("test");
        let name = if kind == "lib" {
            format!("{pkg}/lib")
        } else {
            format!("{pkg}/{target}")
        };
        tests.push(GuestTest {
            name,
            path: PathBuf::from(exe),
            args: "--test-threads=1".into(),
        });
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tests)
}

/// What one VM boot runs.
struct Plan {
    tests: Vec<GuestTest>,
    examples: Vec<GuestExample>,
    pairs: Vec<GuestPair>,
}

/// How a benchmark subcommand boots: release builds, only its pairs.
struct PairsBoot<'a> {
    timeout: u64,
    pair_timeout: u64,
    vm: &'a crate::VmOpts,
    verbose: bool,
}

/// Boots `plan` (pairs only, release, skips allowed) in `cache/run`: the
/// outcome, whether every pair ran and passed, the serial log's path and
/// its text.
fn boot_pairs(
    cache: &Path,
    run: &str,
    guest: &fetch::Guest,
    plan: &Plan,
    b: PairsBoot<'_>,
    t0: Instant,
) -> Res<(qemu::Outcome, bool, PathBuf, String)> {
    let vm_args = VmTestArgs {
        packages: Vec::new(),
        bins: Vec::new(),
        release: true,
        timeout: b.timeout,
        test_timeout: b.pair_timeout,
        pair_timeout: b.pair_timeout,
        interop_only: true,
        manifest: None,
        vm: b.vm.clone(),
        allow_skips: true,
        verbose: b.verbose,
    };
    let run_dir = cache.join(run);
    let outcome = boot_plan(cache, &run_dir, guest, plan, &vm_args, t0)?;
    let names: Vec<&str> = plan.pairs.iter().map(|p| p.name.as_str()).collect();
    let all = outcome.report(&names, true);
    let log_path = run_dir.join("vm.log");
    let log = fs::read_to_string(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    Ok((outcome, all, log_path, log))
}

/// The host's 1-minute load average (the VM competes with it for cores).
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Writes a benchmark subcommand's `md` to `target/<name>/report.md` and
/// prints its closing line (`done` if `ok`, else `INCOMPLETE`); returns
/// `ok`.
fn write_report(
    target: &Path,
    name: &str,
    md: &str,
    ok: bool,
    t0: Instant,
    vm_secs: f64,
    log_path: &Path,
) -> Res<bool> {
    let out_dir = target.join(name);
    fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let report = out_dir.join("report.md");
    fs::write(&report, md).map_err(|e| format!("{}: {e}", report.display()))?;
    println!(
        "xtask: {name} {} in {:.1}s (VM {:.1}s); report {}; serial log {}",
        if ok { "done" } else { "INCOMPLETE" },
        t0.elapsed().as_secs_f64(),
        vm_secs,
        report.display(),
        log_path.display()
    );
    Ok(ok)
}

/// Fetch the guest, build the initramfs for `plan`, boot it; the outcome
/// and the serial log's path.
fn boot_plan(
    cache: &Path,
    run_dir: &Path,
    guest: &fetch::Guest,
    plan: &Plan,
    args: &VmTestArgs,
    t0: Instant,
) -> Res<qemu::Outcome> {
    let (base, base_root) = initramfs::base(cache, guest)?;
    fs::create_dir_all(run_dir).map_err(|e| e.to_string())?;
    let tests_cpio = initramfs::tests_archive(
        run_dir,
        &base_root,
        &plan.tests,
        &plan.examples,
        &plan.pairs,
    )?;
    let initrd = run_dir.join("initrd.img");
    let mut img = fs::read(&base).map_err(|e| e.to_string())?;
    img.extend(fs::read(&tests_cpio).map_err(|e| e.to_string())?);
    fs::write(&initrd, img).map_err(|e| e.to_string())?;
    println!(
        "xtask: {} test binaries, {} examples, {} pairs; initramfs ready ({:.1}s)",
        plan.tests.len(),
        plan.examples.len(),
        plan.pairs.len(),
        t0.elapsed().as_secs_f64()
    );
    for t in &plan.tests {
        println!("  {} <- {}", t.name, t.path.display());
    }
    for e in &plan.examples {
        println!("  /examples/{} <- {}", e.name, e.path.display());
    }
    let kernel = guest
        .kernel_root
        .join(format!("boot/vmlinuz-{}", guest.kver));
    qemu::boot(&qemu::VmConfig {
        kernel: &kernel,
        initrd: &initrd,
        log: &run_dir.join("vm.log"),
        args,
    })
}

/// Run the whole thing; Ok(true) iff every test passed.
pub fn vm_test(args: &VmTestArgs) -> Res<bool> {
    let t0 = Instant::now();
    host::check_prerequisites()?;
    let root = workspace_root();
    let cache = target_dir(&root).join("vm-cache");
    fs::create_dir_all(&cache).map_err(|e| format!("mkdir {}: {e}", cache.display()))?;

    let mut m = Manifest {
        packages: args.packages.clone(),
        bins: args.bins.clone(),
        ..Manifest::default()
    };
    if m.packages.is_empty() && m.bins.is_empty() {
        m = manifest(&root, args.manifest.as_deref())?;
        if args.interop_only {
            m.packages.clear();
            m.tests.clear();
            m.bins.clear();
        }
    }
    let guest = fetch::fetch(&cache)?;
    println!(
        "xtask: guest kernel {} ({:.1}s)",
        guest.kver,
        t0.elapsed().as_secs_f64()
    );
    let mut tests = build_tests(&root, &m.packages, args.release)?;
    for sel in &m.tests {
        tests.extend(cargo_test_no_run(&root, sel, args.release)?);
    }
    for b in &m.bins {
        let name = b
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        tests.push(GuestTest {
            name: format!("bin/{name}"),
            path: b.clone(),
            args: String::new(),
        });
    }
    let examples = build_examples(&root, &m.examples, args.release)?;
    if tests.is_empty() && m.pairs.is_empty() {
        return Err("nothing to run: no test binaries or pairs found".into());
    }
    let plan = Plan {
        tests,
        examples,
        pairs: m.pairs,
    };
    let run_dir = cache.join("run");
    let outcome = boot_plan(&cache, &run_dir, &guest, &plan, args, t0)?;
    let mut expected: Vec<&str> = plan.tests.iter().map(|t| t.name.as_str()).collect();
    expected.extend(plan.pairs.iter().map(|p| p.name.as_str()));
    let ok = outcome.report(&expected, args.allow_skips);
    println!(
        "xtask: vm-test {} in {:.1}s (VM {:.1}s, {}); serial log {}",
        if ok { "PASSED" } else { "FAILED" },
        t0.elapsed().as_secs_f64(),
        outcome.vm_secs,
        outcome.accel,
        run_dir.join("vm.log").display()
    );
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_and_bin_of_lines_name_programs_to_build() {
        let m = parse_manifest(
            "example rdmaxprt rpc_server verbs\nbin-of rdmaxprt-nfs-server nfs_server verbs\nbin-of p b\n",
            Path::new("m.txt"),
            Path::new("/"),
        )
        .unwrap();
        let got: Vec<_> = m
            .examples
            .iter()
            .map(|p| {
                (
                    p.package.as_str(),
                    p.name.as_str(),
                    p.features.as_deref(),
                    p.bin,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("rdmaxprt", "rpc_server", Some("verbs"), false),
                ("rdmaxprt-nfs-server", "nfs_server", Some("verbs"), true),
                ("p", "b", None, true),
            ]
        );
        let err = parse_manifest(
            "bin-of only-a-package\n",
            Path::new("m.txt"),
            Path::new("/"),
        )
        .err()
        .unwrap();
        assert!(
            err.contains("m.txt:1: expected `bin-of PACKAGE NAME"),
            "{err}"
        );
    }

    #[test]
    fn the_checked_in_manifests_parse() {
        let root = workspace_root();
        for f in ["xtask/vm-tests.txt", "xtask/vm-nfs3.txt"] {
            let m = manifest(&root, Some(Path::new(f))).unwrap();
            assert!(
                m.pairs
                    .iter()
                    .any(|p| p.name == "kernel-client/nfs3-files_our-nfs-server"),
                "{f}"
            );
        }
    }

    #[test]
    fn the_measurement_manifests_parse() {
        let root = workspace_root();
        for (f, pairs) in [
            ("xtask/vm-lat.txt", 2),
            ("xtask/vm-scale.txt", 3),
            (nfsbench::MANIFEST, 4),
        ] {
            let m = manifest(&root, Some(Path::new(f))).unwrap();
            assert!(m.pairs.len() >= pairs, "{f}: {} pairs", m.pairs.len());
            assert!(m.packages.is_empty() && m.tests.is_empty(), "{f}");
        }
    }
}
