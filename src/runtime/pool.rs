//! The thread pool's ready queue (`svc_pool`): transports (and handed-off
//! calls) waiting for a worker, and the idle workers waiting for them.
//!
//! It wakes as the kernel's pool does, not once per enqueue:
//! - a worker that finishes a pass takes the next queued job before it
//!   sleeps (`svc_recv` dequeues first), so a busy pool wakes nobody;
//! - an enqueue wakes at most one idle worker, and not while a woken one
//!   is still on its way to the queue (`svc_pool_wake_idle_thread` with
//!   `SP_TASK_PENDING`): a burst of enqueues from one poll costs one
//!   wakeup, not one per transport;
//! - a woken worker that finds more jobs behind the one it takes wakes the
//!   next idle worker (`svc_recv`'s "more work: wake another thread").
//!
//! Beyond the kernel, the queue knows which workers will look at it soon:
//! those running a pass (not asleep, and not inside a call of a
//! [`blocking`](crate::service::Service::blocking) program, see
//! [`ReadyQueue::blocking`]). An enqueue wakes an idle worker only if the
//! queue then holds more jobs than such lookers (counting the woken ones
//! still on their way): a transport queued while a worker is in its pass
//! waits the rest of that pass instead of costing a wakeup, and two
//! workers do not end up posting on one QP for one connection's calls.
//!
//! No notify is made while no worker sleeps (std's `Condvar::notify_one`
//! always makes a futex system call).

use super::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

struct State<T> {
    jobs: VecDeque<T>,
    /// Worker threads taking jobs from this queue (see
    /// [`ReadyQueue::worker`]).
    workers: usize,
    /// Workers asleep on the condvar (changed under the lock only).
    idle: usize,
    /// Workers inside a call of a blocking program (not counted on to
    /// look at the queue soon).
    blocking: usize,
    /// Workers notified that have not taken the lock since
    /// (`SP_TASK_PENDING`, counted): each will look at the queue.
    waking: usize,
    /// Set at shutdown: sleeping workers return.
    exit: bool,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        Self {
            jobs: VecDeque::new(),
            workers: 0,
            idle: 0,
            blocking: 0,
            waking: 0,
            exit: false,
        }
    }
}

impl<T> State<T> {
    /// Workers that will look at the queue soon: running a pass (not
    /// idle, not in a blocking call), less `taker` if the caller is one of
    /// them and just took a job, plus the ones woken and on their way.
    fn lookers(&self, taker: bool) -> usize {
        let running = self.workers.saturating_sub(self.idle + self.blocking);
        running.saturating_sub(usize::from(taker)) + self.waking
    }
}

/// The ready queue of a server's worker threads (`T`: the runtime's `Job`).
pub(crate) struct ReadyQueue<T> {
    st: Mutex<State<T>>,
    cv: Condvar,
    /// Times a worker woke from its sleep and took a job.
    pub(crate) wakeups: AtomicU64,
    /// Notifies made (each woke at most one sleeping worker).
    pub(crate) notifies: AtomicU64,
    /// Run by a worker before it sleeps (without the lock; the queue is
    /// looked at again after it).
    before_sleep: fn(),
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        Self::new(|| {})
    }
}

impl<T> std::fmt::Debug for ReadyQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyQueue").finish_non_exhaustive()
    }
}

impl<T> ReadyQueue<T> {
    /// A queue whose workers run `before_sleep` before they sleep.
    pub(crate) fn new(before_sleep: fn()) -> Self {
        Self {
            st: Mutex::default(),
            cv: Condvar::new(),
            wakeups: AtomicU64::new(0),
            notifies: AtomicU64::new(0),
            before_sleep,
        }
    }

    /// Wakes one idle worker if the queue holds more jobs than workers
    /// that will look at it soon (`taker`: the caller is a worker that
    /// just took a job); returns whether it woke one.
    fn wake_idle(&self, s: &mut State<T>, taker: bool) -> bool {
        if s.idle > s.waking && s.jobs.len() > s.lookers(taker) {
            s.waking += 1;
            self.notifies.fetch_add(1, Ordering::Relaxed);
            self.cv.notify_one();
            return true;
        }
        false
    }

    /// Queues `job` (`svc_xprt_enqueue`'s list add) and wakes an idle
    /// worker if one is needed; returns whether it woke one.
    pub(crate) fn push(&self, job: T) -> bool {
        let mut s = lock(&self.st);
        s.jobs.push_back(job);
        self.wake_idle(&mut s, false)
    }

