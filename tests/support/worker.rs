//! The hand-driven server side shared by the mock (`transport_*`) and the
//! rxe (`verbs_transport`) suites: a minimal echo service and the worker
//! pass a runtime worker performs, generic over the backend.
#![allow(dead_code)]

use rdmaxprt_core::backend::{ErrorType, QueuePair};
use rdmaxprt_core::lifecycle::SendCtxtLifecycle;
use rdmaxprt_core::oncrpc::{self, AcceptStat, ReplyStat};
use rdmaxprt_core::transport::{RecvdCall, SvcRdmaXprt, XprtError};
use rdmaxprt_core::wait::WaitQueue;
use rdmaxprt_core::xprt::Enqueue;

/// NULL: no arguments, no results.
pub const PROC_NULL: u32 = 0;
/// Echo: results = arguments, or, if the call offers a Write chunk, empty
/// results and the arguments as the bulk payload.
pub const PROC_ECHO: u32 = 1;

type DevErr<L> = <<L as SendCtxtLifecycle>::Dev as ErrorType>::Error;

/// Answers one call to program `prog` with a hand-rolled accepted-SUCCESS
/// reply. Calls that do not decode are dropped; unknown procedures get
/// PROC_UNAVAIL, other programs PROG_UNAVAIL.
pub fn echo_call<L, Q, E, W>(
    x: &SvcRdmaXprt<L, Q, E, W>,
    call: &RecvdCall<'_>,
    prog: u32,
) -> Result<(), XprtError<DevErr<L>>>
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevErr<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    let Ok(h) = oncrpc::decode_call(call.msg()) else {
        return Ok(());
    };
    let args = call.msg().get(h.args_offset..).unwrap_or_default();
    let mut hdr = [0u8; 32];
    let stat = match (h.prog == prog, h.proc) {
        (true, PROC_NULL | PROC_ECHO) => ReplyStat::Accepted(AcceptStat::Success),
        (true, _) => ReplyStat::Accepted(AcceptStat::ProcUnavail),
        _ => ReplyStat::Accepted(AcceptStat::ProgUnavail),
    };
    let n = oncrpc::encode_reply(&mut hdr, h.xid, stat).expect("reply header fits");
    let ok = stat == ReplyStat::Accepted(AcceptStat::Success);
    let args = if ok && h.proc == PROC_ECHO { args } else { &[] };
    if !call.meta.write_list.is_empty() && !args.is_empty() {
        x.sendto(call, &[&hdr[..n]], Some(args))
    } else {
        x.sendto(call, &[&hdr[..n], args], None)
    }
}

/// Exactly one worker pass: recvfrom -> echo -> sendto -> release_ctxt
/// until recvfrom returns nothing, then `release_ctxt` once more. A fatal
/// send error closes the transport. Returns the calls served.
pub fn worker_pass_for<L, Q, E, W>(x: &SvcRdmaXprt<L, Q, E, W>, prog: u32) -> usize
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevErr<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    let mut n = 0;
    while let Ok(Some(call)) = x.recvfrom() {
        if let Err(e) = echo_call(x, &call, prog) {
            if e.is_fatal() {
                x.close();
            }
        }
        x.release_ctxt();
        n += 1;
    }
    x.release_ctxt();
    n
}

/// Worker passes until nothing moves: run the completion handlers, then a
/// worker pass, again and again (a call with Read chunks only surfaces
/// after its Read completion is handled). Returns the calls served.
pub fn serve_for<L, Q, E, W>(x: &SvcRdmaXprt<L, Q, E, W>, prog: u32) -> usize
where
    L: SendCtxtLifecycle,
    Q: QueuePair<Error = DevErr<L>>,
    E: Enqueue,
    W: WaitQueue,
{
    let mut total = 0;
    loop {
        let polled = x.poll(usize::MAX).unwrap_or(0);
        let served = worker_pass_for(x, prog);
        total += served;
        if polled == 0 && served == 0 {
            return total;
        }
    }
}
