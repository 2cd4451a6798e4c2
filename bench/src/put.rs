//! B1, the completion path: time per `put` for each policy, against a bare
//! `ReleaseList::push` on a links array (the floor).
//!
//! Only the `put` calls are timed. Each of `threads` completion threads
//! builds and posts its own batch of contexts (untimed), all threads meet at
//! a spinning barrier (so they really overlap), each times `put` over its batch, and after a second barrier
//! thread 0 drains or flushes (untimed, with the unmap cost switched off so
//! cleanup stays short; the Deferred `put` never unmaps, and the Workqueue
//! workers ran at full cost during the timed window). Puts go in chunks of
//! [`CQ_BATCH`] under one `completions()` hold, as the transport's poll
//! handles a CQ batch. The result is the sum
//! of the threads' timed durations, so `total / puts` is the mean time of one
//! `put` as a completion thread sees it.

use crate::barrier::SpinBarrier;
use crate::device::CostDevice;
use crate::setup::{self, build_and_post, PolicyKind};
use crate::timing::overlap;
pub use crate::timing::Timed;
use rdmaxprt_core::lifecycle::{SendCtxtLifecycle, WorkqueuePool};
use rdmaxprt_core::llist::{Links, ReleaseList, NIL};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// One B1 configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutSpec {
    /// Policy under test; `None` for the bare-push floor.
    pub policy: Option<PolicyKind>,
    /// Unmap cost of the device.
    pub unmap: Duration,
    /// Completion threads calling `put` concurrently.
    pub threads: usize,
    /// Contexts per thread per round.
    pub batch: usize,
}

/// Rounds needed so that at least `ops` operations are timed.
pub fn rounds_for(ops: u64, threads: usize, batch: usize) -> usize {
    let per_round = (threads.max(1) * batch.max(1)) as u64;
    ops.div_ceil(per_round).max(1) as usize
}

/// Completions handled per poll batch: the transport's `poll` takes up to
/// this many Send completions from the CQ and handles them under one hold
/// of the completion lock.
pub const CQ_BATCH: usize = 16;

/// Runs `rounds` rounds on `threads` threads: `prepare(t, ids)` fills the
/// thread's ids (untimed), `op(chunk)` is timed for each chunk of up to
/// [`CQ_BATCH`] ids, `cleanup()` runs on thread 0 after every thread has
/// finished the round (untimed).
pub fn batched<P, O, C>(threads: usize, rounds: usize, prepare: P, op: O, cleanup: C) -> Timed
where
    P: Fn(usize, &mut Vec<u64>) + Sync,
    O: Fn(&[u64]) + Sync,
    C: Fn() + Sync,
{
    let threads = threads.max(1);
    let barrier = SpinBarrier::new(threads);
    type PerThread = (Duration, u64, Vec<(Instant, Instant)>);
    let per_thread: Vec<PerThread> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, prepare, op, cleanup) = (&barrier, &prepare, &op, &cleanup);
                s.spawn(move || {
                    let mut ids = Vec::new();
                    let (mut total, mut n) = (Duration::ZERO, 0u64);
                    let mut spans = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        ids.clear();
                        prepare(t, &mut ids);
                        barrier.wait();
                        let start = Instant::now();
                        for chunk in ids.chunks(CQ_BATCH) {
                            op(chunk);
                        }
                        let end = Instant::now();
                        total += end - start;
                        spans.push((start, end));
                        n += ids.len() as u64;
                        barrier.wait();
                        if t == 0 {
                            cleanup();
                        }
                        barrier.wait();
                    }
                    (total, n, spans)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let rounds_spans: Vec<Vec<(Instant, Instant)>> = (0..rounds)
        .map(|r| per_thread.iter().map(|p| p.2[r]).collect())
        .collect();
    Timed {
        total: per_thread.iter().map(|p| p.0).sum(),
        ops: per_thread.iter().map(|p| p.1).sum(),
        overlap: overlap(&rounds_spans),
    }
}

/// Times `put` on `life` (see the module docs): in chunks of [`CQ_BATCH`]
/// under one `completions()` hold each, as the transport's poll does.
pub fn time_puts<L>(life: &L, dev: &CostDevice, spec: &PutSpec, rounds: usize) -> Timed
where
    L: SendCtxtLifecycle<Dev = CostDevice>,
{
    dev.set_unmap_cost(spec.unmap);
    batched(
        spec.threads,
        rounds,
        |_, ids| {
            for _ in 0..spec.batch {
                ids.push(build_and_post(life).expect("pool sized for the batch"));
            }
        },
        |chunk| put_chunk(life, chunk),
        || {
            dev.set_unmap_cost(Duration::ZERO);
            life.flush();
            dev.set_unmap_cost(spec.unmap);
        },
    )
}

