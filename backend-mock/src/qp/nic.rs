//! The NIC thread of a [`Delivery::Thread`](super::Delivery) pair: executes
//! each WR once its due time has come, then wakes the pollers.

use super::exec::{self, Step};
use super::Pair;
use alloc::sync::Arc;
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
            pair.cq_cv.notify_all();
            // Pollers behind a completion notifier (a runtime poller
            // serving many QPs) are rung too, outside the lock: a notifier
            // may poll.
            let ns = pair
                .notifiers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if ns.iter().any(Option::is_some) {
                drop(st);
                for n in ns.iter().flatten() {
                    n();
                }
                st = pair.st.lock();
            }
            // One side's progress (a flush) may change the other's head.
            continue;
        }
        st = match next {
            Some(t) => crate::lock::wait_timeout(&pair.work_cv, st, t - now),
            None => crate::lock::wait(&pair.work_cv, st),
        };
    }
}
