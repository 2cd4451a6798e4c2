//! Loom models of the Deferred lifecycle and the SQ accounting: the
//! backstop (no lost wakeup), `get` draining while `put` pushes, close
//! racing with Send Queue waiters, and a `get` at the cap woken by whichever
//! side of a completion-before-commit race queues the release.
#![cfg(rdmaxprt_loom)]

mod common;
#[path = "common/loom_model.rs"]
mod loom_model;

use common::FakeDev;
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;
use rdmaxprt_core::backend::{ErrorKind, PostError};
use rdmaxprt_core::lifecycle::{Committed, Deferred, GetError, Inline, SendCtxtLifecycle};
use rdmaxprt_core::pool::{CompletionError, PoolConfig};
use rdmaxprt_core::sq::{Reserved, SqAccount, SqClosed};
use rdmaxprt_core::wait::{CondvarWait, WaitQueue};
use rdmaxprt_core::xprt::{Enqueue, XprtFlags};
use std::sync::atomic::Ordering;

/// The runtime's side: `svc_xprt_enqueue` schedules a worker only if DATA
/// is set and it can take BUSY (`svc_xprt_ready`); `pending` counts
/// scheduled worker runs not yet started.
#[derive(Debug, Default)]
struct Rt {
    flags: XprtFlags,
    pending: AtomicUsize,
}

