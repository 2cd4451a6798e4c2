//! A poller thread's wakeup: an eventfd, plus the ids of transports added
//! to or closed in its group since it last looked.
#![allow(unsafe_code)]

use super::super::lock;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Wakes a thread sleeping in `poll(2)` on [`fd`](Self::fd).
#[derive(Debug)]
pub(crate) struct Wake {
    fd: OwnedFd,
    added: Mutex<Vec<u64>>,
    closed: Mutex<Vec<u64>>,
}

impl Wake {
    pub(crate) fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new
        // descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            added: Mutex::default(),
            closed: Mutex::default(),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the fd readable (cheap; any thread).
    pub(crate) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our eventfd. It can
        // only fail with EAGAIN when the counter is saturated, and then the
        // fd is readable anyway.
        let _ = unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Consumes the rings (the fd is not readable afterwards until the
    /// next ring).
    pub(crate) fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live local from our non-blocking
        // eventfd; EAGAIN when nothing rang is fine.
        let _ = unsafe { libc::read(self.fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub(crate) fn note_added(&self, id: u64) {
        lock(&self.added).push(id);
        self.ring();
    }

    pub(crate) fn note_closed(&self, id: u64) {
        lock(&self.closed).push(id);
        self.ring();
    }

    pub(crate) fn take_added(&self, out: &mut Vec<u64>) {
        out.append(&mut lock(&self.added));
    }

    pub(crate) fn take_closed(&self) -> Vec<u64> {
        std::mem::take(&mut *lock(&self.closed))
    }
}

/// Sleeps until one of `fds` is readable (no timeout: a [`Wake`] among
/// them ends the sleep). Interrupted sleeps just return.
pub(crate) fn wait_readable(fds: &[RawFd]) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds for the call.
    let _ = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, -1) };
}
