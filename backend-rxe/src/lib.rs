//! rdmaxprt-rxe: Soft-RoCE (`rdma_rxe`) device management for tests.
//!
//! - [`ensure`] an rxe device on a netdev (`rdma link add NAME type rxe
//!   netdev IF`), reusing the one already there (found through
//!   `/sys/class/infiniband/*/parent`), and [`RxeLink::remove`] it again;
//! - [`roce_v2_ipv4_gid`]: the GID index of the netdev's IPv4 address, read
//!   from `/sys/class/infiniband/DEV/ports/1/gids` and `gid_attrs/types`;
//! - [`rnr_counters`] (and [`Sysfs::hw_counter`]): the port's
//!   `hw_counters`, e.g. whether a connection needed an RNR retry.
//!
//! No libibverbs here: this crate only runs the `rdma` tool (iproute2) and
//! reads sysfs, so it builds anywhere.
//!
//! # rxe quirks
//! Measured on Debian 12's 6.1 kernel (QEMU TCG, rxe0 on a dummy netdev);
//! the device tests and the transport work around each of them.
//! - **rdma_cm does not work on `lo`.** Raw verbs on an rxe bound to `lo`
//!   work, but `rdma_resolve_route` to 127.0.0.1 and `rdma_bind_addr` to a
//!   non-127 address on `lo` fail with ENODEV. Put rxe on a `dummy` netdev
//!   with an address (192.168.77.1/24 in the VM) for anything using rdma_cm.
//! - **One rxe per netdev** (EEXIST otherwise): [`ensure`] reuses it.
//! - **The IPv4 GID appears late**: only after the netdev is up *and* has
//!   the address, asynchronously; [`wait_for_ipv4_gid`] polls for it. On a
//!   dummy netdev it is index 1 (index 0 is the link-local IPv6 one). rxe
//!   registers RoCEv2 entries only.
//! - **Two rxe devices in one network namespace cannot talk** (a veth pair:
//!   modify_qp to RTR fails, rdma_cm gets ADDR_ERROR -110): 6.1 rxe has no
//!   netns support and both addresses are local. Loop a QP back to another
//!   QP on the same device instead, or use two VMs.
//! - **Receive queues flush only at the transition to error** for user-space
//!   QPs: a receive posted after the QP entered the error state never
//!   completes. `rdmaxprt-verbs`'s drain posts its receive marker first.
//! - **Flushes arrive late after a disconnect**: after `rdma_disconnect`
//!   the QP's outstanding work requests flush from a kernel task some time
//!   later, not by the time DISCONNECTED is delivered. Drain the QP before
//!   releasing its resources rather than assuming they are done.
//! - **The send queue is bigger than asked**: the ring is rounded up (4
//!   send WRs asked, 4 reported, 7 accepted before ENOMEM). Keep your own
//!   SQ accounting (svcrdma's `sc_sq_avail`); do not rely on ENOMEM at
//!   exactly `max_send_wr`.
//! - **Run device tests serially**: one process at a time on the device;
//!   tests that reconfigure links (this crate's) race with everything else.
//! - **Under QEMU TCG everything is slow**: ~28 us send latency, ~0.2 Gb/s;
//!   use numbers for ratios only, and generous timeouts.
//! - **No siw**: Debian's kernels are built without `CONFIG_RDMA_SIW`.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RxeError {
    /// Reading sysfs failed.
    #[error("reading {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The `rdma` tool (iproute2) is not installed.
    #[error("the `rdma` tool (iproute2) was not found")]
    NoRdmaTool,
    /// `rdma link add/delete` could not be run.
    #[error("cannot run {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `rdma link add/delete` failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The device did not appear (or disappear) in sysfs in time.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
    },
    /// A sysfs counter file did not hold a decimal number.
    #[error("{path}: not a counter value: {text:?}")]
    BadCounter {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
    /// The device port has no RoCEv2 IPv4 GID.
    #[error("{device} port {port} has no RoCEv2 IPv4 GID (does the netdev have an IPv4 address and is it up?)")]
    NoIpv4Gid {
        /// Device name.
        device: String,
        /// Port.
        port: u32,
    },
}