impl Enqueue for Rt {
    fn flags(&self) -> &XprtFlags {
        &self.flags
    }
    fn enqueue(&self) {
        if self.flags.test(XprtFlags::DATA) && self.flags.test_and_set(XprtFlags::BUSY) {
            self.pending.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// The enqueue handle is a plain std Arc: its refcount is not under test.
type RtHandle = std::sync::Arc<Rt>;
type Life = Deferred<FakeDev, RtHandle>;

/// One worker pass on a transport whose BUSY it holds: recvfrom finds no
/// receive and clears DATA (and would re-check the receive queues), the
/// release step drains, then BUSY is dropped and the transport re-enqueued
/// if DATA came back (`svc_xprt_received`).
fn worker_pass(life: &Life, rt: &Rt) {
    rt.flags.clear(XprtFlags::DATA);
    life.drain();
    rt.flags.clear(XprtFlags::BUSY);
    rt.enqueue();
}

fn cfg(cap: u32) -> PoolConfig {
    PoolConfig {
        cap,
        hdr_size: 16,
        max_sges: 2,
        xprt_id: 0,
    }
}

fn posted(life: &Life) -> u64 {
    let c = life.get().expect("under the cap");
    let mut id = 0;
    c.post(|w, _| {
        id = w;
        Ok::<_, PostError<ErrorKind>>(())
    })
    .expect("post");
    id
}

/// Two Send completions race with a worker finishing an RPC on the same
/// transport. In every interleaving: once all threads are done, either the
/// release list is empty or an enqueue is pending; and running the pending
/// work empties it (released within one wakeup, no further RPC).
#[test]
fn backstop_never_leaves_contexts_without_a_pending_enqueue() {
    loom_model::check(
        "backstop_never_leaves_contexts_without_a_pending_enqueue",
        || {
            let rt = RtHandle::default();
            let life = Arc::new(Life::new(FakeDev::default(), cfg(2), rt.clone()));
            let ids = [posted(&life), posted(&life)];
            // A worker is mid-RPC on this transport.
            assert!(rt.flags.test_and_set(XprtFlags::BUSY));

            let completions: Vec<_> = ids
                .into_iter()
                .map(|id| {
                    let life = life.clone();
                    thread::spawn(move || life.put(id).expect("valid completion"))
                })
                .collect();
            let worker = {
                let (life, rt) = (life.clone(), rt.clone());
                thread::spawn(move || {
                    worker_pass(&life, &rt);
                    // Serve one scheduled run if there already is one.
                    if rt.pending.load(Ordering::SeqCst) > 0 {
                        rt.pending.fetch_sub(1, Ordering::SeqCst);
                        worker_pass(&life, &rt);
                    }
                })
            };
            for c in completions {
                c.join().unwrap();
            }
            worker.join().unwrap();

            let pending = rt.pending.load(Ordering::SeqCst);
            assert!(
                !life.pool().has_pending_release() || pending > 0,
                "lost wakeup: contexts on the release list, no worker, no enqueue pending"
            );
            // Run what the runtime would run.
            let mut runs = 0;
            while rt.pending.load(Ordering::SeqCst) > 0 {
                rt.pending.fetch_sub(1, Ordering::SeqCst);
                worker_pass(&life, &rt);
                runs += 1;
                assert!(
                    runs <= 2,
                    "the backstop keeps re-enqueuing an idle transport"
                );
            }
            assert!(!life.pool().has_pending_release());
            assert_eq!(life.pool().census().free, 2, "both contexts released");
        },
    );
}

/// `get` on an empty free list drains while a completion pushes and a
/// worker's `release_ctxt` drains too: the get
/// either recycles the completed context or reports the cap; it never
/// allocates past the cap, never touches a context the completion path
/// still owns (loom's cell tracking), and nothing is lost.
#[test]
fn get_draining_while_put_pushes() {
    loom_model::check("get_draining_while_put_pushes", || {
        let rt = RtHandle::default();
        let life = Arc::new(Life::new(FakeDev::default(), cfg(2), rt.clone()));
        let ids = [posted(&life), posted(&life)];
        let completer = {
            let life = life.clone();
            thread::spawn(move || {
                for id in ids {
                    life.put(id).unwrap();
                }
            })
        };
        // A worker's release_ctxt drains concurrently with get's own drain.
        let drainer = {
            let life = life.clone();
            thread::spawn(move || {
                life.drain();
            })
        };
        let getter = {
            let life = life.clone();
            thread::spawn(move || match life.get() {
                Ok(c) => {
                    drop(c);
                    true
                }
                Err(GetError::AtCap) => false,
                Err(e) => panic!("unexpected get error {e}"),
            })
        };
        completer.join().unwrap();
        drainer.join().unwrap();
        let _ = getter.join().unwrap();
        life.drain();
        let c = life.pool().census();
        assert_eq!(c.allocated, 2, "allocated past the cap");
        assert_eq!(c.free, 2, "a context was lost: {c:?}");
    });
}

/// The completion path validates with plain loads under the completion
/// lock. Two completion threads deliver the same `wr_id` of a posted
/// context (a duplicate): exactly one claims it, the other gets a typed
/// error and touches nothing, and the context is released once (loom's cell
/// tracking fails the model if two threads ever own it).
#[test]
fn duplicate_completions_race_each_other() {
    loom_model::check("duplicate_completions_race_each_other", || {
        let rt = RtHandle::default();
        let life = Arc::new(Life::new(FakeDev::default(), cfg(1), rt.clone()));
        let w = posted(&life);
        let handlers: Vec<_> = (0..2)
            .map(|_| {
                let life = life.clone();
                thread::spawn(move || life.put(w))
            })
            .collect();
        let results: Vec<_> = handlers.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "exactly one completion claims it: {results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(CompletionError::NotPosted(_)))),
            "{results:?}"
        );
        life.drain();
        let c = life.pool().census();
        assert_eq!((c.allocated, c.free), (1, 1), "released once: {c:?}");
        assert_eq!(life.stats().snapshot().bad_completions, 1);
    });
}

/// A completion races the poster (before `begin_post`, while POSTING, or
/// after the commit): the POSTING case settles with the poster by CAS
/// (EARLY: the poster releases), the others are plain. In every
/// interleaving the context is released exactly once.
#[test]
fn completion_races_the_poster() {
    loom_model::check("completion_races_the_poster", || {
        let rt = RtHandle::default();
        let life = Arc::new(Life::new(FakeDev::default(), cfg(1), rt.clone()));
        // Slot 0's first take has generation 1: the wr_id the post will
        // carry, known before it happens.
        let w = 1u64 << 32;
        let poster = {
            let life = life.clone();
            thread::spawn(move || assert_eq!(posted(&life), w))
        };
        let handler = {
            let life = life.clone();
            thread::spawn(move || life.put(w))
        };
        let early = handler.join().unwrap();
        poster.join().unwrap();
        if early.is_err() {
            // It came before the post began: the real completion follows.
            assert!(matches!(
                early,
                Err(CompletionError::NotPosted(_) | CompletionError::StaleGeneration(_))
            ));
            life.put(w).expect("the completion after the post");
        }
        life.drain();
        let c = life.pool().census();
        assert_eq!((c.allocated, c.free), (1, 1), "released once: {c:?}");
    });
}

/// A worker's `get` waits at the pool's cap (the transport's `get_ctxt`:
/// on the SQ space queue until `may_progress`) while the one context's Send
/// completes, racing its post's commit. Whichever side queues the release
/// wakes the queue after it: the completion handler (`handle_send_wc`:
/// `put`, then `wake_send_waiters`) if the post committed first, else the
/// poster (`post_chain`: `post_committed` said `CompletedFirst`, then
/// `wake_space_waiters`), whose release comes after the handler's wake. A
/// waiter left asleep is reported by loom as a deadlock.
#[test]
fn a_get_at_the_cap_wakes_whichever_side_queues_the_release() {
    loom_model::check(
        "a_get_at_the_cap_wakes_whichever_side_queues_the_release",
        || {
            let rt = RtHandle::default();
            let life = Arc::new(Life::new(FakeDev::default(), cfg(1), rt));
            let sq = Arc::new(SqAccount::<CondvarWait>::new(1));
            // The pool's one context, being built by the poster.
            let c = life.get().expect("under the cap");
            // Slot 0's first take has generation 1.
            let w = 1u64 << 32;
            let waiter = {
                let (life, sq) = (life.clone(), sq.clone());
                thread::spawn(move || loop {
                    match life.get() {
                        Ok(c) => return drop(c),
                        Err(GetError::AtCap) => {
                            sq.space_wait().wait_until(&|| life.may_progress());
                        }
                        Err(e) => panic!("{e}"),
                    }
                })
            };
            let handler = {
                let (life, sq) = (life.clone(), sq.clone());
                thread::spawn(move || loop {
                    // The completion cannot come before the post: until the
                    // post began, this is not its completion yet.
                    match life.put(w) {
                        Ok(sqes) => return sq.wake_send_waiters(sqes),
                        Err(_) => thread::yield_now(),
                    }
                })
            };
            let committed = c
                .post_committed(|id, _| {
                    assert_eq!(id, w);
                    Ok::<_, PostError<ErrorKind>>(())
                })
                .expect("post");
            if committed == Committed::CompletedFirst {
                sq.wake_space_waiters();
            }
            handler.join().unwrap();
            waiter.join().unwrap();
            let c = life.pool().census();
            assert_eq!((c.allocated, c.free), (1, 1), "{c:?}");
        },
    );
}

/// Close races with two threads waiting for SQ space and a ticket: both
/// must return `SqClosed` (a hang is reported by loom as a deadlock).
#[test]
fn close_wakes_every_sq_waiter() {
    loom_model::check("close_wakes_every_sq_waiter", || {
        let sq = Arc::new(SqAccount::<CondvarWait>::new(1));
        assert_eq!(sq.reserve(1), Ok(Reserved::Immediately));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let sq = sq.clone();
                thread::spawn(move || sq.reserve(1))
            })
            .collect();
        sq.close();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(SqClosed));
        }
    });
}

