//! Boot the guest under QEMU, bounded by `timeout`, and read the results
//! off the serial console.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::host::Res;
use crate::VmTestArgs;

/// What to boot.
pub struct VmConfig<'a> {
    /// vmlinuz.
    pub kernel: &'a Path,
    /// The concatenated initramfs.
    pub initrd: &'a Path,
    /// Where the whole serial console goes.
    pub log: &'a Path,
    /// The user's options.
    pub args: &'a VmTestArgs,
}

/// What the serial console said.
pub struct Outcome {
    /// `RESULT name PASS|FAIL ...` lines: (name, passed, the whole line).
    results: Vec<(String, bool, String)>,
    /// Test cases a binary reported SKIPPED.
    skipped: Vec<String>,
    /// Every test case line (`binary::case verdict`), for the report.
    cases: Vec<String>,
    /// Saw the guest's SUMMARY line (it ran to the end).
    summary: Option<String>,
    /// QEMU's exit status (124 = timeout).
    qemu_status: Option<i32>,
    /// Wall time of the VM run.
    pub vm_secs: f64,
    /// "tcg" or "kvm".
    pub accel: &'static str,
}

/// KVM only when it is hardware KVM: a stock Debian kernel does not boot
/// under a software /dev/kvm (kvm_pvm), TCG always works.
fn pick_accel(want: &str) -> Res<&'static str> {
    match want {
        "tcg" => Ok("tcg"),
        "kvm" => Ok("kvm"),
        "auto" => {
            let hw = Path::new("/sys/module/kvm_intel").exists()
                || Path::new("/sys/module/kvm_amd").exists();
            let usable = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok();
            Ok(if hw && usable { "kvm" } else { "tcg" })
        }
        other => Err(format!("--accel must be auto, kvm or tcg, not {other:?}")),
    }
}

fn interesting(line: &str) -> bool {
    line.starts_with("RESULT ")
        || line.starts_with("SUMMARY ")
        || line.starts_with("GUEST-UP")
        || line.starts_with("SETUP ")
        || line.starts_with("==== ")
        || line.starts_with("test ")
        || line.starts_with("SKIP")
        || line.starts_with("---- ")
        || line.starts_with("| ")
        || line.contains("panicked at")
        || line.contains("Kernel panic")
}

/// Boot, stream the console to the log (and the interesting lines to stdout).
pub fn boot(cfg: &VmConfig<'_>) -> Res<Outcome> {
    let a = cfg.args;
    let accel = pick_accel(&a.vm.accel)?;
    let accel_args: &[&str] = if accel == "kvm" {
        &["-enable-kvm", "-cpu", "host"]
    } else {
        &["-accel", "tcg", "-cpu", "max"]
    };
    let append = format!(
        "console=ttyS0 panic=-1 loglevel=4 rdmaxprt.test_timeout={} rdmaxprt.pair_timeout={}",
        a.test_timeout, a.pair_timeout
    );
    let mut cmd = Command::new("timeout");
    cmd.args([
        "--kill-after=10",
        &a.timeout.to_string(),
        "qemu-system-x86_64",
    ])
    .args(accel_args)
    .args(["-m", &a.vm.mem, "-smp", &a.vm.smp.to_string()])
    // No NIC: all traffic stays in the guest kernel (dummy0). -no-reboot
    // and panic=-1 turn a guest panic into QEMU exiting.
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(cfg.kernel)
    .arg("-initrd")
    .arg(cfg.initrd)
    .args(["-append", &append])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    println!("xtask: booting QEMU ({accel}, timeout {}s) ...", a.timeout);
    let t0 = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu: {e}"))?;
    let mut log = File::create(cfg.log).map_err(|e| format!("{}: {e}", cfg.log.display()))?;
    let stdout = child.stdout.take().ok_or("no qemu stdout")?;
    let mut out = Outcome {
        results: Vec::new(),
        skipped: Vec::new(),
        cases: Vec::new(),
        summary: None,
        qemu_status: None,
        vm_secs: 0.0,
        accel,
    };
    let mut current = String::new();
    for line in BufReader::new(stdout).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_owned();
        let _ = writeln!(log, "{line}");
        if a.verbose || interesting(&line) {
            println!("{line}");
        }
        if let Some(rest) = line.strip_prefix("==== ") {
            current = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        } else if let Some(rest) = line.strip_prefix("RESULT ") {
            let mut w = rest.split_whitespace();
            let name = w.next().unwrap_or_default().to_owned();
            let pass = w.next() == Some("PASS");
            out.results.push((name, pass, line.clone()));
        } else if line.starts_with("SUMMARY ") {
            out.summary = Some(line.clone());
        } else if let Some((case, verdict)) = line
            .strip_prefix("test ")
            .and_then(|r| r.split_once(" ... "))
        {
            let verdict = verdict.split([' ', ':']).next().unwrap_or_default();
            if verdict == "SKIPPED" || verdict == "ignored" {
                out.skipped.push(format!("{current}::{case}"));
            }
            out.cases.push(format!("{current}::{case} {verdict}"));
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for qemu: {e}"))?;
    out.qemu_status = status.code();
    out.vm_secs = t0.elapsed().as_secs_f64();
    Ok(out)
}

impl Outcome {
    /// Print the verdict; true iff every expected test passed.
    pub fn report(&self, expected: &[&str], allow_skips: bool) -> bool {
        let mut ok = true;
        println!();
        println!("== vm-test results ({} test cases)", self.cases.len());
        for c in &self.cases {
            println!("  {c}");
        }
        for (_, _, line) in &self.results {
            println!("{line}");
        }
        for name in expected {
            if !self.results.iter().any(|(n, _, _)| n == name) {
                println!("RESULT {name} FAIL (no result: the VM stopped or timed out first)");
                ok = false;
            }
        }
        if self.results.iter().any(|(_, pass, _)| !pass) {
            ok = false;
        }
        if !self.skipped.is_empty() {
            println!(
                "skipped inside the VM ({}): {}",
                self.skipped.len(),
                self.skipped.join(", ")
            );
            if !allow_skips {
                println!("(a skip in the VM means the test did not get its device: failing; --allow-skips to accept)");
                ok = false;
            }
        }
        match (&self.summary, self.qemu_status) {
            (Some(s), _) => println!("{s}"),
            (None, Some(124)) | (None, Some(137)) => {
                println!("FAIL: QEMU timed out (--timeout) before the guest finished");
                ok = false;
            }
            (None, st) => {
                println!("FAIL: the guest never printed its SUMMARY (qemu exit {st:?})");
                ok = false;
            }
        }
        if self.qemu_status != Some(0) && self.summary.is_some() {
            println!("note: qemu exited with {:?}", self.qemu_status);
        }
        ok
    }
}
