//! Payload-sized copies and zero-fills, counted per end of the B4
//! run-to-completion echo.
//!
//! The counting itself is done by the `bench-report` binary, which
//! interposes the C library's `memcpy`, `memmove` and `memset` (its
//! `copy_hooks` module) and whose global allocator
//! ([`alloc_count`](crate::alloc_count)) reports zeroed allocations: every copy, fill or
//! zeroed allocation of at least [`threshold`] bytes made by any code in
//! the process (the client, the server transport, the service, the mock
//! NIC) while a [`Phase`] is set is counted against that phase. The B4 loop
//! runs the client and the server in turns on one thread and sets the
//! phase around each, so the counts split by end. The mock NIC executes a
//! work request during its post (Inline delivery), so its copies count
//! against the end that posted: a Read or Write chunk transfer against the
//! server, the client's Send against the client.
//!
//! Without the hooks linked (any other binary) nothing is counted and
//! [`hooked`] is false.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Which end the running code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Not counted.
    Off = 0,
    /// The client end (start_call, try_wait) and what its posts run.
    Client = 1,
    /// The server end (poll, worker pass) and what its posts run.
    Server = 2,
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Off as u8);
static THRESHOLD: AtomicUsize = AtomicUsize::new(usize::MAX);
static HOOKED: AtomicBool = AtomicBool::new(false);
/// [phase][0 = copies, 1 = zero-fills]
static COUNTS: [[AtomicU64; 2]; 3] = [
    [AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0)],
];

/// Copies and zero-fills counted for each end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Payload-sized copies at the client end.
    pub client_copies: u64,
    /// Payload-sized zero-fills (memset to 0, zeroed allocations) at the
    /// client end.
    pub client_fills: u64,
    /// Payload-sized copies at the server end.
    pub server_copies: u64,
    /// Payload-sized zero-fills at the server end.
    pub server_fills: u64,
}

impl Counts {
    /// `self - before`.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            client_copies: self.client_copies - before.client_copies,
            client_fills: self.client_fills - before.client_fills,
            server_copies: self.server_copies - before.server_copies,
            server_fills: self.server_fills - before.server_fills,
        }
    }
}

/// Sets the phase the following code counts against.
pub fn set_phase(p: Phase) {
    PHASE.store(p as u8, Ordering::Relaxed);
}

/// Sets the phase if the hooks are linked (the B4 loops call this: in a
/// binary without the hooks, e.g. a test, it leaves the phase alone).
#[inline]
pub fn enter(p: Phase) {
    if hooked() {
        set_phase(p);
    }
}

/// The smallest copy or fill counted (`usize::MAX`: none).
pub fn threshold() -> usize {
    THRESHOLD.load(Ordering::Relaxed)
}

/// Counts copies and fills of at least `n` bytes from now on.
pub fn set_threshold(n: usize) {
    THRESHOLD.store(n, Ordering::Relaxed);
}

/// Whether the counting hooks are linked into this binary (they say so on
/// their first use).
pub fn hooked() -> bool {
    HOOKED.load(Ordering::Relaxed)
}

/// The counts so far.
pub fn counts() -> Counts {
    let l = |p: Phase, k: usize| COUNTS[p as usize][k].load(Ordering::Relaxed);
    Counts {
        client_copies: l(Phase::Client, 0),
        client_fills: l(Phase::Client, 1),
        server_copies: l(Phase::Server, 0),
        server_fills: l(Phase::Server, 1),
    }
}

/// For the hooks: a copy of `n` bytes happened.
#[inline]
pub fn record_copy(n: usize) {
    record(0, n);
}

/// For the hooks: a zero-fill of `n` bytes happened.
#[inline]
pub fn record_fill(n: usize) {
    record(1, n);
}

#[inline]
fn record(kind: usize, n: usize) {
    if n < THRESHOLD.load(Ordering::Relaxed) {
        return;
    }
    let p = PHASE.load(Ordering::Relaxed) as usize;
    if p != Phase::Off as usize && p < COUNTS.len() {
        COUNTS[p][kind].fetch_add(1, Ordering::Relaxed);
    }
}

/// For the hooks: they are linked.
pub fn mark_hooked() {
    if !HOOKED.load(Ordering::Relaxed) {
        HOOKED.store(true, Ordering::Relaxed);
    }
}

/// Copies and zero-fills per call of one B4 (a) loop, and what the
/// server transport counted itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerCall {
    /// Calls completed while counting.
    pub calls: u64,
    /// Payload-sized copies per call at the client end.
    pub client_copies: f64,
    /// Payload-sized zero-fills per call at the client end.
    pub client_fills: f64,
    /// Payload-sized copies per call at the server end (the mock NIC's
    /// Read and Write transfers run there).
    pub server_copies: f64,
    /// Payload-sized zero-fills per call at the server end.
    pub server_fills: f64,
    /// Mock NIC transfers of the payload per call posted by the client
    /// (the floor: its Send; the transport: none, its Send carries only
    /// the header).
    pub client_nic_transfers: f64,
    /// Mock NIC transfers of the payload per call posted by the server:
    /// Read chunks pulled and Write chunks written, from the server
    /// transport's counters (the floor: its echo Send).
    pub server_nic_transfers: f64,
    /// Bytes the server transport itself copied per call (its `copied_bytes`
    /// counter: pull-up, staging, inline parts), 0 for the floor.
    pub server_transport_bytes: f64,
}

