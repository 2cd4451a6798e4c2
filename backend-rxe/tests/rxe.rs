//! rxe device tests: need the test VM's setup (`cargo run -p xtask --
//! vm-test`): RDMAXPRT_TEST_DEVICE (rxe0) on RDMAXPRT_TEST_NETDEV (dummy0)
//! with RDMAXPRT_TEST_IP, and a spare netdev RDMAXPRT_TEST_SPARE_NETDEV
//! (dummy1, 192.168.78.1) without rxe. Each test reports SKIPPED when its
//! variables are unset. Own harness: libtest has no run-time skip, and
//! these tests reconfigure RDMA links, so they run strictly one at a time.

use std::error::Error;
use std::net::Ipv4Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use rdmaxprt_rxe::{ensure, roce_v2_ipv4_gid, Sysfs};

type TestResult = Result<(), Box<dyn Error>>;
type TestFn = fn() -> TestResult;

#[derive(Debug)]
struct Skip(String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl Error for Skip {}

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

const TESTS: &[(&str, TestFn)] = &[
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed, mut skipped, mut filtered) = (0, 0, 0, 0);
    for (name, f) in TESTS {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            filtered += 1;
            continue;
        }
        println!("--- {name}");
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Err(e)) if e.is::<Skip>() => {
                skipped += 1;
                println!("test {name} ... SKIPPED ({e})");
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("test {name} ... FAILED: {e}");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED (panicked)");
            }
        }
    }
    if skipped > 0 {
        println!("SKIP: {skipped} rxe test(s) skipped: run `cargo run -p xtask -- vm-test`");
    }
    println!();
    println!(
        "test result: {}. {passed} passed; {failed} failed; {skipped} ignored; 0 measured; {filtered} filtered out",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(101);
    }
}
