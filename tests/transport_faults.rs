//! Fault injection on the mock pair (seeded post failures, partial chains,
//! error completions, QP errors, disconnects, delayed completions) and the
//! same faults one at a time: the server transport closes cleanly, `free`
//! reports, and the DMA tracker ends with no leak and no violation.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig, ClientError};
use rdmaxprt::mock::{DelayConfig, Delivery, FaultConfig, MockDevice, QpConfig};
use rdmaxprt_core::backend::DmaDevice;
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::transport::XprtConfig;
use rdmaxprt_core::xprt::XprtFlags;
use std::time::Duration;

fn opts(i: usize) -> CallOptions<'static> {
    match i % 4 {
        0 => CallOptions::default(),
        1 => CallOptions {
            write_chunk: Some(4096),
            ..Default::default()
        },
        2 => CallOptions {
            reply_chunk: Some(4096),
            ..Default::default()
        },
        _ => CallOptions {
            force_position_zero: true,
            ..Default::default()
        },
    }
}

fn args(i: usize) -> Vec<u8> {
    match i % 4 {
        0 => pattern(40 + i % 200, i as u8),
        _ => pattern(1500 + (i * 13) % 2000, i as u8),
    }
}

struct Outcome {
    ok: usize,
    closed: bool,
}

fn chaos(seed: u64, delay: bool) -> Outcome {
    let faults = FaultConfig {
        post_fail_rate: 0.01,
        partial_chain_fail_rate: 0.03,
        error_completion_rate: 0.003,
        qp_error_rate: 0.003,
        disconnect_rate: 0.003,
        delay: delay.then_some(DelayConfig {
            rate: 0.2,
            max_polls: 3,
        }),
        ..FaultConfig::none(seed)
    };
    let dev = MockDevice::new();
    let q = QpConfig {
        faults: Some(faults),
        ..QpConfig::default()
    };
    let ccfg = ClientConfig {
        timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, XprtConfig::default(), ccfg);
    let st = ServerThread::spawn(vec![x]);
    let mut ok = 0;
    for i in 0..150 {
        let a = args(i);
        let o = opts(i);
        match c.call(PROG, VERS, PROC_ECHO, &a, &o) {
            Ok(r) => {
                // Whatever else happens, a reply that arrives is exact.
                let got = if o.write_chunk.is_some() {
                    r.bulk.unwrap()
                } else {
                    r.results
                };
                assert_eq!(got, a, "seed {seed} call {i}");
                ok += 1;
            }
            Err(ClientError::Disconnected | ClientError::NoCredit) => break,
            Err(_) if c.is_broken() => break,
            // A failed post or a lost reply: try the next call.
            Err(_) => {}
        }
    }
    let x = st.stop().pop().unwrap();
    let closed = x.flags().test(XprtFlags::CLOSE);
    let partial = x
        .counters()
        .partial_posts
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let report = x.free();
    // free() polls until every flush is seen, held-back ones included;
    // only chains that failed part-way are reclaimed.
    let _ = delay;
    assert_eq!(report.stuck_recvs, 0, "seed {seed}: {report:?}");
    assert_eq!(report.reclaimed_send, partial, "seed {seed}: {report:?}");
    drop(c);
    assert_eq!(dev.tracker().violations(), vec![], "seed {seed}");
    dev.assert_clean();
    Outcome { ok, closed }
}

#[test]
fn seeded_faults_close_the_transport_cleanly_and_leak_nothing() {
    let (mut ok, mut closed) = (0, 0);
    for seed in 1..=12 {
        for delay in [false, true] {
            let o = chaos(seed, delay);
            ok += o.ok;
            closed += o.closed as usize;
        }
    }
    assert!(ok > 100, "calls succeed between faults ({ok})");
    assert!(closed > 5, "faults closed transports ({closed} of 24)");
}

#[test]
fn a_reply_post_that_consumed_nothing_closes_and_returns_every_slot() {
    let dev = MockDevice::new();
    let ccfg = ClientConfig {
        timeout: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, QpConfig::default(), XprtConfig::default(), ccfg);
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, b"x", &CallOptions::default())
        .unwrap();
    x.qp().inject_next_post_failure(0);
    serve(&x);
    assert!(x.flags().test(XprtFlags::CLOSE), "a failed post closes");
    assert_eq!(x.sq().avail(), x.sq().depth() as i32, "slots given back");
    let census = x.send_lifecycle().pool().census();
    assert_eq!(
        census.posted + census.owned + census.pending_release,
        0,
        "the forward path released the context: {census:?}"
    );
    assert!(matches!(c.wait(t), Err(ClientError::Timeout { .. })));
    finish(dev, c, x);
}

