//! Guest kernel and userspace: Debian packages fetched with `apt-get
//! download` (never installed on the host) and unpacked with `dpkg -x`,
//! all cached under `target/vm-cache/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::{run, Res};

/// The guest's userspace: rdma-core's libraries, providers (librxe) and
/// tools, perftest, and iproute2 (for `ip` and `rdma`) with every library
/// it needs; a fresh host does not have those, so they come from packages
/// too rather than from the host. rpcbind and nfs-kernel-server
/// (rpc.mountd, exportfs) with their libraries are for the kernel nfsd's
/// NFSv3 export in `vm-nfs-bench` (guest/knfsd-v3.sh).
pub const USER_PACKAGES: &[&str] = &[
    "libibverbs1",
    "ibverbs-providers",
    "librdmacm1",
    "libibumad3",
    "ibverbs-utils",
    "rdmacm-utils",
    "perftest",
    "libpci3",
    "libnl-3-200",
    "libnl-route-3-200",
    "iproute2",
    "libmnl0",
    "libxtables12",
    "libbpf1",
    "libelf1",
    "libcap2",
    "rpcbind",
    "nfs-kernel-server",
    "libtirpc3",
    "libtirpc-common",
    "libwrap0",
    "libevent-core-2.1-7",
];

/// What `fetch` produced.
pub struct Guest {
    /// `dpkg -x` of the kernel package (boot/vmlinuz-*, lib/modules/*).
    pub kernel_root: PathBuf,
    /// The kernel release, e.g. `6.1.0-41-amd64`.
    pub kver: String,
    /// `dpkg -x` of every user package, merged.
    pub userspace: PathBuf,
    /// A string that changes whenever any of the above does.
    pub stamp: String,
}

/// The ABI-versioned package behind the `linux-image-amd64` metapackage
/// (`linux-image-6.1.0-NN-amd64`; NN changes with kernel updates).
fn resolve_kernel_package() -> Res<String> {
    let out = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_owned)
        .ok_or_else(|| {
            "apt-cache knows no linux-image-amd64 dependency: run `apt-get update` first".to_owned()
        })
}

fn deb_for(debs: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    fs::read_dir(debs)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .max()
}

/// Download (once) and unpack (once) the kernel and the user packages.
pub fn fetch(cache: &Path) -> Res<Guest> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("mkdir {}: {e}", debs.display()))?;
    let kpkg = match resolve_kernel_package() {
        Ok(k) => k,
        Err(e) => {
            // Offline second run: reuse the kernel already in the cache.
            let cached = fs::read_to_string(cache.join("kernel-package")).map_err(|_| e.clone())?;
            eprintln!("xtask: {e}; using the cached {}", cached.trim());
            cached.trim().to_owned()
        }
    };
    let mut all: Vec<&str> = vec![&kpkg];
    all.extend_from_slice(USER_PACKAGES);
    let need: Vec<&str> = all
        .iter()
        .copied()
        .filter(|p| deb_for(&debs, p).is_none())
        .collect();
    if !need.is_empty() {
        println!("xtask: apt-get download {}", need.join(" "));
        // One call for everything: each apt-get call loads the cache (~1 s).
        run(Command::new("apt-get")
            .arg("download")
            .args(&need)
            .current_dir(&debs))?;
    }
    for p in &all {
        if deb_for(&debs, p).is_none() {
            return Err(format!("apt-get download left no .deb for {p}"));
        }
    }
    fs::write(cache.join("kernel-package"), &kpkg).map_err(|e| e.to_string())?;

    let kdeb = deb_for(&debs, &kpkg).ok_or("kernel .deb vanished")?;
    let kernel_root = cache.join(format!("kernel-{kpkg}"));
    if !kernel_root.join("boot").is_dir() {
        let _ = fs::remove_dir_all(&kernel_root);
        run(Command::new("dpkg").arg("-x").arg(&kdeb).arg(&kernel_root))?;
    }
    let kver = fs::read_dir(kernel_root.join("lib/modules"))
        .map_err(|e| format!("no lib/modules in {}: {e}", kernel_root.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or("kernel package has no modules directory")?;
    // The .deb ships no modules.dep (its postinst runs depmod).
    if !kernel_root
        .join(format!("lib/modules/{kver}/modules.dep"))
        .exists()
    {
        run(Command::new("depmod")
            .arg("-b")
            .arg(&kernel_root)
            .arg(&kver))?;
    }

    let userspace = cache.join("userspace");
    let mut debs_used: Vec<String> = USER_PACKAGES
        .iter()
        .filter_map(|p| deb_for(&debs, p))
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    debs_used.sort();
    let user_stamp = debs_used.join("\n");
    let stamp_file = userspace.join(".debs");
    if fs::read_to_string(&stamp_file).ok().as_deref() != Some(user_stamp.as_str()) {
        let _ = fs::remove_dir_all(&userspace);
        fs::create_dir_all(&userspace).map_err(|e| e.to_string())?;
        for p in USER_PACKAGES {
            let deb = deb_for(&debs, p).ok_or_else(|| format!("no .deb for {p}"))?;
            run(Command::new("dpkg").arg("-x").arg(&deb).arg(&userspace))?;
        }
        fs::write(&stamp_file, &user_stamp).map_err(|e| e.to_string())?;
    }
    let stamp = format!("{}\n{kver}\n{user_stamp}", kdeb.display());
    Ok(Guest {
        kernel_root,
        kver,
        userspace,
        stamp,
    })
}
