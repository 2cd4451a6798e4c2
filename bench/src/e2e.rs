//! What B4 and B5 share: the echo program, the call shape per payload
//! size, process CPU time, latency percentiles and the result of one run.

use rdmaxprt::client::{CallOptions, ReplyBytes};
use std::time::Duration;

#[path = "../../examples/common/echo.rs"]
mod echo_prog;

pub use echo_prog::{PROC_ECHO, PROC_ECHO_BULK, PROG, VERS};

/// Payloads above this many bytes are echoed through chunks (the call
/// through a Position Zero Read chunk, the reply through a Write chunk);
/// smaller ones travel inline both ways.
pub const INLINE_MAX: usize = 512;

/// The echo service the benches serve (the examples' echo program).
pub type EchoService = echo_prog::Echo;

/// How a call of `size` payload bytes is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Payload bytes (each way).
    pub size: usize,
    /// The procedure.
    pub proc: u32,
    /// The arguments (the payload itself).
    pub args: Vec<u8>,
    /// Write chunk offered for the reply, if any.
    pub write_chunk: Option<u32>,
}

impl Payload {
    /// Inline echo up to [`INLINE_MAX`] bytes; above, ECHO_BULK with a
    /// Write chunk of exactly `size` bytes for the reply (the client then
    /// sends the call through a Position Zero Read chunk by itself).
    pub fn new(size: usize) -> Self {
        let args = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        if size > INLINE_MAX {
            Self {
                size,
                proc: PROC_ECHO_BULK,
                args,
                write_chunk: Some(size as u32),
            }
        } else {
            Self {
                size,
                proc: PROC_ECHO,
                args,
                write_chunk: None,
            }
        }
    }

    /// The call options.
    pub fn opts(&self) -> CallOptions<'static> {
        CallOptions {
            write_chunk: self.write_chunk,
            ..CallOptions::default()
        }
    }

    /// Whether `r` echoes the payload (length checked: the content is the
    /// transport tests' business, and comparing would add a copy-sized
    /// cost the floor does not pay).
    pub fn check(&self, r: &ReplyBytes) -> bool {
        if self.write_chunk.is_some() {
            r.bulk.as_ref().is_some_and(|b| b.len() == self.size)
        } else {
            r.results.len() == self.size
        }
    }

    /// How the payload travels, for the report.
    pub fn path(&self) -> &'static str {
        if self.write_chunk.is_some() {
            "call: Position Zero Read chunk; reply: Write chunk"
        } else {
            "inline both ways"
        }
    }
}

/// User + system CPU time of the whole process so far (both ends of every
/// connection, all threads).
pub fn process_cpu() -> Duration {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; getrusage only writes it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let t = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The `q`-quantile (0..=1) of `sorted` by nearest rank; `None` if empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What one B4 run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct E2eResult {
    /// Calls completed (reply checked) inside the timed window.
    pub calls: u64,
    /// Calls that failed or came back wrong.
    pub errors: u64,
    /// The timed window.
    pub wall: Duration,
    /// Process CPU time (user + sys, every thread) in the window.
    pub cpu: Duration,
    /// Per-call latency, ns, sorted.
    pub lat_ns: Vec<u64>,
    /// Heap allocations in the window (run-to-completion runs under
    /// [`CountingAlloc`](crate::alloc_count::CountingAlloc); else `None`).
    pub allocs: Option<u64>,
}

impl E2eResult {
    /// Builds a result; sorts the latencies.
    pub fn new(calls: u64, errors: u64, wall: Duration, cpu: Duration, mut lat: Vec<u64>) -> Self {
        lat.sort_unstable();
        Self {
            calls,
            errors,
            wall,
            cpu,
            lat_ns: lat,
            allocs: None,
        }
    }

    /// Heap allocations per call, if they were counted.
    pub fn allocs_per_call(&self) -> Option<f64> {
        let n = self.allocs?;
        (self.calls != 0).then(|| n as f64 / self.calls as f64)
    }

    /// Calls per second.
    pub fn rate(&self) -> f64 {
        if self.wall.is_zero() {
            return f64::NAN;
        }
        self.calls as f64 / self.wall.as_secs_f64()
    }

    /// CPU ns per call (both ends).
    pub fn cpu_ns_per_call(&self) -> f64 {
        crate::summary::ns_per(self.cpu, self.calls)
    }

    /// Latency quantile in ns (NaN without calls).
    pub fn lat(&self, q: f64) -> f64 {
        percentile(&self.lat_ns, q).map_or(f64::NAN, |v| v as f64)
    }
}

/// One record per call: the time it was started.
pub(crate) fn elapsed_ns(since: std::time::Instant) -> u64 {
    since.elapsed().as_nanos().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        // p99 of 10 values is the largest.
        let w: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&w, 0.99), Some(10));
        assert_eq!(percentile(&w, 0.5), Some(5));
    }

    #[test]
    fn payload_shapes() {
        let small = Payload::new(64);
        assert_eq!((small.proc, small.write_chunk), (PROC_ECHO, None));
        assert_eq!(small.args.len(), 64);
        let big = Payload::new(64 << 10);
        assert_eq!(big.proc, PROC_ECHO_BULK);
        assert_eq!(big.write_chunk, Some(64 << 10));
        assert_eq!(big.opts().write_chunk, Some(64 << 10));
    }

    #[test]
    fn result_rates_and_cpu_time_moves() {
        let r = E2eResult::new(
            1000,
            0,
            Duration::from_millis(10),
            Duration::from_micros(500),
            vec![3, 1, 2],
        );
        assert_eq!(r.lat_ns, vec![1, 2, 3]);
        assert!((r.rate() - 100_000.0).abs() < 1e-6);
        assert!((r.cpu_ns_per_call() - 500.0).abs() < 1e-9);
        assert_eq!(r.lat(0.5), 2.0);
        let c0 = process_cpu();
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        assert!(process_cpu() > c0, "30 ms of spinning shows up as CPU time");
    }
}
