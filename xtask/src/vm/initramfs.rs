//! The initramfs, as two concatenated gzip'd cpio archives (the kernel
//! unpacks them in order): a cached base (busybox, rdma userspace, kernel
//! modules) and a small per-run one (/init, the test binaries, the libraries
//! they need that the base lacks). A second run rebuilds only the latter.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::fetch::Guest;
use super::host::{q, run, sh, Res};

/// Kernel modules to put in (their dependencies come along), in no
/// particular order: guest/init.sh loads them in the order that works.
/// Changing the list rebuilds the cached base (its stamp includes it).
const MODULES: &[&str] = &[
    "crc32_generic",
    "crc32-pclmul",
    "crc32c_generic",
    "crc32c-intel",
    "libcrc32c",
    "configfs",
    "ib_core",
    "ib_uverbs",
    "ib_cm",
    "iw_cm",
    "rdma_cm",
    "rdma_ucm",
    "udp_tunnel",
    "ip6_udp_tunnel",
    "rdma_rxe",
    "dummy",
    // The kernel's RPC-over-RDMA peers (tests/kernel_nfsd.rs and the
    // kernel-client pair): the server (svcrdma, in rpcrdma) with nfsd, and
    // the NFS client (xprtrdma, in rpcrdma too) with NFSv3 and v4. All come
    // from the same linux-image package; modprobe pulls in lockd, grace,
    // auth_rpcgss, nfs_acl, fscache, netfs and dns_resolver.
    "sunrpc",
    "rpcrdma",
    "nfsd",
    "nfs",
    "nfsv3",
    "nfsv4",
];

/// Bump when the base layout changes, to invalidate cached bases.
const BASE_LAYOUT: &str = "base-v1";

const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

/// The guest's /init.
const GUEST_INIT: &str = include_str!("../../guest/init.sh");

/// Helper scripts for the pairs, put in the guest's /usr/local/bin.
const GUEST_SCRIPTS: &[(&str, &str)] = &[
    (
        "kclient-mount",
        include_str!("../../guest/kclient-mount.sh"),
    ),
    ("nfs3-files", include_str!("../../guest/nfs3-files.sh")),
    ("nfs3-bench", include_str!("../../guest/nfs3-bench.sh")),
    ("knfsd-v3", include_str!("../../guest/knfsd-v3.sh")),
];

fn mkdirs(root: &Path, dirs: &[&str]) -> Res<()> {
    for d in dirs {
        fs::create_dir_all(root.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    Ok(())
}

fn is_elf(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok()
        && &buf == b"\x7fELF"
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// The shared libraries `elf` needs, resolved against `libpath` first (the
/// guest's own tree) and the host second: (soname, host path).
fn ldd(elf: &Path, libpath: &str) -> Res<Vec<(String, PathBuf)>> {
    let out = Command::new("ldd")
        .arg(elf)
        .env("LD_LIBRARY_PATH", libpath)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((name, rest)) = line.split_once(" => ") {
            if rest.starts_with("not found") {
                return Err(format!("{}: library {name} not found", elf.display()));
            }
            if let Some(path) = rest
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                libs.push((name.to_owned(), PathBuf::from(path)));
            }
        }
    }
    Ok(libs)
}

fn copy_tree(from: &Path, to: &Path) -> Res<()> {
    if from.is_dir() {
        fs::create_dir_all(to).map_err(|e| e.to_string())?;
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to))?;
    }
    Ok(())
}

fn pack(root: &Path, out: &Path) -> Res<()> {
    sh(&format!(
        "cd {} && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > {}",
        q(root),
        q(out)
    ))
    .map(|_| ())
}