#[test]
fn a_reply_chain_that_failed_part_way_is_reclaimed_at_teardown() {
    let dev = MockDevice::new();
    let ccfg = ClientConfig {
        timeout: Duration::from_millis(50),
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, QpConfig::default(), XprtConfig::default(), ccfg);
    let o = CallOptions {
        write_chunk: Some(64),
        ..Default::default()
    };
    let t = c.start_call(PROG, VERS, PROC_ECHO, b"bulk", &o).unwrap();
    // The Write is taken, the Send is not.
    x.qp().inject_next_post_failure(1);
    serve(&x);
    assert!(x.flags().test(XprtFlags::CLOSE), "a partial post closes");
    assert_eq!(x.send_lifecycle().pool().census().posted, 1);
    assert!(matches!(c.wait(t), Err(ClientError::Timeout { .. })));
    let report = x.free();
    // The taken Write was unsignaled and succeeded, so no completion will
    // ever name the context: teardown's reclaim releases it.
    assert_eq!(report.reclaimed_send, 1, "{report:?}");
    drop(c);
    dev.assert_clean();
}

#[test]
fn a_qp_error_mid_stream_fails_the_calls_and_free_is_clean() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = default_pair(&dev);
    for i in 0..3u8 {
        let t = c
            .start_call(PROG, VERS, PROC_ECHO, &[i; 4], &CallOptions::default())
            .unwrap();
        serve(&x);
        assert_eq!(c.wait(t).unwrap().results, [i; 4]);
    }
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, b"lost", &CallOptions::default())
        .unwrap();
    x.qp().force_error();
    serve(&x);
    assert!(x.flags().test(XprtFlags::CLOSE), "flushed receives close");
    assert!(x.recvfrom().is_err(), "a closed transport hands up nothing");
    // The server's QP is in error: the client's next Send fails, and with
    // it the connection, and every call in flight.
    let t2 = c
        .start_call(PROG, VERS, PROC_ECHO, b"next", &CallOptions::default())
        .ok();
    assert!(matches!(c.wait(t), Err(ClientError::Disconnected)));
    if let Some(t2) = t2 {
        assert!(matches!(c.wait(t2), Err(ClientError::Disconnected)));
    }
    assert!(c.is_broken());
    assert!(matches!(
        c.start_call(PROG, VERS, PROC_NULL, b"", &CallOptions::default()),
        Err(ClientError::Disconnected)
    ));
    finish(dev, c, x);
}

#[test]
fn a_disconnect_with_a_reply_in_flight_releases_it_through_the_flush() {
    let dev = MockDevice::new();
    let q = QpConfig {
        delivery: Delivery::Stepped,
        ..QpConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, q, XprtConfig::default(), ClientConfig::default());
    let o = CallOptions {
        write_chunk: Some(4096),
        ..Default::default()
    };
    let t = c
        .start_call(PROG, VERS, PROC_ECHO, &pattern(3000, 1), &o)
        .unwrap();
    dev.step_all(); // the call's Send
    serve(&x); // starts the Read of the Position Zero chunk
    dev.step_all(); // the Read
    serve(&x); // the call surfaces; the reply (Write + Send) is posted
    assert_eq!(counter(&x.counters().replies), 1);
    assert_eq!(x.send_lifecycle().pool().census().posted, 1);
    x.qp().disconnect();
    serve(&x);
    assert!(x.flags().test(XprtFlags::CLOSE));
    assert_eq!(
        x.send_lifecycle().pool().census().posted,
        0,
        "the flushed Send released its context"
    );
    assert!(matches!(c.wait(t), Err(ClientError::Disconnected)));
    finish(dev, c, x);
}

#[test]
fn a_read_chunk_with_a_bad_rkey_closes_the_transport_and_free_releases_the_read() {
    let dev = MockDevice::new();
    let (cq, sq) = MockDevice::connect_pair(&dev, &dev, QpConfig::default()).unwrap();
    let (x, _hook) = server(&dev, sq, XprtConfig::default());
    let raw = RawClient::new(&dev, cq, 4, 1024);
    let mr = dev.register(dev.alloc_buf(128).unwrap()).unwrap();
    let xid = 0xfa17_0001;
    // RDMA_NOMSG, Position Zero chunk naming a key nobody registered.
    let mut m = words(&[xid, 1, 8, 1, 1, 0, mr.rkey() ^ 0x5a5a, 128]);
    m.extend(words(&[
        (mr.addr() >> 32) as u32,
        mr.addr() as u32,
        0,
        0,
        0,
    ]));
    raw.send(&m);
    serve(&x);
    assert!(x.flags().test(XprtFlags::CLOSE), "the failed Read closes");
    assert_eq!(counter(&x.counters().calls), 0);
    assert!(raw.recv().is_empty(), "no answer on a dead connection");
    let report = x.free();
    assert_eq!(report.reads_released, 1, "{report:?}");
    assert_eq!(report.stuck_recvs, 0, "{report:?}");
    drop(raw);
    drop(mr);
    dev.assert_clean();
}
