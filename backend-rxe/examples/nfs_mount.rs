//! Mount an NFS export by `mount(2)` with a kernel data string, for the
//! test VM, which has no mount.nfs: the kernel NFS client's text options
//! (`vers=4.1,proto=rdma,port=20049,addr=IP,clientaddr=IP,...`) go to the
//! kernel as they are.
//!
//! ```text
//! nfs_mount [--expect-errno E] [--within SECS] [--rnr-unchanged DEV] [--umount]
//!           FSTYPE SOURCE TARGET DATA
//! ```
//! - FSTYPE `nfs4` (v4.x) or `nfs` (v2/v3); SOURCE `IP:/path`; TARGET is
//!   created if missing; DATA must include `addr=` (the kernel does no
//!   name resolution) and, for v4, `clientaddr=`.
//! - `--expect-errno E`: the mount must fail with E (a name such as `EIO`
//!   or a number); without it, the mount must succeed.
//! - `--within SECS`: the `mount(2)` call must return within SECS.
//! - `--rnr-unchanged DEV`: rxe device DEV's port-1 RNR counters
//!   (`hw_counters/send_rnr_err`, `rcvd_rnr_err`) must be the same after
//!   the mount as before: the connection needed no RNR retry.
//! - `--umount`: unmount again after a successful mount.
//!
//! Prints what happened (one line each) and exits 0 iff every expectation
//! held, 1 if one did not, 2 on a usage error.

use std::ffi::CString;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdmaxprt_rxe::rnr_counters;

/// errno names the option accepts (those a mount attempt plausibly ends
/// with).
const ERRNO_NAMES: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("EIO", libc::EIO),
    ("EACCES", libc::EACCES),
    ("EINVAL", libc::EINVAL),
    ("ENODEV", libc::ENODEV),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("ECONNRESET", libc::ECONNRESET),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("EHOSTUNREACH", libc::EHOSTUNREACH),
];

fn errno_name(e: i32) -> String {
    ERRNO_NAMES
        .iter()
        .find(|(_, n)| *n == e)
        .map_or_else(|| format!("errno {e}"), |(name, _)| (*name).to_owned())
}

fn parse_errno(s: &str) -> Option<i32> {
    s.parse().ok().or_else(|| {
        ERRNO_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, n)| *n)
    })
}

#[derive(Default)]
struct Opts {
    expect_errno: Option<i32>,
    within: Option<Duration>,
    rnr_dev: Option<String>,
    umount: bool,
    fstype: String,
    source: String,
    target: String,
    data: String,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut pos = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().ok_or(format!("{what} needs a value"));
        match a.as_str() {
            "--expect-errno" => {
                let v = value("--expect-errno")?;
                o.expect_errno = Some(parse_errno(&v).ok_or(format!("unknown errno {v}"))?);
            }
            "--within" => {
                let v = value("--within")?;
                let secs: f64 = v.parse().map_err(|_| format!("bad --within {v}"))?;
                o.within = Some(
                    Duration::try_from_secs_f64(secs).map_err(|_| format!("bad --within {v}"))?,
                );
            }
            "--rnr-unchanged" => o.rnr_dev = Some(value("--rnr-unchanged")?),
            "--umount" => o.umount = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => pos.push(a),
        }
    }
    let [fstype, source, target, data] = <[String; 4]>::try_from(pos)
        .map_err(|_| "expected FSTYPE SOURCE TARGET DATA".to_owned())?;
    Ok(Opts {
        fstype,
        source,
        target,
        data,
        ..o
    })
}

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// `mount(2)`; the errno on failure.
fn mount(o: &Opts) -> Result<Result<(), i32>, String> {
    let (source, target, fstype, data) = (
        cstr(&o.source)?,
        cstr(&o.target)?,
        cstr(&o.fstype)?,
        cstr(&o.data)?,
    );
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; the NFS filesystems take their data as such a string.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if ret == 0 {
        Ok(Ok(()))
    } else {
        Ok(Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(0)))
    }
}

fn umount(target: &str) -> Result<(), String> {
    let t = cstr(target)?;
    // SAFETY: `t` is a NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(t.as_ptr(), 0) } != 0 {
        return Err(format!(
            "umount {target}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn run(o: &Opts) -> Result<bool, String> {
    std::fs::create_dir_all(&o.target).map_err(|e| format!("mkdir {}: {e}", o.target))?;
    let rnr_before = match &o.rnr_dev {
        Some(dev) => Some(rnr_counters(dev, 1).map_err(|e| e.to_string())?),
        None => None,
    };
    let t0 = Instant::now();
    let res = mount(o)?;
    let took = t0.elapsed();
    let mut ok = true;
    let what = format!(
        "mount -t {} {} {} -o {}",
        o.fstype, o.source, o.target, o.data
    );
    match res {
        Ok(()) => println!("{what}: mounted in {:.3}s", took.as_secs_f64()),
        Err(e) => println!(
            "{what}: {} ({}) in {:.3}s",
            errno_name(e),
            std::io::Error::from_raw_os_error(e),
            took.as_secs_f64()
        ),
    }
    match (o.expect_errno, res) {
        (None, Ok(())) => {}
        (None, Err(_)) => {
            println!("FAIL: expected the mount to succeed");
            ok = false;
        }
        (Some(want), Ok(())) => {
            println!("FAIL: expected {}, but it mounted", errno_name(want));
            ok = false;
        }
        (Some(want), Err(got)) if got != want => {
            println!(
                "FAIL: expected {}, got {}",
                errno_name(want),
                errno_name(got)
            );
            ok = false;
        }
        (Some(_), Err(_)) => {}
    }
    if let Some(limit) = o.within {
        if took > limit {
            println!(
                "FAIL: mount(2) took {:.3}s, more than {:.3}s",
                took.as_secs_f64(),
                limit.as_secs_f64()
            );
            ok = false;
        }
    }
    if res.is_ok() && o.umount {
        umount(&o.target)?;
        println!("unmounted {}", o.target);
    }
    if let (Some(dev), Some(before)) = (&o.rnr_dev, rnr_before) {
        let after = rnr_counters(dev, 1).map_err(|e| e.to_string())?;
        println!("{dev} RNR counters: before {before}, after {after}");
        if after != before {
            println!("FAIL: the connection took RNR NAKs");
            ok = false;
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nfs_mount: {e}");
            eprintln!(
                "usage: nfs_mount [--expect-errno E] [--within SECS] [--rnr-unchanged DEV] [--umount] FSTYPE SOURCE TARGET DATA"
            );
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            println!("FAIL: {e}");
            ExitCode::from(1)
        }
    }
}