    /// Registers the calling thread as a worker of this queue until the
    /// guard drops (at its exit, or if it unwinds).
    pub(crate) fn worker(&self) -> WorkerGuard<'_, T> {
        lock(&self.st).workers += 1;
        WorkerGuard(self)
    }

    /// Marks the calling worker as inside a call of a blocking program
    /// until the guard drops: it may not look at the queue for long, so
    /// jobs queued meanwhile (and any already queued) wake another worker.
    pub(crate) fn blocking(&self) -> BlockingGuard<'_, T> {
        let mut s = lock(&self.st);
        s.blocking += 1;
        self.wake_idle(&mut s, false);
        BlockingGuard(self)
    }

    /// A worker's next job: the queued one if any, else sleeps until one
    /// is queued. `None` at shutdown.
    pub(crate) fn take(&self) -> Option<T> {
        let mut s = lock(&self.st);
        let mut slept = false;
        let mut prepared = false;
        loop {
            if let Some(j) = s.jobs.pop_front() {
                if slept {
                    self.wakeups.fetch_add(1, Ordering::Relaxed);
                }
                self.wake_idle(&mut s, true);
                return Some(j);
            }
            if !prepared {
                drop(s);
                (self.before_sleep)();
                prepared = true;
                s = lock(&self.st);
                continue;
            }
            if s.exit {
                return None;
            }
            s.idle += 1;
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            s.idle -= 1;
            // Whoever was notified (or woke spuriously) now looks.
            s.waking = s.waking.saturating_sub(1);
            slept = true;
            prepared = false;
        }
    }

    /// The job to run after a pass over a transport: the queued job that
    /// is `same` transport again (its next call arrived and
    /// `svc_xprt_received` queued it) if this worker took it fewer than
    /// `max` times in a row (`streak`), else the queue's head as
    /// [`take`](Self::take) gives it. `same` names the transport by id:
    /// the caller holds no reference to it, so a worker asleep here never
    /// keeps a closed transport alive.
    pub(crate) fn take_after(
        &self,
        same: impl Fn(&T) -> bool,
        streak: &mut usize,
        max: usize,
    ) -> Option<T> {
        if *streak < max {
            let mut s = lock(&self.st);
            // From the back: `svc_xprt_received` queued it during the
            // pass, behind the transports queued before.
            let at = s.jobs.iter().rposition(same);
            if let Some(j) = at.and_then(|i| s.jobs.remove(i)) {
                *streak += 1;
                self.wake_idle(&mut s, true);
                return Some(j);
            }
        }
        *streak = 0;
        self.take()
    }

    /// Makes every worker return from [`take`](Self::take) once the queue
    /// is empty.
    pub(crate) fn stop(&self) {
        lock(&self.st).exit = true;
        self.cv.notify_all();
    }
}

/// A registered worker (see [`ReadyQueue::worker`]).
pub(crate) struct WorkerGuard<'a, T>(&'a ReadyQueue<T>);

impl<T> Drop for WorkerGuard<'_, T> {
    fn drop(&mut self) {
        let mut s = lock(&self.0.st);
        s.workers -= 1;
        // A worker that unwinds leaves its queued jobs to the others.
        self.0.wake_idle(&mut s, false);
    }
}

/// A worker inside a blocking call (see [`ReadyQueue::blocking`]).
pub(crate) struct BlockingGuard<'a, T>(&'a ReadyQueue<T>);

