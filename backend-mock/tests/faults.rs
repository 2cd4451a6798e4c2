//! The seeded fault injector and the one-shot triggers.
mod common;

use common::*;
use rdmaxprt_core::backend::{Error, ErrorKind, Sge, WcStatus};
use rdmaxprt_mock::{DelayConfig, FaultConfig, MockDevice, MockQp, QpConfig};

fn pair_with(dev: &MockDevice, faults: FaultConfig) -> (MockQp, MockQp) {
    let c = QpConfig {
        sq_depth: 64,
        rq_depth: 256,
        faults: Some(faults),
        ..QpConfig::default()
    };
    MockDevice::connect_pair(dev, dev, c).unwrap()
}

/// One event of a run, for comparing runs.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Posted(u64),
    PostFailed(u64, usize, ErrorKind),
    Send(u64, WcStatus),
    Recv(u64, WcStatus),
}

/// A fixed workload; returns everything observable.
fn run(seed: u64) -> Vec<Ev> {
    let dev = MockDevice::new();
    let faults = FaultConfig {
        post_fail_rate: 0.15,
        partial_chain_fail_rate: 0.3,
        error_completion_rate: 0.01,
        qp_error_rate: 0.01,
        disconnect_rate: 0.01,
        delay: Some(DelayConfig {
            rate: 0.3,
            max_polls: 3,
        }),
        ..FaultConfig::none(seed)
    };
    let (a, b) = pair_with(&dev, faults);
    let mut keep = Vec::new();
    for i in 0..200 {
        keep.push(post_recv_buf(&b, 16, 10_000 + i));
    }
    let (_s, sge) = mapped(&dev, b"fault");
    let sges: [Sge; 1] = [sge];
    let mut ev = Vec::new();
    for i in 0..60u64 {
        let chain: Vec<_> = (0..=i % 3)
            .map(|k| send(i * 10 + k, &sges, k == i % 3))
            .collect();
        match post(&a, &chain) {
            Ok(()) => ev.push(Ev::Posted(i)),
            Err(e) => ev.push(Ev::PostFailed(i, e.consumed, e.error.kind())),
        }
        ev.extend(poll_send(&a).iter().map(|w| Ev::Send(w.wr_id, w.status)));
        ev.extend(poll_recv(&b).iter().map(|w| Ev::Recv(w.wr_id, w.status)));
    }
    for _ in 0..4 {
        ev.extend(poll_send(&a).iter().map(|w| Ev::Send(w.wr_id, w.status)));
        ev.extend(poll_recv(&b).iter().map(|w| Ev::Recv(w.wr_id, w.status)));
    }
    ev
}

#[test]
fn fault_injector_is_deterministic_for_a_seed() {
    let first = run(0xC0FFEE);
    assert_eq!(first, run(0xC0FFEE), "same seed, same faults");
    assert!(
        first.iter().any(|e| matches!(e, Ev::PostFailed(..))),
        "the rates are high enough to inject something: {first:?}"
    );
    assert_ne!(first, run(7), "another seed, other faults");
}

#[test]
fn fault_counts_count_what_the_injector_did() {
    let dev = MockDevice::new();
    let (a, b) = pair_with(
        &dev,
        FaultConfig {
            post_fail_rate: 0.5,
            ..FaultConfig::none(5)
        },
    );
    let mut keep = Vec::new();
    for i in 0..64 {
        keep.push(post_recv_buf(&b, 8, i));
    }
    let (_s, sge) = mapped(&dev, b"n");
    let one = [sge];
    let mut failed = 0;
    for i in 0..40 {
        if post(&a, &[send(i, &one, true)]).is_err() {
            failed += 1;
        }
        poll_send(&a);
    }
    let n = a.fault_counts();
    assert!(failed > 0 && failed < 40, "{failed}");
    assert_eq!(n.post_failures, failed, "{n:?}");
    assert_eq!(n.total(), failed, "no other kind configured: {n:?}");
    assert_eq!(b.fault_counts().total(), 0, "the peer posted nothing");
    a.set_faults(None);
    assert_eq!(
        a.fault_counts(),
        Default::default(),
        "no injector, no count"
    );
}

#[test]
fn post_fail_rate_fails_whole_posts_with_nothing_consumed() {
    let dev = MockDevice::new();
    let (a, _b) = pair_with(
        &dev,
        FaultConfig {
            post_fail_rate: 1.0,
            ..FaultConfig::none(1)
        },
    );
    let (_s, sge) = mapped(&dev, b"p");
    let err = post(&a, &[send(1, &[sge], true), send(2, &[sge], true)]).unwrap_err();
    assert_eq!(err.consumed, 0);
    assert_eq!(err.error.kind(), ErrorKind::OutOfResources);
    assert_eq!(a.sq_outstanding(), 0);
    assert!(!a.is_error(), "a failed post does not break the QP");
}

