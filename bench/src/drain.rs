//! B2, the drain: time per context released by one `Deferred::drain` of a
//! batch, against a floor of the bare list work plus the unmap itself
//! (`take_all`, then per node: the device's busy wait and a free-list push).
//!
//! Per round, untimed: build and post `batch` contexts and `put` them all.
//! Timed: the one `drain` that releases them.

use crate::device::{busy_wait, CostDevice};
use crate::setup::{self, build_and_post};
use crate::timing::Timed;
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::llist::{FreeList, LockedFreeList, ReleaseList, NIL};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// Times `rounds` drains of `batch` contexts each at unmap cost `unmap`.
/// `ops` counts contexts released.
pub fn time_drain(batch: usize, unmap: Duration, rounds: usize) -> Timed {
    let dev = CostDevice::new(unmap);
    let cap = u32::try_from(batch.max(1)).expect("batch fits u32");
    let life = setup::deferred(&dev, cap);
    let mut ids = Vec::with_capacity(batch);
    let (mut total, mut ops) = (Duration::ZERO, 0u64);
    for _ in 0..rounds {
        ids.clear();
        for _ in 0..batch {
            ids.push(build_and_post(&life).expect("pool sized for the batch"));
        }
        for &id in &ids {
            life.put(id).expect("valid wr_id");
        }
        let start = Instant::now();
        let n = life.drain();
        total += start.elapsed();
        assert_eq!(n, batch, "drain releases the whole batch");
        ops += n as u64;
    }
    Timed::single(total, ops)
}

/// The floor: `take_all` of `batch` nodes, then for each node the unmap
/// busy wait and a push onto a `LockedFreeList`.
pub fn time_drain_floor(batch: usize, unmap: Duration, rounds: usize) -> Timed {
    let links: Vec<AtomicU32> = (0..batch).map(|_| AtomicU32::new(NIL)).collect();
    let release = ReleaseList::new();
    let free = LockedFreeList::default();
    let (mut total, mut ops) = (Duration::ZERO, 0u64);
    for _ in 0..rounds {
        for i in 0..batch {
            release.push(&links, i as u32);
        }
        let start = Instant::now();
        let mut n = 0;
        for idx in release.take_all(&links) {
            busy_wait(unmap);
            free.push(&links, idx);
            n += 1;
        }
        total += start.elapsed();
        // Empty the free list again (untimed).
        while free.pop(&links).is_some() {}
        assert_eq!(n, batch);
        ops += n as u64;
    }
    Timed::single(total, ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_and_floor_count_every_context() {
        for batch in [1, 8] {
            assert_eq!(time_drain(batch, Duration::ZERO, 2).ops, 2 * batch as u64);
            assert_eq!(
                time_drain_floor(batch, Duration::ZERO, 2).ops,
                2 * batch as u64
            );
        }
    }
}
