//! Heap allocations per call: a global allocator that counts
//! `alloc`/`alloc_zeroed`/`realloc` calls while counting is switched on
//! (B4's run-to-completion rows), and otherwise only forwards to
//! [`System`]. A binary opts in with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: rdmaxprt_bench::alloc_count::CountingAlloc =
//!     rdmaxprt_bench::alloc_count::CountingAlloc;
//! ```
//!
//! Zeroed allocations are also reported to [`crate::copies`] as
//! zero-fills (B4's 64 KiB copy counts).
//!
//! The switch is one relaxed load per allocation, so threaded benchmarks
//! (which never switch it on) pay no shared-counter traffic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);

/// The counting allocator (forwards everything to [`System`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

fn note() {
    // Relaxed: a statistic read by the thread that switched counting on.
    if COUNTING.load(Ordering::Relaxed) {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are this allocator's.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's duties for `alloc` are `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // A zeroed allocation is a zero-fill for B4's copy counts.
        crate::copies::record_fill(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` with counting on; returns its result and the allocations
/// (`alloc`, `alloc_zeroed`, `realloc`) made meanwhile, by any thread, or
/// `None` if [`CountingAlloc`] is not the global allocator.
pub fn count<R>(f: impl FnOnce() -> R) -> (R, Option<u64>) {
    let installed = installed();
    COUNTING.store(true, Ordering::Relaxed);
    let before = COUNT.load(Ordering::Relaxed);
    let r = f();
    let n = COUNT.load(Ordering::Relaxed) - before;
    COUNTING.store(false, Ordering::Relaxed);
    (r, installed.then_some(n))
}

/// Whether [`CountingAlloc`] is the global allocator: one probe
/// allocation with counting on must be counted.
pub fn installed() -> bool {
    let was = COUNTING.swap(true, Ordering::Relaxed);
    let before = COUNT.load(Ordering::Relaxed);
    drop(std::hint::black_box(Box::new(0u64)));
    let seen = COUNT.load(Ordering::Relaxed) != before;
    COUNTING.store(was, Ordering::Relaxed);
    seen
}
