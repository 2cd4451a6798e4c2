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
//!    guest/init.sh sets up rxe0 on dummy0 and runs each binary serially,
//!    printing `RESULT <name> PASS|FAIL` on the serial console;
//! 6. exit non-zero on any failure, skip (unless `--allow-skips`), missing
//!    result, or timeout.

mod fetch;
mod host;
mod initramfs;
mod qemu;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::VmTestArgs;
use host::Res;
use initramfs::GuestTest;

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

/// Packages and binaries from xtask/vm-tests.txt.
fn manifest(root: &Path) -> Res<(Vec<String>, Vec<PathBuf>)> {
    let path = root.join("xtask/vm-tests.txt");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut pkgs, mut bins) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some(("package", p)) => pkgs.push(p.trim().to_owned()),
            Some(("bin", b)) => bins.push(root.join(b.trim())),
            _ => {
                return Err(format!(
                    "{}:{}: expected `package NAME` or `bin PATH`",
                    path.display(),
                    n + 1
                ))
            }
        }
    }
    Ok((pkgs, bins))
}

/// `cargo test --no-run` for `packages`; every test executable it reports.
fn build_tests(root: &Path, packages: &[String], release: bool) -> Res<Vec<GuestTest>> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
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
    for p in packages {
        cmd.args(["-p", p]);
    }
    println!(
        "xtask: building tests: cargo test --no-run -p {}",
        packages.join(" -p ")
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

/// Run the whole thing; Ok(true) iff every test passed.
pub fn vm_test(args: &VmTestArgs) -> Res<bool> {
    let t0 = Instant::now();
    host::check_prerequisites()?;
    let root = workspace_root();
    let cache = target_dir(&root).join("vm-cache");
    fs::create_dir_all(&cache).map_err(|e| format!("mkdir {}: {e}", cache.display()))?;

    let (mut packages, mut bins) = (args.packages.clone(), args.bins.clone());
    if packages.is_empty() && bins.is_empty() {
        (packages, bins) = manifest(&root)?;
    }
    let guest = fetch::fetch(&cache)?;
    println!(
        "xtask: guest kernel {} ({:.1}s)",
        guest.kver,
        t0.elapsed().as_secs_f64()
    );
    let mut tests = build_tests(&root, &packages, args.release)?;
    for b in &bins {
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
    if tests.is_empty() {
        return Err("nothing to run: no test binaries found".into());
    }
    let (base, base_root) = initramfs::base(&cache, &guest)?;
    let run_dir = cache.join("run");
    fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
    let tests_cpio = initramfs::tests_archive(&run_dir, &base_root, &tests)?;
    let initrd = run_dir.join("initrd.img");
    let mut img = fs::read(&base).map_err(|e| e.to_string())?;
    img.extend(fs::read(&tests_cpio).map_err(|e| e.to_string())?);
    fs::write(&initrd, img).map_err(|e| e.to_string())?;
    println!(
        "xtask: {} test binaries, initramfs ready ({:.1}s)",
        tests.len(),
        t0.elapsed().as_secs_f64()
    );
    for t in &tests {
        println!("  {} <- {}", t.name, t.path.display());
    }

    let kernel = guest
        .kernel_root
        .join(format!("boot/vmlinuz-{}", guest.kver));
    let outcome = qemu::boot(&qemu::VmConfig {
        kernel: &kernel,
        initrd: &initrd,
        log: &run_dir.join("vm.log"),
        args,
    })?;
    let ok = outcome.report(&tests, args.allow_skips);
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
