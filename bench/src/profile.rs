//! B4's instruction profile: where a run-to-completion echo call spends
//! its instructions, as callgrind measured it (not re-measured by the
//! report: a callgrind run takes minutes). The 64 B figures were taken
//! with the plain release build (its symbols name every function):
//!
//! ```text
//! cargo build -p rdmaxprt-bench --release --bin bench-report
//! valgrind --tool=callgrind target/release/bench-report --only-e2e rtc:transport:1:64:3000
//! valgrind --tool=callgrind target/release/bench-report --only-e2e rtc:raw:1:64:3000
//! callgrind_annotate --threshold=100 callgrind.out.PID
//! ```
//!
//! and the self costs grouped by the crate or module each function belongs
//! to, divided by the calls completed (the count `--only-e2e` prints). They
//! change only when the code does; rerun the commands after a change to
//! the path. (The 64 KiB figures: the same with
//! `CARGO_PROFILE_RELEASE_DEBUG=true` in a separate target dir.)

use crate::report::Table;

/// One cost group of the per-call profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// What the instructions belong to.
    pub what: &'static str,
    /// Instructions per call, transport path (64 B, 1 connection).
    pub transport: u32,
    /// Instructions per call, raw mock echo floor.
    pub floor: u32,
    /// What would remove it (outside `bench/`).
    pub fix: &'static str,
}

/// When and at which commit the 64 B figures were measured (they are not
/// re-measured by the report).
pub const MEASURED_64B: &str = "2026-12-07, commit 91257dc";
/// When and at which commit the 64 KiB figures were measured.
pub const MEASURED_64K: &str = "2026-11-25, commit 0831722";

/// Calls in the profiled transport run (for the note).
pub const TRANSPORT_CALLS: u64 = 41_088;
/// Calls in the profiled floor run.
pub const FLOOR_CALLS: u64 = 65_792;

/// The measured groups, largest first (self instructions per call).
pub const COSTS: [Cost; 10] = [
    Cost {
        what: "mock NIC: post/poll/exec, copies (pair mutex, VecDeque, step_one)",
        transport: 2421,
        floor: 2727,
        fix: "mostly the floor's own cost (the transport polls in batches, so it pays a \
              little less per call than the raw loop)",
    },
    Cost {
        what: "server transport + pool + core library code (runtime pass included)",
        transport: 1860,
        floor: 106,
        fix: "the path itself (recvfrom, sendto, drain, flags, CallMeta)",
    },
    Cost {
        what: "client (rpc.rs, marshal.rs, post.rs, reply.rs, calls.rs)",
        transport: 1041,
        floor: 0,
        fix: "reply decode glue; the results `Vec` of `ReplyBytes` is the one allocation \
              per call left (the client's)",
    },
    Cost {
        what: "RPC-over-RDMA header encode/decode (decode_header, decode_reply_header)",
        transport: 954,
        floor: 0,
        fix: "decode chunk lists without collecting them (an inline call has three empty \
              lists)",
    },
    Cost {
        what: "memcpy/memset",
        transport: 675,
        floor: 117,
        fix: "-",
    },
    Cost {
        what: "service dispatch + ONC RPC codec",
        transport: 604,
        floor: 0,
        fix: "-",
    },
    Cost {
        what: "Vec collect/resize, clock reads, latency sort (harness and library glue)",
        transport: 474,
        floor: 248,
        fix: "-",
    },
    Cost {
        what: "mock DMA tracker: resolve by address window (4 resolves per call)",
        transport: 390,
        floor: 388,
        fix: "the floor's own cost",
    },
    Cost {
        what: "bench loop",
        transport: 280,
        floor: 221,
        fix: "-",
    },
    Cost {
        what: "heap: malloc/free/realloc (1.0 allocation per call: the client's results \
               `Vec`; server 0 since the reply chain, receive batches and reply body are \
               reused; floor: 0)",
        transport: 167,
        floor: 1,
        fix: "client: lend the results from the receive buffer",
    },
];

