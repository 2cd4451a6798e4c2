//! Heap allocations on the server's per-call path: once warm, a 64 B
//! inline echo (poll, recvfrom, dispatch, sendto, release) allocates
//! nothing on the server (the reply chain's WR list and a receive refresh
//! batch are held inline; the procedure's results reuse the recycled reply
//! body). A lent 64 KiB echo (a Position Zero Read chunk pulled into a
//! landing buffer, the reply's Write chunk written from it) allocates
//! nothing on the server either, the mock NIC's RDMA Reads and Writes
//! included (they run in the server's posts and polls).

#[path = "transport_common.rs"]
mod common;
#[path = "../examples/common/echo.rs"]
mod echo_prog;

use common::{pair, Server};
use echo_prog::{Echo, PROC_ECHO, PROC_ECHO_BULK, PROG, VERS};
use rdmaxprt::client::{CallOptions, ClientConfig};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt::service::{Dispatcher, ReplyBody};
use rdmaxprt_core::transport::XprtConfig;

#[path = "support/alloc_count.rs"]
mod alloc_count;

use alloc_count::count_allocs;

/// The runtime's pass (`runtime/svc.rs`): poll, then recvfrom -> dispatch
/// into the recycled body -> sendto -> release until no call. Returns the
/// calls answered.
fn server_pass(x: &Server, d: &Dispatcher, body: &mut ReplyBody) -> usize {
    x.poll(usize::MAX).expect("poll");
    let mut n = 0;
    while let Some(call) = x.recvfrom().expect("recvfrom") {
        let reply = d
            .dispatch_reusing(call.msg(), std::mem::take(body))
            .expect("an echo call is answered");
        let parts: [&[u8]; 2] = [&reply.header, &reply.body.results];
        x.sendto(&call, &parts, reply.bulk(call.msg()))
            .expect("sendto");
        *body = reply.recycle();
        drop(call);
        x.release_ctxt();
        n += 1;
    }
    x.release_ctxt();
    n
}

#[test]
fn a_warm_64_byte_echo_allocates_nothing_on_the_server() {
    const WINDOW: usize = 8;
    let dev = MockDevice::new();
    let ccfg = ClientConfig {
        credits: WINDOW as u32,
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, QpConfig::default(), XprtConfig::default(), ccfg);
    let d = Dispatcher::new().with(Echo::default());
    let args: Vec<u8> = (0..64u8).collect();
    let mut body = ReplyBody::default();
    let (mut calls, mut allocs) = (0, 0);
    // Enough rounds to cycle the receive ring (credits + batch) twice
    // after the warm-up ones.
    for round in 0..64 {
        // Up to the window, as the credits allow (the first call's reply
        // brings the grant).
        let mut tickets = Vec::new();
        while tickets.len() < WINDOW && c.has_credit() {
            let t = c.start_call(PROG, VERS, PROC_ECHO, &args, &CallOptions::default());
            tickets.push(t.expect("start_call"));
        }
        let (n, a) = count_allocs(|| server_pass(&x, &d, &mut body));
        if round >= 8 {
            calls += n;
            allocs += a;
        }
        for t in &tickets {
            let r = c.try_wait(t).expect("answered inline").expect("reply");
            assert_eq!(r.results, args);
        }
    }
    assert_eq!(
        calls,
        56 * WINDOW,
        "every round after the warm-up is a full window"
    );
    assert_eq!(allocs, 0, "{allocs} server allocations over {calls} calls");
    drop(c);
    let td = x.free();
    assert_eq!(td.reclaimed_send, 0);
}

/// Server passes until one finds neither a completion nor a call: a
/// Read-chunk call surfaces from `recvfrom` only after its Reads complete,
/// a later poll. Returns the calls answered.
fn serve_until_idle(x: &Server, d: &Dispatcher, body: &mut ReplyBody) -> usize {
    let mut calls = 0;
    loop {
        let polled = x.poll(usize::MAX).expect("poll");
        let n = server_pass(x, d, body);
        calls += n;
        if polled == 0 && n == 0 {
            return calls;
        }
    }
}

#[test]
fn a_warm_lent_64k_echo_allocates_nothing_on_the_server() {
    const WINDOW: usize = 2;
    const BIG: usize = 64 << 10;
    let dev = MockDevice::new();
    let ccfg = ClientConfig {
        credits: WINDOW as u32,
        ..ClientConfig::default()
    };
    let (mut c, x, _hook) = pair(&dev, QpConfig::default(), XprtConfig::default(), ccfg);
    let d = Dispatcher::new().with(Echo::default());
    let opts = CallOptions {
        write_chunk: Some(BIG as u32),
        ..CallOptions::default()
    };
    let mut body = ReplyBody::default();
    let (mut calls, mut allocs) = (0, 0);
    for round in 0..48u8 {
        let mut tickets = Vec::new();
        while tickets.len() < WINDOW && c.has_credit() {
            let mut a = c.lend(BIG).expect("lend");
            a.fill(round ^ tickets.len() as u8);
            let t = c.start_lent(PROG, VERS, PROC_ECHO_BULK, a, &opts);
            tickets.push(t.expect("start_lent"));
        }
        let (n, a) = count_allocs(|| serve_until_idle(&x, &d, &mut body));
        if round >= 8 {
            calls += n;
            allocs += a;
        }
        for (i, t) in tickets.into_iter().enumerate() {
            let r = c.wait_lent(t).expect("reply");
            let want = round ^ i as u8;
            let bulk = r
                .bulk()
                .expect("the arguments came back in the Write chunk");
            assert_eq!(bulk.len(), BIG);
            assert!(bulk.iter().all(|&b| b == want), "round {round} call {i}");
        }
    }
    assert_eq!(
        calls,
        40 * WINDOW,
        "every round after the warm-up is a full window"
    );
    let counters = x.counters().snapshot();
    assert!(counters.read_calls >= calls as u64 && counters.write_chunks >= calls as u64);
    assert_eq!(allocs, 0, "{allocs} server allocations over {calls} calls");
    drop(c);
    let td = x.free();
    assert_eq!(td.reclaimed_send, 0);
}

#[test]
fn a_recycled_reply_body_keeps_its_results_buffer() {
    let d = Dispatcher::new().with(Echo::default());
    let spec = rdmaxprt_core::oncrpc::CallSpec {
        xid: 1,
        prog: PROG,
        vers: VERS,
        proc: PROC_ECHO,
        cred: None,
    };
    let mut msg = vec![0; spec.encoded_len()];
    let n = rdmaxprt_core::oncrpc::encode_call(&mut msg, &spec).expect("encode");
    msg.truncate(n);
    msg.extend_from_slice(&[7; 100]);
    let first = d.dispatch(&msg).expect("reply");
    let ptr = first.body.results.as_ptr();
    let body = first.recycle();
    assert!(body.results.is_empty() && body.bulk.is_none());
    let second = d.dispatch_reusing(&msg, body).expect("reply");
    assert_eq!(second.body.results, [7; 100]);
    assert!(
        std::ptr::eq(second.body.results.as_ptr(), ptr),
        "the results were written into the recycled buffer"
    );
}