/// Build (or reuse) the base archive; returns its path and its tree (for
/// the library lookups of the per-run archive).
pub fn base(cache: &Path, guest: &Guest) -> Res<(PathBuf, PathBuf)> {
    let root = cache.join("base-root");
    let out = cache.join("base.cpio.gz");
    let stamp_file = cache.join("base.stamp");
    let stamp = format!("{BASE_LAYOUT}\n{}\n{}", MODULES.join(" "), guest.stamp);
    if out.exists()
        && root.is_dir()
        && fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str())
    {
        return Ok((out, root));
    }
    println!("xtask: building the base initramfs ...");
    let _ = fs::remove_dir_all(&root);
    mkdirs(
        &root,
        &[
            "usr/bin",
            "usr/sbin",
            LIBDIR,
            "usr/lib64",
            "usr/local/bin",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "root",
        ],
    )?;
    // usrmerge layout like a Debian 12 host, so paths baked into binaries work.
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        symlink(target, root.join(link)).map_err(|e| format!("symlink {link}: {e}"))?;
    }
    fs::copy("/bin/busybox", root.join("usr/bin/busybox"))
        .map_err(|e| format!("copy busybox: {e}"))?;
    symlink("busybox", root.join("usr/bin/sh")).map_err(|e| e.to_string())?;

    // rdma userspace: the dpkg -x tree merged into usr/ (no docs).
    let us = &guest.userspace;
    for d in ["bin", "sbin", "lib"] {
        copy_tree(&us.join(d), &root.join("usr").join(d))?;
    }
    for d in ["usr/bin", "usr/sbin", LIBDIR] {
        copy_tree(&us.join(d), &root.join(d))?;
    }
    copy_tree(&us.join("etc"), &root.join("etc"))?;
    let _ = fs::remove_dir_all(root.join(LIBDIR).join("tc"));

    // The dynamic loader, then the ldd closure of every ELF shipped.
    fs::copy(
        "/lib64/ld-linux-x86-64.so.2",
        root.join("usr/lib64/ld-linux-x86-64.so.2"),
    )
    .map_err(|e| format!("copy ld.so: {e}"))?;
    let libdir = root.join(LIBDIR);
    let libpath = libdir.display().to_string();
    let mut elves = Vec::new();
    for d in ["usr/bin", "usr/sbin", "usr/local/bin", LIBDIR] {
        files_under(&root.join(d), &mut elves);
    }
    for f in elves.iter().filter(|f| is_elf(f)) {
        for (name, path) in ldd(f, &libpath)? {
            let dst = libdir.join(&name);
            if !dst.exists() && !name.starts_with("ld-linux") {
                fs::copy(&path, &dst).map_err(|e| format!("copy {}: {e}", path.display()))?;
            }
        }
    }

    // Kernel modules: the closure, by the host's modprobe over the extracted tree.
    let kroot = &guest.kernel_root;
    let kver = &guest.kver;
    let kmods = kroot.join("lib/modules").join(kver);
    let md = root.join("usr/lib/modules").join(kver);
    let mut kos = BTreeSet::new();
    for m in MODULES {
        let out = run(Command::new("modprobe").arg("-d").arg(kroot).args([
            "-S",
            kver,
            "--show-depends",
            m,
        ]))?;
        for l in out.lines() {
            if let Some(p) = l.strip_prefix("insmod ") {
                kos.insert(PathBuf::from(
                    p.split_whitespace().next().unwrap_or_default(),
                ));
            }
        }
    }
    for ko in &kos {
        let rel = ko
            .strip_prefix(&kmods)
            .map_err(|_| format!("module outside the tree: {}", ko.display()))?;
        let dst = md.join(rel);
        fs::create_dir_all(dst.parent().unwrap_or(&md)).map_err(|e| e.to_string())?;
        fs::copy(ko, &dst).map_err(|e| format!("copy {}: {e}", ko.display()))?;
        // busybox modprobe cannot read compressed modules.
        match dst.extension().and_then(|e| e.to_str()) {
            Some("xz") => {
                run(Command::new("xz").arg("-d").arg(&dst))?;
            }
            Some("zst") => {
                run(Command::new("zstd").args(["-q", "-d", "--rm"]).arg(&dst))?;
            }
            _ => {}
        }
    }
    for f in [
        "modules.builtin",
        "modules.order",
        "modules.builtin.modinfo",
    ] {
        let _ = fs::copy(kmods.join(f), md.join(f));
    }
    run(Command::new("depmod").arg("-b").arg(&root).arg(kver))?;

    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .map_err(|e| e.to_string())?;
    fs::write(root.join("etc/group"), "root:x:0:\n").map_err(|e| e.to_string())?;
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(root.join("usr/share"));

    pack(&root, &out)?;
    fs::write(&stamp_file, stamp).map_err(|e| e.to_string())?;
    println!(
        "xtask: base initramfs {} ({} modules)",
        out.display(),
        kos.len()
    );
    Ok((out, root))
}

