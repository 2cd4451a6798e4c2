//! A spinning barrier, so the threads of a multi-threaded measurement start
//! their timed regions together: `std::sync::Barrier` parks and wakes
//! through the kernel, and the wake-up skew (tens of microseconds) can be
//! longer than a whole timed batch, which would let the threads run one
//! after the other instead of contending.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Spins (then yields, if a participant seems descheduled) until `n`
/// threads have called [`wait`](SpinBarrier::wait). Reusable.
#[derive(Debug)]
pub struct SpinBarrier {
    n: usize,
    count: AtomicUsize,
    generation: AtomicUsize,
}

/// Spins before falling back to `yield_now` (on an oversubscribed machine a
/// pure spin could wait a whole time slice for a descheduled thread).
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

impl SpinBarrier {
    /// A barrier for `n` threads (at least 1).
    pub fn new(n: usize) -> Self {
        Self {
            n: n.max(1),
            count: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Waits for all `n` threads; returns `true` on exactly one of them (the
    /// last to arrive).
    pub fn wait(&self) -> bool {
        let gen = self.generation.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            // Reset before opening: the next phase's arrivals only start
            // after they see the new generation (Acquire pairs with this
            // Release), so they see count == 0.
            self.count.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return true;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == gen {
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn no_thread_passes_a_phase_before_all_arrive() {
        const T: usize = 3;
        const PHASES: u64 = 200;
        let b = SpinBarrier::new(T);
        let arrived = AtomicU64::new(0);
        let leaders = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..T {
                s.spawn(|| {
                    for phase in 0..PHASES {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        if b.wait() {
                            leaders.fetch_add(1, Ordering::SeqCst);
                        }
                        // Everyone of this phase has arrived.
                        assert!(arrived.load(Ordering::SeqCst) >= (phase + 1) * T as u64);
                        b.wait();
                    }
                });
            }
        });
        assert_eq!(leaders.load(Ordering::SeqCst), PHASES);
    }
}