/// Times a bare `ReleaseList::push` of `batch` indices per thread (the
/// floor of any completion path that pushes on a shared list).
pub fn time_bare_push(threads: usize, batch: usize, rounds: usize) -> Timed {
    let threads = threads.max(1);
    let n = threads * batch;
    let links: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(NIL)).collect();
    let list = ReleaseList::new();
    batched(
        threads,
        rounds,
        |t, ids| ids.extend((t * batch..(t + 1) * batch).map(|i| i as u64)),
        |chunk| push_chunk(&list, &links, chunk),
        || {
            let taken = list.take_all(&links).count();
            assert_eq!(taken, n, "every pushed node comes back");
        },
    )
}

/// A link word alone on its cache line, like a pool slot's.
#[repr(align(64))]
struct SlotLink(AtomicU32);

/// Link words one cache line apart, as they sit in the pool's slots.
struct SlotLinks(Vec<SlotLink>);

impl Links for SlotLinks {
    #[inline]
    fn link(&self, idx: u32) -> &AtomicU32 {
        &self.0[idx as usize].0
    }
}

/// [`time_bare_push`] on link words laid out like the pool's slots (one
/// cache line each): the same push over the same memory footprint as a
/// `put`'s, without its validation.
pub fn time_bare_push_slots(threads: usize, batch: usize, rounds: usize) -> Timed {
    let threads = threads.max(1);
    let n = threads * batch;
    let links = SlotLinks((0..n).map(|_| SlotLink(AtomicU32::new(NIL))).collect());
    let list = ReleaseList::new();
    batched(
        threads,
        rounds,
        |t, ids| ids.extend((t * batch..(t + 1) * batch).map(|i| i as u64)),
        |chunk| push_chunk(&list, &links, chunk),
        || {
            let taken = list.take_all(&links).count();
            assert_eq!(taken, n, "every pushed node comes back");
        },
    )
}

/// One CQ batch of puts, as the transport's poll handles it. Not inlined,
/// so `callgrind --toggle-collect='*put_chunk*'` counts exactly this.
#[inline(never)]
pub fn put_chunk<L: SendCtxtLifecycle>(life: &L, chunk: &[u64]) {
    let mut cq = life.completions();
    for &id in chunk {
        if cq.put(id).is_err() {
            panic!("put rejected wr_id {id:#x}");
        }
    }
}

/// One chunk of bare pushes (the floor). Not inlined, for callgrind.
#[inline(never)]
pub fn push_chunk<L: Links + ?Sized>(list: &ReleaseList, links: &L, chunk: &[u64]) {
    for &id in chunk {
        list.push(links, id as u32);
    }
}

/// Runs one B1 configuration for `rounds` rounds on a fresh lifecycle
/// (Workqueue: [`WorkqueuePool::default_threads`] release workers).
pub fn run(spec: &PutSpec, rounds: usize) -> Timed {
    run_counting(spec, rounds).0
}

/// [`run`], also returning, for Workqueue, the worker wakeups (condvar
/// notifications) its puts caused, per put.
pub fn run_counting(spec: &PutSpec, rounds: usize) -> (Timed, Option<f64>) {
    let Some(policy) = spec.policy else {
        return (time_bare_push(spec.threads, spec.batch, rounds), None);
    };
    let dev = CostDevice::new(spec.unmap);
    let cap = u32::try_from(spec.threads.max(1) * spec.batch).expect("cap fits u32");
    match policy {
        PolicyKind::Deferred => (
            time_puts(&setup::deferred(&dev, cap), &dev, spec, rounds),
            None,
        ),
        PolicyKind::Inline => (
            time_puts(&setup::inline(&dev, cap), &dev, spec, rounds),
            None,
        ),
        PolicyKind::Workqueue => {
            let life = setup::workqueue(&dev, cap, WorkqueuePool::default_threads());
            let t = time_puts(&life, &dev, spec, rounds);
            let per_put = life.workqueue().wakeups() as f64 / t.ops.max(1) as f64;
            (t, Some(per_put))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_cover_the_requested_ops() {
        assert_eq!(rounds_for(1, 2, 4), 1);
        assert_eq!(rounds_for(0, 1, 512), 1);
        assert_eq!(rounds_for(512, 1, 512), 1);
        assert_eq!(rounds_for(513, 1, 512), 2);
        assert_eq!(rounds_for(2048, 2, 512), 2);
    }

    #[test]
    fn every_policy_and_the_floor_time_every_put() {
        for policy in [None].into_iter().chain(PolicyKind::ALL.map(Some)) {
            for threads in [1, 2] {
                let spec = PutSpec {
                    policy,
                    unmap: Duration::ZERO,
                    threads,
                    batch: 16,
                };
                let t = run(&spec, 3);
                assert_eq!(t.ops, 3 * 16 * threads as u64, "{policy:?}");
                assert!(t.scaled_to(10) <= t.total);
                assert_eq!(t.overlap.is_some(), threads == 2);
            }
        }
    }
}
