//! The NIC thread of a [`Delivery::Thread`](super::Delivery) pair: executes
//! each WR once its due time has come, then wakes the pollers.

use super::exec::{self, Step};
use super::{Pair, CQ_SLEEPERS, WORK_SLEEPERS};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use std::time::Instant;

/// Starts the thread; it holds the pair until both QPs are dropped.
pub(super) fn spawn(pair: Arc<Pair>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("mock-nic".into())
        .spawn(move || run(&pair))
        .map(|_| ())
}

fn run(pair: &Pair) {
    let mut st = pair.st.lock();
    loop {
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        let mut ran = 0usize;
        let mut next: Option<Instant> = None;
        for s in 0..2 {
            while let Some(head) = st.ends[s].sq.front() {
                let due = head.due.unwrap_or(now);
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    break;
                }
                if exec::step_one(&mut st, &pair.devs, s) != Step::Ran {
                    // Idle, or a Send waiting for a Recv: a post wakes us.
                    break;
                }
                ran += 1;
            }
        }
        if ran != 0 {
            // Under `st`: a poller that counted itself is asleep or about
            // to be, and sees the completions when it wakes.
            if pair.sleepers[CQ_SLEEPERS].load(Ordering::Relaxed) != 0 {
                pair.cq_cv.notify_all();
            }
            // Shared pollers sleep on their doorbell, not on `cq_cv`: ring
            // the notifiers too, outside the pair's lock as `notify` does.
            drop(st);
            pair.ring_notifiers();
            st = pair.st.lock();
            // One side's progress (a flush) may change the other's head.
            continue;
        }
        st = pair.sleep(WORK_SLEEPERS, st, next.map(|t| t - now));
    }
}
