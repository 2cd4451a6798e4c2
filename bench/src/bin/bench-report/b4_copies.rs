//! B4 64 KiB echo, run-to-completion: payload copies and zero-fills per
//! call at each end (counted by `copy_hooks`, one connection), and calls/s
//! against the raw loop at 1 and 16 connections, both measured in this
//! run; the client copying the payload (`start_call`) and lending it
//! (`lend` / `start_lent`).

use super::*;
use rdmaxprt_bench::copies::{self, Measured, PerCall};
use rdmaxprt_bench::rtc::ClientPath;

/// The echo size.
pub(super) const BULK: usize = 64 << 10;

/// Connection counts of the rate rows.
const BULK_CONNS: [usize; 2] = [1, 16];

/// What the bulk measurement found.
pub(super) struct BulkResult {
    /// Copies and fills per call (1 connection).
    counts: Option<Measured>,
    /// Per connection count of [`BULK_CONNS`]: calls/s and CPU per call.
    rates: Vec<Rates>,
}

/// Medians of one connection count's interleaved runs.
struct Rates {
    conns: usize,
    copying: Med,
    lending: Med,
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
        let f = self.counts?.floor;
        Some(f.copies() / f.nic_transfers())
    }

    /// Payload copies per call with each NIC transfer counted once (the
    /// issue's count, in which the floor makes 2).
    fn payload_copies(&self, p: &PerCall) -> Option<f64> {
        let k = self.per_transfer()?;
        Some(p.copies() - p.nic_transfers() * (k - 1.0))
    }

    /// The rates at `conns` connections.
    fn at(&self, conns: usize) -> Option<&Rates> {
        self.rates.iter().find(|r| r.conns == conns)
    }
}

pub(super) fn b4_bulk(mode: &Mode) -> (Table, BulkResult) {
    eprintln!("B4 bulk copies and rate ...");
    let calls = if mode.quick { 300 } else { 2000 };
    let counts = copies::measure(BULK, E2E_WINDOW, calls);
    // Interleaved, so load changes hit all three alike.
    let rates = BULK_CONNS
        .iter()
        .map(|&conns| {
            let (mut xs, mut ls, mut fs) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..mode.e2e_reps.max(1) {
                let d = mode.e2e_for;
                xs.push(rtc::run_path(conns, BULK, E2E_WINDOW, d, ClientPath::Copy));
                ls.push(rtc::run_path(conns, BULK, E2E_WINDOW, d, ClientPath::Lend));
                fs.push(rtc::run_raw(conns, BULK, E2E_WINDOW, d));
            }
            Rates {
                conns,
                copying: med(&xs),
                lending: med(&ls),
                floor: med(&fs),
            }
        })
        .collect();
    let res = BulkResult { counts, rates };
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
    let one = res.at(1);
    for (name, p, r) in [
        (
            "transport, client copies (start_call)",
            res.counts.map(|c| c.copying),
            one.map(|r| &r.copying),
        ),
        (
            "transport, client lends (start_lent)",
            res.counts.map(|c| c.lending),
            one.map(|r| &r.lending),
        ),
        (
            "floor (raw Send/Recv)",
            res.counts.map(|c| c.floor),
            one.map(|r| &r.floor),
        ),
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
        row.push(r.map_or("n/a".into(), |r| fmt_rate(r.rate)));
        row.push(r.map_or("n/a".into(), |r| fmt_ns(r.cpu_ns)));
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
         counter (reply headers pulled up). The lending client writes the whole payload into \
         each lent buffer during the warm-up, then only an 8-byte stamp per call, and reads \
         the stamp back from the reply's Write chunk in place (the floor sends pre-filled \
         buffers and checks lengths). calls/s and CPU (1 connection): median of {} runs of \
         {:?}, the three loops interleaved (same loops as B4).",
        BULK / 4,
        res.counts.map_or(0, |c| c.copying.calls),
        res.per_transfer().map_or("n/a".into(), f2),
        mode.e2e_reps,
        mode.e2e_for,
    );
    (t, res)
}

