//! B4 64 KiB echo, run-to-completion, one connection: payload copies and
//! zero-fills per call at each end (counted by `copy_hooks`), and calls/s
//! against the raw loop, both measured in this run.

use super::*;
use rdmaxprt_bench::copies::{self, PerCall};

/// The echo size.
pub(super) const BULK: usize = 64 << 10;

/// What the bulk measurement found.
pub(super) struct BulkResult {
    /// Copies and fills per call: (transport, floor).
    counts: Option<(PerCall, PerCall)>,
    /// Calls/s and CPU per call: transport, floor.
    rate: Med,
    floor: Med,
}

/// Median calls/s and CPU per call over runs.
struct Med {
    rate: f64,
    cpu_ns: f64,
}

fn med(runs: &[E2eResult]) -> Med {
    let rates: Vec<f64> = runs.iter().map(E2eResult::rate).collect();
    let cpu: Vec<f64> = runs.iter().map(E2eResult::cpu_ns_per_call).collect();
    Med {
        rate: median(&rates).unwrap_or(f64::NAN),
        cpu_ns: median(&cpu).unwrap_or(f64::NAN),
    }
}

impl BulkResult {
    /// Memcpys the mock NIC makes per payload transfer, from the floor
    /// (which makes no host copy: it sends from its receive buffers).
    fn per_transfer(&self) -> Option<f64> {
        let (_, f) = self.counts?;
        Some(f.copies() / f.nic_transfers())
    }

    /// Payload copies per call with each NIC transfer counted once (the
    /// issue's count, in which the floor makes 2).
    fn payload_copies(&self, p: &PerCall) -> Option<f64> {
        let k = self.per_transfer()?;
        Some(p.copies() - p.nic_transfers() * (k - 1.0))
    }
}

pub(super) fn b4_bulk(mode: &Mode) -> (Table, BulkResult) {
    eprintln!("B4 bulk copies and rate ...");
    let calls = if mode.quick { 300 } else { 2000 };
    let counts = copies::measure(BULK, E2E_WINDOW, calls);
    // Interleaved, so load changes hit both alike.
    let (mut xs, mut fs) = (Vec::new(), Vec::new());
    for _ in 0..mode.e2e_reps.max(1) {
        xs.push(rtc::run(1, BULK, E2E_WINDOW, mode.e2e_for));
        fs.push(rtc::run_raw(1, BULK, E2E_WINDOW, mode.e2e_for));
    }
    let (rate, floor) = (med(&xs), med(&fs));
    let res = BulkResult {
        counts,
        rate,
        floor,
    };
    let mut t = Table::new(
        "B4 (a) run-to-completion, 1 connection, 64 KiB echo: payload copies and zero-fills \
         per call",
        &[
            "loop",
            "calls counted",
            "client memcpys",
            "server memcpys",
            "NIC transfers client + server",
            "client host copies",
            "server host copies",
            "payload copies (NIC transfer once)",
            "client zero-fills",
            "server zero-fills",
            "server transport bytes copied",
            "calls/s",
            "CPU per call",
        ],
    );
    let f2 = |v: f64| format!("{v:.2}");
    for (name, p, r) in [
        ("transport", res.counts.map(|c| c.0), &res.rate),
        ("floor (raw Send/Recv)", res.counts.map(|c| c.1), &res.floor),
    ] {
        let k = res.per_transfer();
        let cells = match p {
            Some(p) => vec![
                p.calls.to_string(),
                f2(p.client_copies),
                f2(p.server_copies),
                format!(
                    "{} + {}",
                    f2(p.client_nic_transfers),
                    f2(p.server_nic_transfers)
                ),
                k.map_or("n/a".into(), |k| {
                    f2(p.client_copies - p.client_nic_transfers * k)
                }),
                k.map_or("n/a".into(), |k| {
                    f2(p.server_copies - p.server_nic_transfers * k)
                }),
                res.payload_copies(&p).map_or("n/a".into(), f2),
                f2(p.client_fills),
                f2(p.server_fills),
                format!("{:.0} B", p.server_transport_bytes),
            ],
            None => vec!["n/a (no hooks)".into(); 10],
        };
        let mut row = vec![name.to_string()];
        row.extend(cells);
        row.push(fmt_rate(r.rate));
        row.push(fmt_ns(r.cpu_ns));
        t.row(row);
    }
    t.note = format!(
        "Counted by interposing memcpy/memmove/memset and the global allocator in this binary \
         (bench/src/bin/bench-report/copy_hooks.rs): every copy or zero-fill (memset 0, zeroed \
         allocation) of at least {} bytes by any code while the B4 loop runs the client or the \
         server end ({} calls after a warm-up, window {E2E_WINDOW}). The mock NIC runs a work \
         request during its post (Inline delivery), so its copies count at the end that posted: \
         the call's Read chunk and the reply's Write chunk at the server, the client's Send \
         (header only, not counted) at the client. The mock NIC makes {} memcpys per payload \
         transfer (region to region: backend-mock/src/qp/dma.rs), measured on the floor, which sends from its \
         receive buffers (no host copy) and makes 2 transfers per call (one Send each way); \
         \"payload copies\" counts each NIC transfer once (the floor: 2). Host copies at an \
         end = its memcpys - its NIC transfers x memcpys per transfer; the server's NIC \
         transfers = Read + Write chunks per call from the server transport's counters. Server transport bytes copied = its `copied_bytes` \
         counter (reply headers pulled up). calls/s and CPU: median of {} runs of {:?} \
         (same loops as B4).",
        BULK / 4,
        res.counts.map_or(0, |c| c.0.calls),
        res.per_transfer().map_or("n/a".into(), f2),
        mode.e2e_reps,
        mode.e2e_for,
    );
    (t, res)
}

pub(super) fn b4_bulk_targets(r: &BulkResult) -> Table {
    let mut t = Table::new("B4 64 KiB echo targets", &["target", "measured", "verdict"]);
    let copies = r.counts.and_then(|(x, _)| r.payload_copies(&x));
    t.row(vec![
        "B4 (a) x1 64 KiB: <= 4 payload copies per call, both ends (each NIC transfer once)".into(),
        copies.map_or("n/a".into(), |c| format!("{c:.2}")),
        verdict(copies.map(|c| c <= 4.0)).into(),
    ]);
    let server = r.counts.and_then(|(x, _)| {
        r.per_transfer()
            .map(|k| x.server_copies - x.server_nic_transfers * k)
    });
    t.row(vec![
        "B4 (a) x1 64 KiB: no host copy of the payload at the server end".into(),
        server.map_or("n/a".into(), |c| format!("{c:.2}")),
        verdict(server.map(|c| c < 0.5)).into(),
    ]);
    let fills = r.counts.map(|(x, _)| x.server_fills);
    t.row(vec![
        "B4 (a) x1 64 KiB: no payload-sized zero-fill at the server end".into(),
        fills.map_or("n/a".into(), |c| format!("{c:.2}")),
        verdict(fills.map(|c| c < 0.5)).into(),
    ]);
    let ratio = ratio(r.rate.rate, r.floor.rate);
    t.row(vec![
        "B4 (a) x1 64 KiB: calls/s >= 0.7x the raw loop".into(),
        fmt_ratio(ratio),
        verdict(ratio.map(|r| r >= 0.7)).into(),
    ]);
    t
}
