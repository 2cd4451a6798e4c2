//! The counting hooks behind `rdmaxprt_bench::copies`: this binary defines
//! `memcpy`, `memmove` and `memset` itself (the static linker then binds
//! every call in the binary, the standard library's included, to these),
//! each forwarding to the C library's after counting a call of at least
//! the threshold (zeroed allocations are counted as zero-fills by the
//! binary's global allocator, `rdmaxprt_bench::alloc_count`). Costs one relaxed load and a
//! compare per call while nothing is measured.
#![allow(unsafe_code)]

use rdmaxprt_bench::copies;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

type CopyFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void;
type SetFn = unsafe extern "C" fn(*mut c_void, i32, usize) -> *mut c_void;

static REAL_MEMCPY: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_MEMMOVE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_MEMSET: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The C library's `name` (NUL-terminated), cached in `slot`; null while
/// it cannot be had (the lookup itself may copy: it then gets the byte
/// loops below).
fn real(slot: &AtomicPtr<c_void>, name: &[u8]) -> *mut c_void {
    let p = slot.load(Ordering::Acquire);
    if !p.is_null() {
        return p;
    }
    // Null until the lookup below returns: a copy the lookup makes itself
    // sees null and falls back to a byte loop.
    // SAFETY: `name` is NUL-terminated; RTLD_NEXT finds the next
    // definition after this binary's, the C library's.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
    slot.store(f, Ordering::Release);
    copies::mark_hooked();
    f
}

/// `memcpy`, counted.
///
/// # Safety
/// The C `memcpy` contract: `d` and `s` valid for `n` bytes, not
/// overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    copies::record_copy(n);
    let f = real(&REAL_MEMCPY, b"memcpy\0");
    if f.is_null() {
        // SAFETY: the caller's contract.
        unsafe { byte_copy(d.cast(), s.cast(), n) };
        return d;
    }
    // SAFETY: `f` is the C library's memcpy; the caller's contract.
    unsafe { std::mem::transmute::<*mut c_void, CopyFn>(f)(d, s, n) }
}

/// `memmove`, counted as a copy.
///
/// # Safety
/// The C `memmove` contract: `d` and `s` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(d: *mut c_void, s: *const c_void, n: usize) -> *mut c_void {
    copies::record_copy(n);
    let f = real(&REAL_MEMMOVE, b"memmove\0");
    if f.is_null() {
        // SAFETY: the caller's contract (overlap handled by copying
        // forward or backward).
        unsafe { byte_move(d.cast(), s.cast(), n) };
        return d;
    }
    // SAFETY: `f` is the C library's memmove; the caller's contract.
    unsafe { std::mem::transmute::<*mut c_void, CopyFn>(f)(d, s, n) }
}

/// `memset`, counted as a zero-fill when the byte is 0.
///
/// # Safety
/// The C `memset` contract: `d` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(d: *mut c_void, c: i32, n: usize) -> *mut c_void {
    if c == 0 {
        copies::record_fill(n);
    }
    let f = real(&REAL_MEMSET, b"memset\0");
    if f.is_null() {
        for i in 0..n {
            // SAFETY: the caller's contract; volatile so this loop is not
            // turned back into a memset call.
            unsafe { std::ptr::write_volatile(d.cast::<u8>().add(i), c as u8) };
        }
        return d;
    }
    // SAFETY: `f` is the C library's memset; the caller's contract.
    unsafe { std::mem::transmute::<*mut c_void, SetFn>(f)(d, c, n) }
}

/// # Safety
/// `d`, `s` valid for `n` bytes, not overlapping.
unsafe fn byte_copy(d: *mut u8, s: *const u8, n: usize) {
    for i in 0..n {
        // SAFETY: the caller's contract; volatile so this loop is not
        // turned back into a memcpy call.
        unsafe { std::ptr::write_volatile(d.add(i), std::ptr::read_volatile(s.add(i))) };
    }
}

/// # Safety
/// `d`, `s` valid for `n` bytes.
unsafe fn byte_move(d: *mut u8, s: *const u8, n: usize) {
    if (d as usize) <= (s as usize) {
        // SAFETY: forward is safe when the destination starts first.
        unsafe { byte_copy(d, s, n) };
    } else {
        for i in (0..n).rev() {
            // SAFETY: the caller's contract; backward for overlap.
            unsafe { std::ptr::write_volatile(d.add(i), std::ptr::read_volatile(s.add(i))) };
        }
    }
}
