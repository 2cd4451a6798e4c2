//! Delivery modes: stepped by hand, and a NIC thread with latency that
//! wakes blocked pollers.
mod common;

use common::*;
use rdmaxprt_core::backend::{DmaBuf, WcStatus};
use rdmaxprt_mock::{Delivery, MockDevice, QpConfig};
use std::time::{Duration, Instant};

#[test]
fn stepped_mode_executes_nothing_until_stepped() {
    let dev = MockDevice::new();
    let (a, b) = stepped_pair(&dev);
    let (rbuf, rsge) = post_recv_buf(&b, 8, 50);
    let (_r2, rsge2) = post_recv_buf(&b, 8, 51);
    let (_s, sge) = mapped(&dev, b"step");
    post(&a, &[send(1, &[sge], true), send(2, &[sge], true)]).unwrap();
    assert!(poll_send(&a).is_empty());
    assert!(poll_recv(&b).is_empty());
    assert_eq!(rbuf.as_slice()[0], 0, "no bytes move before a step");

    assert!(a.step());
    assert_eq!(ids(&poll_send(&a)), [(1, WcStatus::Success)]);
    assert_eq!(&rbuf.as_slice()[..4], b"step");
    assert!(!b.step(), "b has nothing queued");
    assert_eq!(dev.step_all(), 1);
    assert_eq!(ids(&poll_send(&a)), [(2, WcStatus::Success)]);
    assert_eq!(poll_recv(&b).len(), 2);
    assert_eq!(a.step_all(), 0);
    unmap_all(&dev, &[rsge, rsge2, sge]);
}

#[test]
fn thread_mode_delivers_after_the_latency_and_wakes_the_waiter() {
    let dev = MockDevice::new();
    let latency = Duration::from_millis(30);
    let c = QpConfig {
        delivery: Delivery::Thread { latency },
        ..QpConfig::default()
    };
    let (a, b) = MockDevice::connect_pair(&dev, &dev, c).unwrap();
    let (rbuf, rsge) = post_recv_buf(&b, 8, 9);
    let (_s, sge) = mapped(&dev, b"thread");
    let t = Instant::now();
    post(&a, &[send(1, &[sge], true)]).unwrap();
    // Poll before checking the clock: whatever this poll sees must have
    // waited out the latency (robust on a loaded machine).
    let mut got = poll_send(&a);
    assert!(got.is_empty() || t.elapsed() >= latency, "delivered early");
    if got.is_empty() {
        assert!(a.wait_for_completions(Duration::from_secs(5)));
        assert!(t.elapsed() >= latency, "completed after {:?}", t.elapsed());
        got = poll_send(&a);
    }
    assert_eq!(ids(&got), [(1, WcStatus::Success)]);
    assert!(b.wait_for_completions(Duration::from_secs(5)));
    assert_eq!(ids(&poll_recv(&b)), [(9, WcStatus::Success)]);
    assert_eq!(&rbuf.as_slice()[..6], b"thread");
    assert!(
        !a.wait_for_completions(Duration::from_millis(5)),
        "times out when idle"
    );
    unmap_all(&dev, &[rsge, sge]);
}

#[test]
fn thread_mode_waiter_in_another_thread_is_woken_by_a_drain() {
    let dev = MockDevice::new();
    let c = QpConfig {
        delivery: Delivery::Thread {
            latency: Duration::from_millis(1),
        },
        ..QpConfig::default()
    };
    let (a, _b) = MockDevice::connect_pair(&dev, &dev, c).unwrap();
    let a = std::sync::Arc::new(a);
    let (_s, sge) = mapped(&dev, b"w");
    // No Recv at the peer: the Send waits until the drain flushes it.
    post(&a, &[send(1, &[sge], true)]).unwrap();
    let a2 = std::sync::Arc::clone(&a);
    let waiter = std::thread::spawn(move || a2.wait_for_completions(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(20));
    rdmaxprt_core::backend::QueuePair::drain_qp(&*a).unwrap();
    assert!(waiter.join().unwrap());
    assert_eq!(ids(&poll_send(&a)), [(1, WcStatus::Flushed)]);
    unmap_all(&dev, &[sge]);
}

#[test]
fn completion_notifier_rings_for_each_end_that_may_have_completions() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let dev = MockDevice::new();
    let (a, b) = stepped_pair(&dev);
    let rings = Arc::new(AtomicUsize::new(0));
    let r = rings.clone();
    a.set_completion_notifier(Some(Arc::new(move || {
        r.fetch_add(1, Ordering::SeqCst);
    })));
    let (_rbuf, rsge) = post_recv_buf(&b, 8, 1);
    let (_s, sge) = mapped(&dev, b"ring");
    post(&a, &[send(7, &[sge], true)]).unwrap();
    let before = rings.load(Ordering::SeqCst);
    assert!(a.step());
    assert!(
        rings.load(Ordering::SeqCst) > before,
        "a completion was queued without a ring"
    );
    assert_eq!(ids(&poll_send(&a)), [(7, WcStatus::Success)]);
    a.set_completion_notifier(None);
    let after = rings.load(Ordering::SeqCst);
    post(&a, &[send(8, &[sge], true)]).unwrap();
    let _ = a.step();
    assert_eq!(
        rings.load(Ordering::SeqCst),
        after,
        "a removed notifier still rang"
    );
    let _ = poll_send(&a);
    let _ = poll_recv(&b);
    unmap_all(&dev, &[rsge, sge]);
}