/// Results of this crate.
pub type Result<T, E = RxeError> = std::result::Result<T, E>;

/// Where the RDMA devices are in sysfs; tests point it at a fake tree.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/sys/class/infiniband"),
        }
    }
}

fn read_trimmed(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| RxeError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Parse a sysfs GID (`0000:0000:0000:0000:0000:ffff:c0a8:4d01`).
pub fn parse_gid(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut groups = s.trim().split(':');
    for pair in out.chunks_mut(2) {
        let g = u16::from_str_radix(groups.next()?, 16).ok()?;
        pair.copy_from_slice(&g.to_be_bytes());
    }
    groups.next().is_none().then_some(out)
}

/// The IPv4 address of an IPv4-mapped GID (`::ffff:a.b.c.d`).
pub fn gid_ipv4(gid: &[u8; 16]) -> Option<Ipv4Addr> {
    (gid[..10].iter().all(|b| *b == 0) && gid[10] == 0xff && gid[11] == 0xff)
        .then(|| Ipv4Addr::new(gid[12], gid[13], gid[14], gid[15]))
}

impl Sysfs {
    /// Use `root` instead of `/sys/class/infiniband`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The RDMA devices present.
    pub fn devices(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            // No RDMA at all (no ib_core): no devices.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(RxeError::Io {
                    path: self.root.clone(),
                    source,
                })
            }
        };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        Ok(v)
    }

    /// The netdev an rxe device sits on (its `parent` attribute; only
    /// software RDMA devices have one).
    pub fn parent_netdev(&self, device: &str) -> Option<String> {
        read_trimmed(&self.root.join(device).join("parent")).ok()
    }

    /// The rxe device on `netdev`, if any.
    pub fn rxe_on(&self, netdev: &str) -> Result<Option<String>> {
        Ok(self
            .devices()?
            .into_iter()
            .find(|d| self.parent_netdev(d).as_deref() == Some(netdev)))
    }

    /// The index and address of the first RoCEv2 IPv4 GID of `device`'s `port`.
    pub fn roce_v2_ipv4_gid(&self, device: &str, port: u32) -> Result<(u32, Ipv4Addr)> {
        let pdir = self.root.join(device).join("ports").join(port.to_string());
        let gids = pdir.join("gids");
        let rd = fs::read_dir(&gids).map_err(|source| RxeError::Io {
            path: gids.clone(),
            source,
        })?;
        let mut indices: Vec<u32> = rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        indices.sort_unstable();
        for i in indices {
            let Ok(text) = read_trimmed(&gids.join(i.to_string())) else {
                continue;
            };
            let Some(ip) = parse_gid(&text).as_ref().and_then(gid_ipv4) else {
                continue;
            };
            // Unused entries fail to read (EINVAL); the type names the RoCE version.
            let ty =
                read_trimmed(&pdir.join("gid_attrs/types").join(i.to_string())).unwrap_or_default();
            if ty.eq_ignore_ascii_case("RoCE v2") {
                return Ok((i, ip));
            }
        }
        Err(RxeError::NoIpv4Gid {
            device: device.to_owned(),
            port,
        })
    }
}

impl Sysfs {
    /// One hardware counter of `device`'s `port`
    /// (`DEV/ports/PORT/hw_counters/NAME`; rxe keeps e.g. `send_rnr_err`,
    /// `rcvd_rnr_err`, `retry_exceeded_err`, `sent_pkts`).
    pub fn hw_counter(&self, device: &str, port: u32, name: &str) -> Result<u64> {
        let path = self
            .root
            .join(device)
            .join("ports")
            .join(port.to_string())
            .join("hw_counters")
            .join(name);
        let text = read_trimmed(&path)?;
        text.parse()
            .map_err(|_| RxeError::BadCounter { path, text })
    }

    /// The RNR counters of `device`'s `port` right now.
    pub fn rnr_counters(&self, device: &str, port: u32) -> Result<RnrCounters> {
        Ok(RnrCounters {
            send_rnr_err: self.hw_counter(device, port, "send_rnr_err")?,
            rcvd_rnr_err: self.hw_counter(device, port, "rcvd_rnr_err")?,
        })
    }
}