#[test]
fn partial_chain_failure_consumes_a_strict_prefix_that_then_completes() {
    let dev = MockDevice::new();
    let (a, b) = pair_with(
        &dev,
        FaultConfig {
            partial_chain_fail_rate: 1.0,
            ..FaultConfig::none(99)
        },
    );
    let mut keep = Vec::new();
    for i in 0..8 {
        keep.push(post_recv_buf(&b, 8, i));
    }
    let (_s, sge) = mapped(&dev, b"c");
    let one = [sge];
    let chain: Vec<_> = (0..5).map(|i| send(i, &one, true)).collect();
    let err = post(&a, &chain).unwrap_err();
    assert!(err.consumed > 0 && err.consumed < 5, "{}", err.consumed);
    let done: Vec<u64> = poll_send(&a).iter().map(|w| w.wr_id).collect();
    assert_eq!(done, (0..err.consumed as u64).collect::<Vec<_>>());
    // Single-WR posts are never split.
    post(&a, &chain[..1]).unwrap();
}

#[test]
fn inject_next_post_failure_fails_exactly_once_at_the_given_wr() {
    let dev = MockDevice::new();
    let (a, b) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let mut keep = Vec::new();
    for i in 0..8 {
        keep.push(post_recv_buf(&b, 8, i));
    }
    let (_s, sge) = mapped(&dev, b"i");
    let one = [sge];
    let chain: Vec<_> = (0..4).map(|i| send(i, &one, true)).collect();
    a.inject_next_post_failure(2);
    let err = post(&a, &chain).unwrap_err();
    assert_eq!(err.consumed, 2);
    assert_eq!(ids(&poll_send(&a)).len(), 2);
    post(&a, &chain).unwrap();
    assert_eq!(ids(&poll_send(&a)).len(), 4);
    a.inject_next_post_failure(0);
    assert_eq!(post(&a, &chain).unwrap_err().consumed, 0);
}

#[test]
fn error_completion_rate_turns_a_wr_into_an_error_and_breaks_the_connection() {
    let dev = MockDevice::new();
    let (a, b) = pair_with(
        &dev,
        FaultConfig {
            error_completion_rate: 1.0,
            ..FaultConfig::none(5)
        },
    );
    let (_r, _rs) = post_recv_buf(&b, 8, 77);
    let (_s, sge) = mapped(&dev, b"e");
    post(&a, &[send(1, &[sge], false), send(2, &[sge], true)]).unwrap();
    let s = poll_send(&a);
    assert_eq!(
        s.len(),
        2,
        "error and flush completions even when unsignaled"
    );
    assert_eq!(s[0].wr_id, 1);
    assert!(matches!(
        s[0].status,
        WcStatus::RemoteOp | WcStatus::RetryExceeded | WcStatus::RemoteAccess
    ));
    assert_eq!((s[1].wr_id, s[1].status), (2, WcStatus::Flushed));
    assert!(a.is_error() && b.is_error());
    assert_eq!(ids(&poll_recv(&b)), [(77, WcStatus::Flushed)]);
}

#[test]
fn qp_error_rate_flushes_the_local_qp_only() {
    let dev = MockDevice::new();
    let (a, b) = pair_with(
        &dev,
        FaultConfig {
            qp_error_rate: 1.0,
            ..FaultConfig::none(5)
        },
    );
    let (_r, _rs) = post_recv_buf(&b, 8, 1);
    let (_s, sge) = mapped(&dev, b"q");
    post(&a, &[send(1, &[sge], true)]).unwrap();
    assert_eq!(ids(&poll_send(&a)), [(1, WcStatus::Flushed)]);
    assert!(a.is_error());
    assert!(!b.is_error());
    assert!(poll_recv(&b).is_empty(), "the peer's Recv stays posted");
    a.set_faults(None);
}

#[test]
fn delayed_completions_reorder_across_qps_but_not_within_one() {
    let dev = MockDevice::new();
    let (a, b) = pair_with(
        &dev,
        FaultConfig {
            delay: Some(DelayConfig {
                rate: 1.0,
                max_polls: 3,
            }),
            ..FaultConfig::none(11)
        },
    );
    let (c, d) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let mut keep = Vec::new();
    for i in 0..4 {
        keep.push(post_recv_buf(&b, 8, i));
        keep.push(post_recv_buf(&d, 8, i));
    }
    let (_s, sge) = mapped(&dev, b"d");
    let one = [sge];
    let chain: Vec<_> = (0..4).map(|i| send(i, &one, true)).collect();
    post(&a, &chain).unwrap();
    post(&c, &chain).unwrap();
    // The undelayed pair delivers at once; the delayed one, posted first,
    // delivers later: reordered across QPs.
    assert!(poll_send(&a).is_empty());
    assert_eq!(poll_send(&c).len(), 4);
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(poll_send(&a).iter().map(|w| w.wr_id));
    }
    assert_eq!(got, [0, 1, 2, 3], "in order within one SQ");
}