/// Calls/s and CPU per call at 1 and 16 connections, each against the
/// floor measured in the same interleaved runs.
pub(super) fn b4_bulk_rates(r: &BulkResult) -> Table {
    let mut t = Table::new(
        "B4 (a) run-to-completion, 64 KiB echo: calls/s vs the raw loop, client copying or \
         lending",
        &[
            "connections",
            "floor calls/s",
            "floor CPU per call",
            "copying calls/s",
            "copying CPU per call",
            "copying / floor",
            "lending calls/s",
            "lending CPU per call",
            "lending / floor",
        ],
    );
    for x in &r.rates {
        t.row(vec![
            x.conns.to_string(),
            fmt_rate(x.floor.rate),
            fmt_ns(x.floor.cpu_ns),
            fmt_rate(x.copying.rate),
            fmt_ns(x.copying.cpu_ns),
            fmt_ratio(ratio(x.copying.rate, x.floor.rate)),
            fmt_rate(x.lending.rate),
            fmt_ns(x.lending.cpu_ns),
            fmt_ratio(ratio(x.lending.rate, x.floor.rate)),
        ]);
    }
    t.note = "Medians of interleaved runs (copying, lending, floor, repeated), window \
              8 per connection, one thread (B4 (a))."
        .into();
    t
}

pub(super) fn b4_bulk_targets(r: &BulkResult) -> Table {
    let mut t = Table::new("B4 64 KiB echo targets", &["target", "measured", "verdict"]);
    let copies = r.counts.and_then(|c| r.payload_copies(&c.copying));
    t.row(vec![
        "B4 (a) x1 64 KiB, client copying: <= 4 payload copies per call, both ends (each NIC \
         transfer once)"
            .into(),
        copies.map_or("n/a".into(), |c| format!("{c:.2}")),
        verdict(copies.map(|c| c <= 4.0)).into(),
    ]);
    let lent = r.counts.and_then(|c| r.payload_copies(&c.lending));
    t.row(vec![
        "B4 (a) x1 64 KiB, client lending: 2 payload copies per call (the NIC transfers only)"
            .into(),
        lent.map_or("n/a".into(), |c| format!("{c:.2}")),
        verdict(lent.map(|c| c <= 2.0 + 1e-9)).into(),
    ]);
    let server = r.counts.and_then(|c| {
        r.per_transfer()
            .map(|k| c.lending.server_copies - c.lending.server_nic_transfers * k)
    });
    t.row(vec![
        "B4 (a) x1 64 KiB: no host copy of the payload at the server end".into(),
        server.map_or("n/a".into(), |c| format!("{c:.2}")),
        verdict(server.map(|c| c < 0.5)).into(),
    ]);
    let fills = r
        .counts
        .map(|c| c.lending.server_fills.max(c.copying.server_fills));
    t.row(vec![
        "B4 (a) x1 64 KiB: no payload-sized zero-fill at the server end".into(),
        fills.map_or("n/a".into(), |c| format!("{c:.2}")),
        verdict(fills.map(|c| c < 0.5)).into(),
    ]);
    for x in &r.rates {
        let copying = ratio(x.copying.rate, x.floor.rate);
        t.row(vec![
            format!(
                "B4 (a) x{} 64 KiB, client copying: calls/s >= 0.7x the raw loop",
                x.conns
            ),
            fmt_ratio(copying),
            verdict(copying.map(|r| r >= 0.7)).into(),
        ]);
        let lending = ratio(x.lending.rate, x.floor.rate);
        t.row(vec![
            format!(
                "B4 (a) x{} 64 KiB, client lending: calls/s >= 0.7x the raw loop",
                x.conns
            ),
            fmt_ratio(lending),
            verdict(lending.map(|r| r >= 0.7)).into(),
        ]);
    }
    t
}
