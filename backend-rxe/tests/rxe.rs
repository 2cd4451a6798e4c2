//! rxe device tests: need the test VM's setup (`cargo run -p xtask --
//! vm-test`): RDMAXPRT_TEST_DEVICE (rxe0) on RDMAXPRT_TEST_NETDEV (dummy0)
//! with RDMAXPRT_TEST_IP, and a spare netdev RDMAXPRT_TEST_SPARE_NETDEV
//! (dummy1, 192.168.78.1) without rxe. Each test reports SKIPPED when its
//! variables are unset. Own harness: libtest has no run-time skip, and
//! these tests reconfigure RDMA links, so they run strictly one at a time.

#[path = "../../backend-verbs/tests/harness/mod.rs"]
mod harness;
use harness::{Skip, TestFn, TestResult};
use std::net::Ipv4Addr;
use std::time::Duration;

use rdmaxprt_rxe::{ensure, rnr_counters, roce_v2_ipv4_gid, Sysfs};

fn env(name: &str) -> Result<String, Skip> {
    std::env::var(name)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Skip(format!("{name} is not set")))
}

fn existing_device_is_found_with_its_gid() -> TestResult {
    let dev = env("RDMAXPRT_TEST_DEVICE")?;
    let netdev = env("RDMAXPRT_TEST_NETDEV")?;
    let ip: Ipv4Addr = env("RDMAXPRT_TEST_IP")?.parse()?;
    assert_eq!(
        Sysfs::default().rxe_on(&netdev)?.as_deref(),
        Some(dev.as_str())
    );
    let link = ensure("rxe_unused_name", &netdev)?;
    assert!(!link.created, "ensure must reuse the existing device");
    assert_eq!(link.name, dev);
    let (index, addr) = roce_v2_ipv4_gid(&dev, 1)?;
    println!("  {dev} on {netdev}: RoCEv2 IPv4 GID index {index} = {addr}");
    assert_eq!(addr, ip);
    link.remove()?; // a no-op for a reused device
    assert!(Sysfs::default().devices()?.contains(&dev));
    Ok(())
}

fn create_and_remove_on_spare_netdev() -> TestResult {
    let spare = env("RDMAXPRT_TEST_SPARE_NETDEV")?;
    if let Some(d) = Sysfs::default().rxe_on(&spare)? {
        return Err(format!("{spare} already has {d}").into());
    }
    let link = ensure("rxe_t1", &spare)?;
    assert!(link.created);
    let (index, addr) = link.ipv4_gid(Duration::from_secs(5))?;
    println!(
        "  created {} on {spare}: RoCEv2 IPv4 GID index {index} = {addr}",
        link.name
    );
    let again = ensure("rxe_t2", &spare)?;
    assert_eq!(again.name, "rxe_t1");
    assert!(!again.created);
    link.remove()?;
    assert!(!Sysfs::default().devices()?.contains(&"rxe_t1".to_owned()));
    assert_eq!(Sysfs::default().rxe_on(&spare)?, None);
    Ok(())
}

/// The RNR counters the kernel-client test compares (rxe keeps them in
/// the port's hw_counters): readable, and only ever growing.
fn rnr_counters_are_readable() -> TestResult {
    let dev = env("RDMAXPRT_TEST_DEVICE")?;
    let before = rnr_counters(&dev, 1)?;
    let sent = Sysfs::default().hw_counter(&dev, 1, "sent_pkts")?;
    let after = rnr_counters(&dev, 1)?;
    println!("  {dev} port 1: {before}, sent_pkts={sent}");
    assert!(after.send_rnr_err >= before.send_rnr_err);
    assert!(after.rcvd_rnr_err >= before.rcvd_rnr_err);
    assert!(Sysfs::default()
        .hw_counter(&dev, 1, "no_such_counter")
        .is_err());
    Ok(())
}

const TESTS: &[(&str, TestFn)] = &[
    ("rnr_counters_are_readable", rnr_counters_are_readable),
    (
        "existing_device_is_found_with_its_gid",
        existing_device_is_found_with_its_gid,
    ),
    (
        "create_and_remove_on_spare_netdev",
        create_and_remove_on_spare_netdev,
    ),
];

fn main() {
    harness::run(TESTS, "run `cargo run -p xtask -- vm-test`");
}
