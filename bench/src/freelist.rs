//! B6, free-list pop: `LockedFreeList` (lock-free push, spin-lock-serialized
//! pop: the kernel's design) against `TaggedFreeList` (generation-tagged
//! head, lock-free both ways), as pop+push pairs on 1 or 2 threads.
//!
//! Floor: two `fetch_add`s on one shared atomic per pair, the least any
//! shared-head list can do for a pop and a push.

use crate::barrier::SpinBarrier;
use crate::timing::{overlap, Timed};
use rdmaxprt_core::llist::{FreeList, LockedFreeList, TaggedFreeList, NIL};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Nodes on the list while it is measured (more than threads, so a pop
/// never finds it empty).
pub const NODES: usize = 64;

/// Which list B6 measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// [`LockedFreeList`].
    Locked,
    /// [`TaggedFreeList`].
    Tagged,
    /// The floor: two shared `fetch_add`s.
    Floor,
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListKind::Locked => "locked",
            ListKind::Tagged => "tagged",
            ListKind::Floor => "floor (2 shared RMWs)",
        })
    }
}

fn on_threads(threads: usize, per_thread: u64, body: impl Fn(u64) + Sync) -> Timed {
    let threads = threads.max(1);
    let barrier = SpinBarrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, body) = (&barrier, &body);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    body(per_thread);
                    (start, Instant::now())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    Timed {
        total: spans.iter().map(|&(a, b)| b - a).sum(),
        ops: per_thread * threads as u64,
        overlap: overlap(&[spans]),
    }
}

fn time_list<F: FreeList + Default>(threads: usize, per_thread: u64) -> Timed {
    let links: Vec<AtomicU32> = (0..NODES).map(|_| AtomicU32::new(NIL)).collect();
    let list = F::default();
    for i in 0..NODES as u32 {
        list.push(&links, i);
    }
    on_threads(threads, per_thread, |n| {
        for _ in 0..n {
            let idx = list.pop(&links).expect("never empty");
            list.push(&links, idx);
        }
    })
}

/// Times `per_thread` pop+push pairs on each of `threads` threads; `ops`
/// counts pairs.
pub fn time_pairs(kind: ListKind, threads: usize, per_thread: u64) -> Timed {
    match kind {
        ListKind::Locked => time_list::<LockedFreeList>(threads, per_thread),
        ListKind::Tagged => time_list::<TaggedFreeList>(threads, per_thread),
        ListKind::Floor => {
            let head = AtomicU64::new(0);
            on_threads(threads, per_thread, |n| {
                for _ in 0..n {
                    head.fetch_add(1, Ordering::AcqRel);
                    head.fetch_add(1, Ordering::AcqRel);
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_counted_per_thread() {
        for kind in [ListKind::Locked, ListKind::Tagged, ListKind::Floor] {
            assert_eq!(time_pairs(kind, 2, 1000).ops, 2000);
        }
    }
}