/// One binary to run in the guest.
pub struct GuestTest {
    /// Name in RESULT lines.
    pub name: String,
    /// Host path.
    pub path: PathBuf,
    /// Arguments.
    pub args: String,
}

/// A host-built example program, shipped as `/examples/<name>` for the
/// pair commands to call.
pub struct GuestExample {
    /// File name in the guest.
    pub name: String,
    /// Host path.
    pub path: PathBuf,
}

/// A server command started in the background and a client command run in
/// the foreground (guest/init.sh): PASS iff both exit 0 and the check, if
/// any, does too. Commands run under `sh -c`; the check sees the logs as
/// `$SLOG` and `$CLOG`.
#[derive(Debug, Clone)]
pub struct GuestPair {
    /// Name in RESULT lines. Names starting with `bench/` get their whole
    /// logs echoed as `BENCH <name> server|client: <line>`.
    pub name: String,
    /// Server command; empty for a client-only run.
    pub server: String,
    /// Client command.
    pub client: String,
    /// Optional check command.
    pub check: String,
}

fn ship(root: &Path, base_libs: &Path, from: &Path, to: &Path) -> Res<()> {
    fs::copy(from, to).map_err(|e| format!("copy {}: {e}", from.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    for (name, path) in ldd(from, &base_libs.display().to_string())? {
        if !base_libs.join(&name).exists() && !name.starts_with("ld-linux") {
            let _ = fs::copy(&path, root.join(LIBDIR).join(&name));
        }
    }
    Ok(())
}

/// Build the per-run archive: /init, the helper scripts in
/// /usr/local/bin, /tests/* with /tests/list, the examples in /examples/,
/// /tests/pairs, and the libraries the base lacks.
pub fn tests_archive(
    run_dir: &Path,
    base_root: &Path,
    tests: &[GuestTest],
    examples: &[GuestExample],
    pairs: &[GuestPair],
) -> Res<PathBuf> {
    let root = run_dir.join("tests-root");
    let _ = fs::remove_dir_all(&root);
    mkdirs(&root, &["tests", "examples", "usr/local/bin", LIBDIR])?;
    let init = root.join("init");
    fs::write(&init, GUEST_INIT).map_err(|e| e.to_string())?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    for (name, text) in GUEST_SCRIPTS {
        let path = root.join("usr/local/bin").join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let base_libs = base_root.join(LIBDIR);
    let mut list = String::new();
    for (i, t) in tests.iter().enumerate() {
        let file = format!("{:02}-{}", i, t.name.replace(['/', ':', ' '], "_"));
        ship(&root, &base_libs, &t.path, &root.join("tests").join(&file))?;
        list.push_str(&format!("{}\t/tests/{file}\t{}\n", t.name, t.args));
    }
    fs::write(root.join("tests/list"), list).map_err(|e| e.to_string())?;
    for e in examples {
        ship(
            &root,
            &base_libs,
            &e.path,
            &root.join("examples").join(&e.name),
        )?;
    }
    let mut plist = String::new();
    for p in pairs {
        for f in [&p.name, &p.server, &p.client, &p.check] {
            if f.contains(['\t', '\n']) {
                return Err(format!("pair {}: no tabs or newlines in commands", p.name));
            }
        }
        // init.sh reads with IFS=tab, which merges empty fields: "-" = none.
        let or_dash = |f: &str| {
            if f.is_empty() {
                "-".to_owned()
            } else {
                f.to_owned()
            }
        };
        plist.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            p.name,
            or_dash(&p.server),
            p.client,
            or_dash(&p.check)
        ));
    }
    fs::write(root.join("tests/pairs"), plist).map_err(|e| e.to_string())?;
    let out = run_dir.join("tests.cpio.gz");
    pack(&root, &out)?;
    Ok(out)
}
