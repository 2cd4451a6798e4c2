//! The runner shared by the device test binaries (`harness = false`):
//! backend-verbs' `device`, backend-rxe's `rxe` and the facade's
//! `verbs_transport` include it with `#[path]`.
//!
//! Tests run serially (one RDMA device, and rxe wants it so). A test that
//! cannot run here returns [`Skip`] and is reported SKIPPED, never passed.
//! libtest's flags (--test-threads, --nocapture, -q, ...) are accepted and
//! ignored; `--list` lists; a bare word filters by name. Exit status 101 on
//! any failure, like libtest.
#![allow(dead_code)]

use std::error::Error;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A test's outcome.
pub type TestResult = Result<(), Box<dyn Error>>;
/// A test.
pub type TestFn = fn() -> TestResult;

/// Why a test did not run (reported SKIPPED).
pub struct Skip(pub String);

impl std::fmt::Debug for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl Error for Skip {}

/// Runs `tests` serially and exits like libtest; `skip_hint` says how to
/// run the skipped ones.
pub fn run(tests: &[(&str, TestFn)], skip_hint: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let (mut passed, mut failed, mut skipped, mut filtered) = (0, 0, 0, 0);
    for (name, f) in tests {
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
                let mut msg = e.to_string();
                let mut src = e.source();
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                println!("test {name} ... FAILED: {msg}");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED (panicked)");
            }
        }
    }
    if skipped > 0 {
        println!("SKIP: {skipped} device test(s) skipped: {skip_hint}");
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