impl PerCall {
    fn new(calls: u64, d: Counts, nic: (f64, f64), server_transport_bytes: f64) -> Self {
        let n = calls.max(1) as f64;
        Self {
            calls,
            client_copies: d.client_copies as f64 / n,
            client_fills: d.client_fills as f64 / n,
            server_copies: d.server_copies as f64 / n,
            server_fills: d.server_fills as f64 / n,
            client_nic_transfers: nic.0,
            server_nic_transfers: nic.1,
            server_transport_bytes,
        }
    }

    /// Copies per call, both ends.
    pub fn copies(&self) -> f64 {
        self.client_copies + self.server_copies
    }

    /// Mock NIC payload transfers per call, both ends.
    pub fn nic_transfers(&self) -> f64 {
        self.client_nic_transfers + self.server_nic_transfers
    }

    /// Zero-fills per call, both ends.
    pub fn fills(&self) -> f64 {
        self.client_fills + self.server_fills
    }
}

/// What [`measure`] counted: the transport with the client copying the
/// payload, with the client lending it, and the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// `start_call` / `try_wait` (the client copies the payload twice).
    pub copying: PerCall,
    /// `lend` / `start_lent` / `try_wait_lent`.
    pub lending: PerCall,
    /// The raw Send/Recv loop.
    pub floor: PerCall,
}

/// Counts the transport's `size`-byte echo with the client passing the
/// payload `path`'s way: `calls` calls after a warm-up.
fn measure_transport(
    size: usize,
    window: usize,
    calls: u64,
    path: crate::rtc::ClientPath,
) -> Option<PerCall> {
    let mut r = crate::rtc::Rtc::with_path(1, size, window, path);
    r.run_calls((window * 8) as u64);
    r.stop_filling();
    let k = |r: &crate::rtc::Rtc| {
        let c = r.conns()[0].server.counters().snapshot();
        (c.read_chunks + c.write_chunks, c.copied_bytes)
    };
    let (t0, b0) = k(&r);
    // Every call started while counting also completes while counting.
    let before = counts();
    let mut n = 0;
    while n < calls {
        n += r.turn(true, None).0;
    }
    for _ in 0..10_000 {
        if r.conns()[0].in_flight() == 0 {
            break;
        }
        n += r.turn(false, None).0;
    }
    let d = counts().since(&before);
    let (t1, b1) = k(&r);
    let per = |x: u64| x as f64 / n.max(1) as f64;
    let res = PerCall::new(n, d, (0.0, per(t1 - t0)), per(b1 - b0));
    r.finish().ok()?;
    Some(res)
}

/// Counts a `size`-byte echo over one connection with `window` calls in
/// flight: `calls` calls of the transport (run-to-completion, after a
/// warm-up) with the client copying, then lending, the payload, then as
/// many of the floor. `None` without the hooks.
pub fn measure(size: usize, window: usize, calls: u64) -> Option<Measured> {
    if !hooked() {
        return None;
    }
    set_threshold((size / 4).max(1));
    let copying = measure_transport(size, window, calls, crate::rtc::ClientPath::Copy)?;
    let lending = measure_transport(size, window, calls, crate::rtc::ClientPath::Lend)?;
    let floor = {
        let dev = rdmaxprt::mock::MockDevice::new();
        let mut pairs = [crate::rtc::RawPair::new(
            &dev,
            size,
            window,
            rdmaxprt::mock::QpConfig::default(),
        )];
        let mut warm = 0;
        while warm < (window * 8) as u64 {
            warm += crate::rtc::raw_turn(&mut pairs, true, None).0;
        }
        let before = counts();
        let mut n = 0;
        while n < calls {
            n += crate::rtc::raw_turn(&mut pairs, true, None).0;
        }
        for _ in 0..10_000 {
            if pairs[0].client.in_flight() == 0 {
                break;
            }
            n += crate::rtc::raw_turn(&mut pairs, false, None).0;
        }
        let d = counts().since(&before);
        PerCall::new(n, d, (1.0, 1.0), 0.0)
    };
    set_threshold(usize::MAX);
    Some(Measured {
        copying,
        lending,
        floor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_by_phase_and_threshold() {
        set_threshold(100);
        let before = counts();
        set_phase(Phase::Client);
        record_copy(100);
        record_copy(99);
        record_fill(1000);
        set_phase(Phase::Server);
        record_copy(4096);
        set_phase(Phase::Off);
        record_copy(4096);
        let d = counts().since(&before);
        assert_eq!(
            d,
            Counts {
                client_copies: 1,
                client_fills: 1,
                server_copies: 1,
                server_fills: 0
            }
        );
        set_threshold(usize::MAX);
    }
}