/// rxe's Receiver-Not-Ready counters: a Send that found no posted receive.
/// The responder counts the RNR NAKs it sent, the requester the ones it
/// received; on one rxe device talking to itself both move together.
/// Snapshot them before and after a connection to prove it needed no RNR
/// retry (a server that posts its receives before `rdma_accept`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RnrCounters {
    /// `hw_counters/send_rnr_err`: RNR NAKs sent (as responder).
    pub send_rnr_err: u64,
    /// `hw_counters/rcvd_rnr_err`: RNR NAKs received (as requester).
    pub rcvd_rnr_err: u64,
}

impl std::fmt::Display for RnrCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "send_rnr_err={} rcvd_rnr_err={}",
            self.send_rnr_err, self.rcvd_rnr_err
        )
    }
}

/// [`Sysfs::rnr_counters`] on the real sysfs.
pub fn rnr_counters(device: &str, port: u32) -> Result<RnrCounters> {
    Sysfs::default().rnr_counters(device, port)
}

/// [`Sysfs::roce_v2_ipv4_gid`] on the real sysfs.
pub fn roce_v2_ipv4_gid(device: &str, port: u32) -> Result<(u32, Ipv4Addr)> {
    Sysfs::default().roce_v2_ipv4_gid(device, port)
}

/// Poll until `device` has a RoCEv2 IPv4 GID (it appears asynchronously
/// after the netdev is up with an address).
pub fn wait_for_ipv4_gid(device: &str, port: u32, timeout: Duration) -> Result<(u32, Ipv4Addr)> {
    let deadline = Instant::now() + timeout;
    loop {
        match roce_v2_ipv4_gid(device, port) {
            Ok(g) => return Ok(g),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn rdma_tool() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("rdma"))
        .find(|p| p.is_file())
        .ok_or(RxeError::NoRdmaTool)
}

fn rdma(args: &[&str]) -> Result<()> {
    let tool = rdma_tool()?;
    let command = format!("rdma {}", args.join(" "));
    let out = Command::new(&tool)
        .args(args)
        .output()
        .map_err(|source| RxeError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(RxeError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn wait_presence(sysfs: &Sysfs, name: &str, present: bool, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while sysfs.root.join(name).exists() != present {
        if Instant::now() >= deadline {
            return Err(RxeError::Timeout {
                what: format!("{name} to {}", if present { "appear" } else { "go away" }),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// An rxe device on a netdev, as [`ensure`] found or made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxeLink {
    /// The RDMA device name (the existing one's, if it was reused).
    pub name: String,
    /// The netdev it sits on.
    pub netdev: String,
    /// True if [`ensure`] created it (so [`remove`](Self::remove) deletes it).
    pub created: bool,
}

/// An rxe device on `netdev`: the existing one if there is one (whatever its
/// name), else a new one called `name` (`rdma link add`), waited for in sysfs.
/// Needs root and the `rdma_rxe` module.
pub fn ensure(name: &str, netdev: &str) -> Result<RxeLink> {
    let sysfs = Sysfs::default();
    if let Some(existing) = sysfs.rxe_on(netdev)? {
        return Ok(RxeLink {
            name: existing,
            netdev: netdev.to_owned(),
            created: false,
        });
    }
    rdma(&["link", "add", name, "type", "rxe", "netdev", netdev])?;
    wait_presence(&sysfs, name, true, Duration::from_secs(5))?;
    Ok(RxeLink {
        name: name.to_owned(),
        netdev: netdev.to_owned(),
        created: true,
    })
}

impl RxeLink {
    /// Delete the device (`rdma link delete`) if [`ensure`] created it; a
    /// reused device is left alone. Every QP, CQ and context on it must be
    /// gone first, or the kernel waits for them.
    pub fn remove(self) -> Result<()> {
        if !self.created {
            return Ok(());
        }
        rdma(&["link", "delete", &self.name])?;
        wait_presence(&Sysfs::default(), &self.name, false, Duration::from_secs(5))
    }

    /// The RoCEv2 IPv4 GID of port 1, waiting for it to appear.
    pub fn ipv4_gid(&self, timeout: Duration) -> Result<(u32, Ipv4Addr)> {
        wait_for_ipv4_gid(&self.name, 1, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hw_counters() {
        let root = std::env::temp_dir().join(format!("rdmaxprt-rxe-hw-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let hw = root.join("rxe9/ports/1/hw_counters");
        fs::create_dir_all(&hw).unwrap();
        fs::write(hw.join("send_rnr_err"), "3\n").unwrap();
        fs::write(hw.join("rcvd_rnr_err"), "14\n").unwrap();
        fs::write(hw.join("sent_pkts"), "not a number\n").unwrap();
        let sys = Sysfs::at(&root);
        assert_eq!(
            sys.rnr_counters("rxe9", 1).unwrap(),
            RnrCounters {
                send_rnr_err: 3,
                rcvd_rnr_err: 14
            }
        );
        assert_eq!(
            sys.rnr_counters("rxe9", 1).unwrap().to_string(),
            "send_rnr_err=3 rcvd_rnr_err=14"
        );
        assert!(matches!(
            sys.hw_counter("rxe9", 1, "sent_pkts"),
            Err(RxeError::BadCounter { text, .. }) if text == "not a number"
        ));
        assert!(matches!(
            sys.hw_counter("rxe9", 2, "send_rnr_err"),
            Err(RxeError::Io { .. })
        ));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn parses_sysfs_gids() {
        let g = parse_gid("0000:0000:0000:0000:0000:ffff:c0a8:4d01").unwrap();
        assert_eq!(gid_ipv4(&g), Some(Ipv4Addr::new(192, 168, 77, 1)));
        let ll = parse_gid("fe80:0000:0000:0000:b0c2:1bff:fe12:3456").unwrap();
        assert_eq!(gid_ipv4(&ll), None);
        assert_eq!(parse_gid("0000:0000"), None);
        assert_eq!(parse_gid("zz00:0000:0000:0000:0000:ffff:c0a8:4d01"), None);
        assert_eq!(
            parse_gid("0000:0000:0000:0000:0000:ffff:c0a8:4d01:0000"),
            None
        );
    }

    fn fake_tree(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("rdmaxprt-rxe-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let port = root.join("rxe9/ports/1");
        fs::create_dir_all(port.join("gids")).unwrap();
        fs::create_dir_all(port.join("gid_attrs/types")).unwrap();
        fs::write(root.join("rxe9/parent"), "dummy9\n").unwrap();
        let entries = [
            ("0", "fe80:0000:0000:0000:b0c2:1bff:fe12:3456", "RoCE v2"),
            // A RoCEv1 entry with the same address must be passed over.
            ("1", "0000:0000:0000:0000:0000:ffff:0a00:0001", "IB/RoCE v1"),
            ("2", "0000:0000:0000:0000:0000:ffff:0a00:0001", "RoCE v2"),
            ("3", "0000:0000:0000:0000:0000:0000:0000:0000", ""),
        ];
        for (i, gid, ty) in entries {
            fs::write(port.join("gids").join(i), format!("{gid}\n")).unwrap();
            if !ty.is_empty() {
                fs::write(port.join("gid_attrs/types").join(i), format!("{ty}\n")).unwrap();
            }
        }
        root
    }

    #[test]
    fn finds_roce_v2_ipv4_gid_and_parent() {
        let root = fake_tree("gid");
        let s = Sysfs::at(&root);
        assert_eq!(s.devices().unwrap(), vec!["rxe9".to_owned()]);
        assert_eq!(s.rxe_on("dummy9").unwrap().as_deref(), Some("rxe9"));
        assert_eq!(s.rxe_on("eth0").unwrap(), None);
        assert_eq!(
            s.roce_v2_ipv4_gid("rxe9", 1).unwrap(),
            (2, Ipv4Addr::new(10, 0, 0, 1))
        );
        assert!(matches!(
            s.roce_v2_ipv4_gid("rxe9", 2),
            Err(RxeError::Io { .. })
        ));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn no_sysfs_means_no_devices() {
        let s = Sysfs::at("/nonexistent/rdmaxprt/infiniband");
        assert!(s.devices().unwrap().is_empty());
    }
}