impl<T> Drop for BlockingGuard<'_, T> {
    fn drop(&mut self) {
        lock(&self.0.st).blocking -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Waits (bounded) until `n` workers sleep on `q`.
    fn until_idle<T>(q: &ReadyQueue<T>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&q.st).idle != n {
            assert!(Instant::now() < deadline, "workers never went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_enqueue_with_no_worker_asleep_notifies_no_one() {
        let q = ReadyQueue::default();
        for i in 0..10u32 {
            q.push(i);
        }
        assert_eq!(q.notifies.load(Ordering::Relaxed), 0);
        // A busy worker takes them in order without sleeping.
        let got: Vec<u32> = (0..10).filter_map(|_| q.take()).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(q.wakeups.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_burst_of_enqueues_wakes_one_sleeping_worker_once() {
        use std::sync::atomic::AtomicBool;
        let q = Arc::new(ReadyQueue::default());
        // The worker holds its first job until the burst is queued, so it
        // cannot drain the queue and sleep again in between.
        let go = Arc::new(AtomicBool::new(false));
        let w = {
            let (q, go) = (q.clone(), go.clone());
            std::thread::spawn(move || {
                let _w = q.worker();
                let mut n = 0;
                while q.take().is_some() {
                    while !go.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    n += 1;
                }
                n
            })
        };
        until_idle(&q, 1);
        // However the worker's wakeup interleaves with the pushes, one
        // notify: either it is still on its way (waking), or it is awake
        // and not idle.
        for i in 0..8u32 {
            q.push(i);
        }
        go.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lock(&q.st).jobs.is_empty() {
            assert!(Instant::now() < deadline, "the worker never took the burst");
            std::thread::sleep(Duration::from_millis(1));
        }
        until_idle(&q, 1);
        q.stop();
        assert_eq!(w.join().unwrap(), 8);
        assert_eq!(q.notifies.load(Ordering::Relaxed), 1);
        assert_eq!(q.wakeups.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_woken_worker_with_jobs_behind_its_own_wakes_the_next() {
        use std::sync::atomic::AtomicUsize;
        let q = Arc::new(ReadyQueue::default());
        // Each job holds its worker until both jobs started: one worker
        // alone would never get past its first.
        let started = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, started) = (q.clone(), started.clone());
                std::thread::spawn(move || {
                    let _w = q.worker();
                    while q.take().is_some() {
                        started.fetch_add(1, Ordering::SeqCst);
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while started.load(Ordering::SeqCst) < 2 {
                            assert!(Instant::now() < deadline, "the second job never started");
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                })
            })
            .collect();
        until_idle(&q, 2);
        // Queued under one lock, as a poll's batch of enqueues can be
        // before either worker runs.
        {
            let mut s = lock(&q.st);
            s.jobs.extend([1u32, 2]);
            q.wake_idle(&mut s, false);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        until_idle(&q, 2);
        q.stop();
        for w in workers {
            assert!(w.join().is_ok(), "a worker failed");
        }
        assert_eq!(q.wakeups.load(Ordering::Relaxed), 2);
        assert_eq!(q.notifies.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn after_a_pass_the_same_transport_is_taken_again_up_to_the_streak() {
        let q = ReadyQueue::default();
        for j in [1u32, 2, 7, 3] {
            q.push(j);
        }
        let mut streak = 0;
        let same = |j: &u32| *j == 7;
        assert_eq!(q.take_after(same, &mut streak, 1), Some(7));
        assert_eq!(streak, 1);
        q.push(7);
        // The streak is spent: the head, and the count starts over.
        assert_eq!(q.take_after(same, &mut streak, 1), Some(1));
        assert_eq!(streak, 0);
        // Not queued: the head.
        assert_eq!(q.take_after(|j| *j == 9, &mut streak, 8), Some(2));
        assert_eq!(q.take_after(same, &mut streak, 8), Some(7));
        assert_eq!(q.take(), Some(3));
    }

    /// One sleeping worker, and the main thread registered as a worker
    /// that is running (in a pass: it will look at the queue).
    fn one_asleep_one_running() -> (Arc<ReadyQueue<u32>>, std::thread::JoinHandle<Vec<u32>>) {
        let q = Arc::new(ReadyQueue::default());
        let w = {
            let q = q.clone();
            std::thread::spawn(move || {
                let _w = q.worker();
                let mut took = Vec::new();
                while let Some(j) = q.take() {
                    took.push(j);
                }
                took
            })
        };
        until_idle(&q, 1);
        (q, w)
    }

    #[test]
    fn a_job_queued_while_a_worker_runs_a_pass_waits_for_it() {
        let (q, w) = one_asleep_one_running();
        let me = q.worker();
        // One job, one worker that will look: no wakeup.
        assert!(!q.push(1));
        assert_eq!(q.notifies.load(Ordering::Relaxed), 0);
        // Two jobs, one looker: the sleeper is woken for the second.
        assert!(q.push(2));
        assert_eq!(q.notifies.load(Ordering::Relaxed), 1);
        // The running worker leaves without taking one: the other takes
        // both (its guard wakes it if needed).
        drop(me);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lock(&q.st).jobs.is_empty() {
            assert!(Instant::now() < deadline, "the jobs were never taken");
            std::thread::sleep(Duration::from_millis(1));
        }
        until_idle(&q, 1);
        q.stop();
        assert_eq!(w.join().unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_worker_in_a_blocking_call_is_not_counted_on_to_look() {
        let (q, w) = one_asleep_one_running();
        let me = q.worker();
        let blocking = q.blocking();
        assert!(q.push(1), "the blocked worker will not look soon");
        until_idle(&q, 1);
        drop(blocking);
        drop(me);
        q.stop();
        assert_eq!(w.join().unwrap(), vec![1]);
        assert_eq!(q.notifies.load(Ordering::Relaxed), 1);
    }
}