/// The 64 KiB echo (`--only-e2e rtc:transport:1:65536:3000`, 289 calls
/// under callgrind): payload-sized copies and zero-fills per call, with
/// their sources and fixes. The floor copies the payload twice (one Send
/// each way).
pub const BULK_64K: [(&str, &str, &str); 3] = [
    (
        "11 payload copies per call (floor: 2)",
        "mock Read + Write gather (`Region::nic_read`) 2, mock scatter/step_one 2, client \
         writes args into its Read-chunk MR 1, client mock backend copies 2, server \
         `read::assemble` 1, service `args.to_vec()` 1, `sendto` staging into the send \
         context 1, client `bulk` to_vec 1",
        "server (done since: the call is lent from its pooled landing buffer, `Bulk::Args` \
         lends the arguments back, the Write gathers from the landing buffer; 0 server copies \
         in the B4 copies table): let the service take the pulled Read buffer (no assemble \
         copy) and post the Write from the service's buffer mapped in place (no staging copy); \
         service API: borrow args, return a borrowed/owned bulk buffer without to_vec; client: \
         register the \
         caller's args/result buffers instead of copying into fresh MRs; mock: copy \
         region-to-region without an intermediate Vec (done since: backend-mock/src/qp/dma.rs, \
         1 memcpy per NIC transfer)",
    ),
    (
        "~5 zero-fills of 64 KiB per call (calloc + `Offered::gather` memset)",
        "client `register_remote` allocates zeroed 64 KiB MRs per call (Read and Write \
         chunk), server Read buffer per call, `Offered::gather` clears",
        "pool and reuse registered chunk buffers per credit (client: done since, a chunk \
         pool registered once per connection, regions not zeroed per call, and `gather` \
         writes into the result without clearing it first only where the server wrote) and \
         Read buffers per transport (server: done since, 0 server zero-fills in the B4 \
         copies table); skip zeroing memory the NIC is about to overwrite",
    ),
    (
        "everything else (allocations, tracker, mock, transport)",
        "~36K instructions per call, under 4% of the call",
        "as for 64 B",
    ),
];

/// The 64 KiB profile as a report table.
pub fn bulk_table() -> Table {
    let mut t = Table::new(
        format!(
            "B4 profile: 64 KiB run-to-completion echo (callgrind, measured {MEASURED_64K}; \
             not re-run by this report)"
        ),
        &["cost per call", "where", "suggested fix (outside bench/)"],
    );
    for (what, r#where, fix) in BULK_64K {
        t.row(vec![what.into(), r#where.into(), fix.into()]);
    }
    t.note = "Memory traffic is ~96% of the instructions (valgrind counts `rep movsb` per byte, \
              so copies dominate even more there than in time); measured 64 KiB calls/s are \
              0.26-0.35x the floor, in line with ~11 copies + ~5 fills vs 2 copies."
        .into();
    t
}

/// The profile as a report table.
pub fn table() -> Table {
    let mut t = Table::new(
        format!(
            "B4 profile: instructions per 64 B run-to-completion echo call (callgrind, measured \
             {MEASURED_64B}; not re-run by this report)"
        ),
        &[
            "cost",
            "transport instr/call",
            "floor instr/call",
            "suggested fix (outside bench/)",
        ],
    );
    let (mut x, mut f) = (0u32, 0u32);
    for c in COSTS {
        x += c.transport;
        f += c.floor;
        t.row(vec![
            c.what.into(),
            c.transport.to_string(),
            c.floor.to_string(),
            c.fix.into(),
        ]);
    }
    t.row(vec![
        "total (every group; before the client/mock work of issue 11: ~15.9K vs ~4.5K; at \
         2b02dd4, before the server's allocations went: ~9.2K vs ~3.7K)"
            .into(),
        x.to_string(),
        f.to_string(),
        String::new(),
    ]);
    t.note = format!(
        "Measured once with callgrind (not by this report; commands in bench/src/profile.rs), \
         self instructions grouped by owner / calls completed: transport {TRANSPORT_CALLS} calls \
         (`--only-e2e rtc:transport:1:64:3000`), floor {FLOOR_CALLS} calls \
         (`--only-e2e rtc:raw:1:64:3000`). Before the client and mock work of issue 11 \
         (commit 0a8efcc) the transport ran ~15.9K instructions and 18.8 allocations per \
         call (heap 4.6K, mock BTreeMaps 1.8K, client SipHash maps 1.1K) against the floor's \
         ~4.5K and 4.0; the mock also made a futex syscall per notify with nobody asleep \
         (~8 per call, invisible to callgrind), which is gone. What the transport adds over \
         the floor now is mostly the server's path and the codecs. More connections cost \
         cache misses, not instructions (callgrind --cache-sim, D1 32 KiB/8, LL 1 MiB/16, \
         measured {MEASURED_64B}): per call at 1 / 16 / 64 connections the transport runs \
         8.8K / 8.7K / 8.3K instructions with 0.13 / 2.2 / 38 LL misses, the floor 2.3K with \
         0.13 / 0.14 / 0.17. Each call lands in the oldest of credits + batch = 72 posted \
         4 KiB receive buffers per connection (the floor posts its window of 8, 64 B each) and \
         touches that buffer's tracker entry, receive context and the send context, send and \
         receive rings of the client: a footprint of connections x ring depth; the mock \
         tracker's lookups are 7.5 of the 38."
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_every_cost_and_a_total() {
        let t = table();
        assert_eq!(t.rows.len(), COSTS.len() + 1);
        let total: u32 = COSTS.iter().map(|c| c.transport).sum();
        assert_eq!(t.rows.last().map(|r| r[1].clone()), Some(total.to_string()));
        // Largest first.
        assert!(COSTS.windows(2).all(|w| w[0].transport >= w[1].transport));
        assert_eq!(bulk_table().rows.len(), BULK_64K.len());
    }
}
