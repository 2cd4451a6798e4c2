//! `RpcClient::recycle`: a reply's buffers handed back are the ones the
//! next replies are built in (no fresh 64 KiB allocation, and its page
//! faults, per bulk call), emptied first, with the right bytes; at most
//! `credits` of each kind are kept.

#[path = "transport_common.rs"]
mod common;

use common::*;
use rdmaxprt::client::{CallOptions, ClientConfig, ReplyBytes};
use rdmaxprt::mock::{MockDevice, QpConfig};
use rdmaxprt_core::transport::XprtConfig;

fn echo(c: &mut Client, x: &Server, args: &[u8], opts: &CallOptions<'_>) -> ReplyBytes {
    let t = c.start_call(PROG, VERS, PROC_ECHO, args, opts).unwrap();
    serve(x);
    c.wait(t).unwrap()
}

#[test]
fn recycled_reply_buffers_carry_the_next_replies() {
    let dev = MockDevice::new();
    let (mut c, x, _hook) = pair(
        &dev,
        QpConfig::default(),
        XprtConfig::default(),
        ClientConfig::default(),
    );
    let w = CallOptions {
        write_chunk: Some(64 << 10),
        ..Default::default()
    };
    let big = pattern(64 << 10, 1);
    let r = echo(&mut c, &x, &big, &w);
    assert_eq!(r.bulk.as_deref(), Some(&big[..]));
    assert_eq!(c.stats().reused_reply_buffers, 0);
    let bulk_at = r.bulk.as_ref().unwrap().as_ptr();
    c.recycle(r);

    // A smaller payload into the recycled Write chunk buffer: emptied
    // first, so exactly the new bytes.
    let small = pattern(5000, 2);
    let r = echo(&mut c, &x, &small, &w);
    assert_eq!(r.bulk.as_deref(), Some(&small[..]));
    assert_eq!(r.bulk.as_ref().unwrap().as_ptr(), bulk_at);
    // The echo's results are empty (the payload went through the Write
    // chunk): no memory, not kept; the bulk buffer was.
    assert_eq!(c.stats().reused_reply_buffers, 1);

    // Not recycled: the next reply gets fresh buffers.
    let r2 = echo(&mut c, &x, &big, &w);
    assert_eq!(r2.bulk.as_deref(), Some(&big[..]));
    assert_eq!(c.stats().reused_reply_buffers, 1);

    // Inline results into a recycled results buffer.
    drop(r);
    drop(r2);
    let r = echo(&mut c, &x, &pattern(300, 3), &CallOptions::default());
    assert!(r.bulk.is_none());
    let res_at = r.results.as_ptr();
    c.recycle(r);
    let r = echo(&mut c, &x, b"tiny", &CallOptions::default());
    assert!(r.results.ends_with(b"tiny"));
    assert!(r.results.len() < 300);
    assert_eq!(r.results.as_ptr(), res_at);
    assert_eq!(c.stats().reused_reply_buffers, 2);

    finish(dev, c, x);
}

#[test]
fn recycle_keeps_at_most_credits_buffers() {
    let dev = MockDevice::new();
    let credits = 2;
    let (mut c, x, _hook) = pair(
        &dev,
        QpConfig::default(),
        XprtConfig::default(),
        ClientConfig {
            credits,
            ..ClientConfig::default()
        },
    );
    let w = CallOptions {
        write_chunk: Some(8192),
        ..Default::default()
    };
    let replies: Vec<ReplyBytes> = (0..4)
        .map(|i| echo(&mut c, &x, &pattern(4000, i), &w))
        .collect();
    for r in replies {
        c.recycle(r);
    }
    for i in 0..4 {
        let r = echo(&mut c, &x, &pattern(4000, i + 10), &w);
        assert_eq!(r.bulk.as_deref(), Some(&pattern(4000, i + 10)[..]));
    }
    // Two Write chunk buffers kept (the results were empty: nothing to
    // keep), then fresh ones (replies dropped, not recycled).
    assert_eq!(c.stats().reused_reply_buffers, u64::from(credits));
    finish(dev, c, x);
}
