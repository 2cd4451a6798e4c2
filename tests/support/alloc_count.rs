//! A counting global allocator for the suites that pin heap traffic: it
//! counts the current thread's allocations (`alloc`, and `alloc_zeroed` /
//! `realloc` through their default methods) and frees while armed.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAlloc;
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static FREES: Cell<u64> = const { Cell::new(0) };
}
// SAFETY: defers every operation to the system allocator unchanged; the
// bookkeeping touches only const-initialized thread-locals (no allocation,
// no reentrancy).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if ARMED.with(Cell::get) {
            FREES.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: CountingAlloc = CountingAlloc;

/// Runs `f` armed; its result, and the allocations and frees this thread
/// made meanwhile.
fn count<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCS.with(|c| c.set(0));
    FREES.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, ALLOCS.with(Cell::get), FREES.with(Cell::get))
}

/// Runs `f`; its result and the allocations this thread made meanwhile.
pub fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let (r, a, _) = count(f);
    (r, a)
}

/// Runs `f`; its result and the allocations plus frees this thread made
/// meanwhile (any heap traffic).
pub fn count_heap_ops<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let (r, a, d) = count(f);
    (r, a + d)
}