/// A completion returning slots wakes the space waiter (no lost wakeup on
/// the fast `has_waiters` check), and the waiter learns it must drain.
#[test]
fn sq_wake_send_waiters_wakes_the_waiter() {
    loom_model::check("sq_wake_send_waiters_wakes_the_waiter", || {
        let sq = Arc::new(SqAccount::<CondvarWait>::new(1));
        assert_eq!(sq.reserve(1), Ok(Reserved::Immediately));
        let w = {
            let sq = sq.clone();
            thread::spawn(move || sq.reserve(1))
        };
        sq.wake_send_waiters(1);
        let r = w.join().unwrap();
        assert!(
            r == Ok(Reserved::AfterWait) || r == Ok(Reserved::Immediately),
            "{r:?}"
        );
        assert_eq!(sq.avail(), 0);
    });
}

/// The idle shrink races a Send completion (put, then a worker's drain)
/// and a `get` on a pool with one context posted and one free. In every
/// interleaving: the completion finds its context still posted (the shrink
/// only frees free-list contexts, never one in flight), the `get` either
/// gets a context or reports the cap with progress possible (so a waiter's
/// retry succeeds), and afterwards the census adds up, the device holds
/// exactly one mapping per live context, and nothing was released while
/// mapped.
#[test]
fn shrink_races_get_and_completion() {
    loom_model::check("shrink_races_get_and_completion", || {
        let rt = RtHandle::default();
        let dev = FakeDev::default();
        let life = Arc::new(Life::new(dev.clone(), cfg(2), rt.clone()));
        let id = posted(&life);
        drop(life.get().expect("second context"));
        assert_eq!(life.pool().census().free, 1);

        let shrinker = {
            let life = life.clone();
            thread::spawn(move || life.pool().shrink(0))
        };
        let completer = {
            let life = life.clone();
            thread::spawn(move || {
                life.put(id)
                    .expect("the shrink never touches a posted context");
                life.drain();
            })
        };
        let got = match life.get() {
            Ok(c) => {
                drop(c);
                true
            }
            Err(GetError::AtCap) => false,
            Err(e) => panic!("unexpected get error {e}"),
        };
        let freed = shrinker.join().unwrap();
        completer.join().unwrap();
        assert!(
            got || life.may_progress(),
            "a get at the cap could never retry"
        );
        life.drain();

        let c = life.pool().census();
        assert_eq!(c.owned + c.posted + c.pending_release, 0, "{c:?}");
        assert_eq!(c.allocated, c.free, "{c:?}");
        assert_eq!(c.allocated + c.hollow, 2, "a slot was lost: {c:?}");
        let s = life.stats().snapshot();
        assert_eq!(s.pool_size, u64::from(c.allocated), "{s:?} vs {c:?}");
        assert_eq!(s.shrunk, freed as u64);
        assert_eq!(s.allocations - s.shrunk, s.pool_size);
        assert_eq!(
            dev.live(),
            c.allocated as usize,
            "header mappings vs contexts"
        );
        assert!(dev.violations().is_empty(), "{:?}", dev.violations());
        // The shrunk pool serves both contexts again.
        let a = life.get().expect("first");
        let b = life.get().expect("second: reallocated into a hollow slot");
        drop((a, b));
        assert_eq!(life.pool().census().allocated, 2);
    });
}

