//! Host prerequisites and a small command runner.

use std::path::Path;
use std::process::{Command, Stdio};

/// An error message with context.
pub type Res<T> = Result<T, String>;

/// The Debian packages the harness needs on the host. The xtask installs
/// nothing; `.ci/vm.sh` (or the user) installs what it reports missing.
pub const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86", // qemu-system-x86_64
    "busybox-static",  // the guest's /init shell and applets (static: no libs)
    "cpio",            // initramfs archive
    "kmod",            // depmod/modprobe against the extracted kernel tree
    "xz-utils",        // some kernels ship .ko.xz (busybox modprobe can't read them)
    "libibverbs-dev",  // rdma-sys links libibverbs ...
    "librdmacm-dev",   // ... and librdmacm
    "pkg-config",      // rdma-sys finds them with pkg-config
    "libclang-dev",    // rdma-sys runs bindgen
];

/// Commands the steps run directly, with the package that provides each.
const HOST_COMMANDS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("cpio", "cpio"),
    ("depmod", "kmod"),
    ("modprobe", "kmod"),
    ("apt-get", "apt"),
    ("apt-cache", "apt"),
    ("dpkg", "dpkg"),
    ("ldd", "libc-bin"),
    ("gzip", "gzip"),
    ("timeout", "coreutils"),
    ("xz", "xz-utils"),
];

fn in_path(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(cmd).is_file())
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(cmd).is_file())
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Check tools and packages; on anything missing, say which apt packages to
/// install and fail.
pub fn check_prerequisites() -> Res<()> {
    let mut missing: Vec<&str> = Vec::new();
    for (cmd, pkg) in HOST_COMMANDS {
        if !in_path(cmd) && !missing.contains(pkg) {
            missing.push(pkg);
        }
    }
    if Path::new("/usr/bin/dpkg-query").exists() {
        for pkg in HOST_PACKAGES {
            if !dpkg_installed(pkg) && !missing.contains(pkg) {
                missing.push(pkg);
            }
        }
    }
    // The guest runs /bin/busybox without any library: it must be static.
    if Path::new("/bin/busybox").exists() {
        let out = Command::new("ldd").arg("/bin/busybox").output();
        if let Ok(o) = out {
            if o.status.success() && !missing.contains(&"busybox-static") {
                missing.push("busybox-static");
            }
        }
    } else if !missing.contains(&"busybox-static") {
        missing.push("busybox-static");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing host packages: {m}\n  install them with: apt-get update && apt-get install -y --no-install-recommends {m}\n  (or run .ci/vm.sh, which does that and then runs this)",
        m = missing.join(" ")
    ))
}

/// Run a command to completion; fail with its stderr on a non-zero exit.
pub fn run(cmd: &mut Command) -> Res<String> {
    let desc = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {desc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{desc} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sh -c SCRIPT` (for pipelines), failing on a non-zero exit.
pub fn sh(script: &str) -> Res<String> {
    run(Command::new("sh").args(["-c", script]))
}

/// Quote a path for `sh -c`.
pub fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}
