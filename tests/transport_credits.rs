//! Credits: a client with more calls than the server grants keeps at most
//! the grant in flight, waits without deadlock, and every call completes;
//! likewise when the server's Send Queue is the bottleneck.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, CallRequest, ClientConfig, ClientError};
use rdmaxprt::mock::{Delivery, MockDevice, QpConfig};
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::transport::XprtConfig;
use std::time::Duration;

const SERVER_CREDITS: u32 = 4;

fn xcfg() -> XprtConfig {
    XprtConfig {
        credits: SERVER_CREDITS,
        ..XprtConfig::default()
    }
}

#[test]
fn the_client_never_exceeds_the_grant_and_waits_for_credits() {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let ccfg = ClientConfig {
        credits: 16,
        timeout: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, xcfg(), ccfg);
    assert_eq!(c.credits(), 1, "one credit until the first reply");
    let t = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap();
    assert!(!c.has_credit());
    // A second call would exceed the initial credit: it waits, and with
    // nobody stepping the NIC it gives up instead of sending.
    let err = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap_err();
    assert!(matches!(err, ClientError::NoCredit), "{err:?}");
    assert_eq!(c.in_flight(), 1);
    assert_eq!(c.stats().calls, 1);

    dev.step_all();
    serve(&x);
    dev.step_all();
    assert!(c.try_wait(&t).expect("reply in").is_ok());
    assert_eq!(c.credits(), SERVER_CREDITS, "the server's grant");

    let mut ts = Vec::new();
    for i in 0..SERVER_CREDITS {
        assert!(c.has_credit(), "call {i} fits the grant");
        ts.push(
            c.start_call(
                PROG,
                VERS,
                PROC_ECHO,
                &[i as u8; 4],
                &CallOptions::default(),
            )
            .unwrap(),
        );
    }
    assert!(!c.has_credit());
    let err = c
        .start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default())
        .unwrap_err();
    assert!(matches!(err, ClientError::NoCredit), "{err:?}");
    assert_eq!(c.in_flight(), SERVER_CREDITS);
    dev.step_all();
    assert_eq!(serve(&x), SERVER_CREDITS as usize);
    dev.step_all();
    for (i, t) in ts.into_iter().enumerate() {
        assert_eq!(c.wait(t).unwrap().results, [i as u8; 4]);
    }
    assert_eq!(c.stats().max_in_flight, SERVER_CREDITS);
    x.free();
    drop(c);
    dev.assert_clean();
}

fn many_calls(delivery: Delivery, sq_depth: u32, client_credits: u32) -> (u64, u64) {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery,
        sq_depth,
        ..QpConfig::default()
    };
    let ccfg = ClientConfig {
        credits: client_credits,
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, xcfg(), ccfg);
    let st = ServerThread::spawn(vec![x]);
    // Every third call has no chunk: its echo must fit inline.
    let args: Vec<Vec<u8>> = (0..64)
        .map(|i| match i % 3 {
            2 => pattern(100 + (i * 37) % 800, i as u8),
            _ => pattern(100 + i * 61, i as u8),
        })
        .collect();
    let reqs: Vec<CallRequest<'_>> = args
        .iter()
        .enumerate()
        .map(|(i, a)| CallRequest {
            prog: PROG,
            vers: VERS,
            proc: PROC_ECHO,
            args: a,
            opts: CallOptions {
                write_chunk: (i % 3 == 0).then_some(8192),
                reply_chunk: (i % 3 == 1).then_some(8192),
                ..Default::default()
            },
        })
        .collect();
    let results = c.call_many(&reqs);
    for (i, (r, a)) in results.into_iter().zip(&args).enumerate() {
        let r = r.unwrap_or_else(|e| panic!("call {i}: {e}"));
        if i % 3 == 0 {
            assert_eq!(r.bulk.as_deref(), Some(&a[..]), "call {i}");
        } else {
            assert_eq!(&r.results, a, "call {i}");
        }
    }
    let stats = c.stats();
    assert_eq!(stats.replies, 64);
    assert_eq!(
        stats.max_in_flight, SERVER_CREDITS,
        "as many in flight as granted, never more"
    );
    assert!(stats.credit_waits > 0);
    let x = st.stop().pop().unwrap();
    assert_eq!(counter(&x.counters().calls), 64);
    let sq_starved = x.send_lifecycle().stats().snapshot().sq_starved;
    let report = x.free();
    assert_eq!(report.reclaimed_send, 0, "{report:?}");
    drop(c);
    dev.assert_clean();
    (stats.credit_waits, sq_starved)
}

#[test]
fn more_calls_than_credits_all_complete_inline_delivery() {
    many_calls(Delivery::Inline, 128, 16);
}

#[test]
fn more_calls_than_credits_all_complete_with_nic_threads() {
    many_calls(
        Delivery::Thread {
            latency: Duration::from_micros(100),
        },
        128,
        16,
    );
}

#[test]
fn a_server_send_queue_smaller_than_the_burst_waits_without_deadlock() {
    // Four credits, Write-chunk replies of two WRs and Read chains on an SQ
    // of four slots: the server's posts wait for SQ space that only the
    // poller's completion handling gives back.
    let (_, starved) = many_calls(
        Delivery::Thread {
            latency: Duration::from_micros(200),
        },
        4,
        4,
    );
    assert!(starved > 0, "the burst did wait for SQ space");
}