/// A posted context holding `tokens` (transport buffers its Writes read).
fn posted_holding<L: SendCtxtLifecycle>(life: &L, tokens: &[u32]) -> u64 {
    let mut c = life.get().expect("under the cap");
    for &t in tokens {
        // SAFETY: this pool has no transport; the model itself checks that
        // each token comes back exactly once.
        assert!(unsafe { c.hold(t) });
    }
    let mut id = 0;
    c.post(|w, _| {
        id = w;
        Ok::<_, PostError<ErrorKind>>(())
    })
    .expect("post");
    id
}

/// The buffers a reply's context holds come back through its release, on
/// the returned list. Under Inline the release runs on the completion
/// thread, which pushes them there while a worker takes returned buffers
/// back (`release_ctxt`, or a `recvfrom` looking for a landing buffer). In
/// every interleaving each buffer comes back exactly once: none is lost
/// between a push and a concurrent take (the take's "anything there?" hint
/// included), none is taken twice.
#[test]
fn held_buffers_come_back_once_through_the_release() {
    loom_model::check("held_buffers_come_back_once_through_the_release", || {
        let life = Arc::new(Inline::<FakeDev>::new(FakeDev::default(), cfg(2)));
        let ids = [
            posted_holding(&*life, &[1, 2]),
            posted_holding(&*life, &[3]),
        ];
        assert!(!life.pool().has_returned(), "nothing released yet");
        let completer = {
            let life = life.clone();
            thread::spawn(move || {
                for id in ids {
                    life.put(id).unwrap();
                }
            })
        };
        let worker = {
            let life = life.clone();
            thread::spawn(move || {
                let mut toks = Vec::new();
                life.pool().take_returned(&mut toks);
                toks
            })
        };
        completer.join().unwrap();
        let mut got = worker.join().unwrap();
        let mut rest = Vec::new();
        life.pool().take_returned(&mut rest);
        got.extend(rest);
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3], "each held buffer back exactly once");
        assert!(!life.pool().has_returned());
        assert_eq!(life.pool().census().free, 2);
    });
}