/// A notify skips the condvar when nobody sleeps on it (std's notify is a
/// futex syscall), so check the sleeper is still woken: a poller asleep in
/// `wait_for_completions` with a long timeout returns when a post from
/// another thread queues a completion (Inline delivery), well before its
/// timeout, which is what it would wait out if the wakeup were lost.
#[test]
fn a_sleeping_poller_is_woken_by_a_post_from_another_thread() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let (_r, rsge) = post_recv_buf(&b, 8, 1);
    let b = std::sync::Arc::new(b);
    let b2 = std::sync::Arc::clone(&b);
    let timeout = Duration::from_secs(30);
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let got = b2.wait_for_completions(timeout);
        (got, t.elapsed())
    });
    // Let the waiter fall asleep first (if it has not, it sees the
    // completion before sleeping, and the test passes trivially).
    std::thread::sleep(Duration::from_millis(50));
    let (_s, sge) = mapped(&dev, b"wake");
    post(&a, &[send(1, &[sge], true)]).unwrap();
    let (got, waited) = waiter.join().unwrap();
    assert!(got, "the receive completion is there");
    assert!(waited < timeout, "woken by the post, not by the timeout");
    assert_eq!(ids(&poll_recv(&b)), [(1, WcStatus::Success)]);
    assert_eq!(ids(&poll_send(&a)), [(1, WcStatus::Success)]);
    unmap_all(&dev, &[rsge, sge]);
}

/// Regression: the NIC thread executed WRs and woke only `wait_for_completions`
/// sleepers, never the completion notifiers, so a shared poller sleeping on
/// its doorbell never saw a `Delivery::Thread` completion.
#[test]
fn thread_mode_rings_the_completion_notifier_when_it_executes() {
    use std::sync::{Arc, Condvar, Mutex};
    let dev = MockDevice::new();
    let latency = Duration::from_millis(20);
    let c = QpConfig {
        delivery: Delivery::Thread { latency },
        ..QpConfig::default()
    };
    let (a, b) = MockDevice::connect_pair(&dev, &dev, c).unwrap();
    let (_rbuf, rsge) = post_recv_buf(&b, 8, 3);
    let (_s, sge) = mapped(&dev, b"bell");
    post(&a, &[send(4, &[sge], true)]).unwrap();
    // Install the notifier after the post: only the NIC thread's execution,
    // 20 ms later, can ring it.
    let bell = Arc::new((Mutex::new(0usize), Condvar::new()));
    let b2 = bell.clone();
    a.set_completion_notifier(Some(Arc::new(move || {
        *b2.0.lock().unwrap() += 1;
        b2.1.notify_all();
    })));
    let rung = {
        let g = bell.0.lock().unwrap();
        let (g, _) = bell
            .1
            .wait_timeout_while(g, Duration::from_secs(5), |n| *n == 0)
            .unwrap();
        *g
    };
    assert!(rung > 0, "the NIC thread executed the Send without a ring");
    assert_eq!(ids(&poll_send(&a)), [(4, WcStatus::Success)]);
    a.set_completion_notifier(None);
    assert!(b.wait_for_completions(Duration::from_secs(5)));
    let _ = poll_recv(&b);
    unmap_all(&dev, &[rsge, sge]);
}
