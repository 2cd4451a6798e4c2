//! A program whose calls may block (`Service::blocking`), for the runtime
//! suites: it answers with its own arguments after an optional sleep
//! standing for disk I/O, and records the names of the threads it ran on.
#![allow(dead_code)]

use rdmaxprt::service::{CallContext, ProcError, ReplyBody, Service};
use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The blocking program: `prog` version 1, every procedure an echo.
pub struct Disk {
    /// Its program number.
    pub prog: u32,
    /// How long each call sleeps before it answers.
    pub delay: Duration,
    /// The names of the threads its calls ran on.
    pub threads: Arc<Mutex<BTreeSet<String>>>,
}

impl Service for Disk {
    fn program(&self) -> u32 {
        self.prog
    }
    fn versions(&self) -> RangeInclusive<u32> {
        1..=1
    }
    fn call(
        &self,
        _ctx: &CallContext<'_>,
        args: &[u8],
        out: &mut ReplyBody,
    ) -> Result<(), ProcError> {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.threads.lock().unwrap().insert(name);
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        out.results.extend_from_slice(args);
        Ok(())
    }
    fn blocking(&self) -> bool {
        true
    }
}
