//! B4's instruction profile: where a run-to-completion echo call spends
//! its instructions, as callgrind measured it (not re-measured by the
//! report: a callgrind run takes minutes). The figures were taken with
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/cg-target CARGO_PROFILE_RELEASE_DEBUG=true \
//!     cargo build -p rdmaxprt-bench --release --bin bench-report
//! valgrind --tool=callgrind /tmp/cg-target/release/bench-report --only-e2e rtc:transport:1:64:3000
//! valgrind --tool=callgrind /tmp/cg-target/release/bench-report --only-e2e rtc:raw:1:64:3000
//! callgrind_annotate --inclusive=no --auto=no callgrind.out.PID
//! ```
//!
//! and the self costs grouped by what they belong to, divided by the calls
//! completed (the `start_call` count in `--tree=caller`). They change only
//! when the code does; rerun the commands after a change to the path.

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
pub const MEASURED_64B: &str = "2026-11-25, commit a61b5f5";
/// When and at which commit the 64 KiB figures were measured.
pub const MEASURED_64K: &str = "2026-11-25, commit 0831722";

/// Calls in the profiled transport run (for the note).
pub const TRANSPORT_CALLS: u64 = 40_097;
/// Calls in the profiled floor run.
pub const FLOOR_CALLS: u64 = 118_432;

/// The measured groups, largest first (self instructions per call).
pub const COSTS: [Cost; 8] = [
    Cost {
        what: "heap: malloc/free/realloc (~20 allocations + 19 frees per call; floor: 4 + 4)",
        transport: 5417,
        floor: 804,
        fix: "client: encode header + call straight into a persistently mapped send-buffer ring \
              (like its RecvRing) instead of `msg`/`wire` Vecs and a fresh MockBuf per call; \
              server: SmallVec/scratch for sendto's `writes`/`pieces`/`written_chunks`/chain \
              Vecs, hand the service a borrowed receive buffer instead of `body.to_vec()`, \
              Dispatcher encoding the reply header into the context's header buffer and no \
              `progs` Vec; mock: SmallVec for PendingWr SGEs and copy region-to-region without \
              the temporary gather Vec",
    },
    Cost {
        what: "mock NIC: post/poll/exec (pair mutex, VecDeque, step_one ~10x per call)",
        transport: 2244,
        floor: 2076,
        fix: "mostly the floor's own cost; client `try_wait`/`poll` polls both CQs until empty \
              (4 pair-mutex round trips per poll): poll once per turn and batch, or a \
              poll_both() in the mock taking the lock once",
    },
    Cost {
        what: "server transport + pool + core library code",
        transport: 2018,
        floor: 82,
        fix: "the path itself (recvfrom, sendto, drain, flags); little left once allocations go",
    },
    Cost {
        what: "mock DMA tracker: BTreeMap resolve/map/unmap (4 resolves + 1 map/unmap per call)",
        transport: 1758,
        floor: 693,
        fix: "client send buffers mapped once (removes a map + unmap + Arc region drop per \
              call); in the mock, a per-lkey direct index or a last-hit cache in `resolve`",
    },
    Cost {
        what: "SipHash + hashbrown: client `pending`/`done`/SendBufs HashMaps (~6 lookups/call)",
        transport: 1310,
        floor: 0,
        fix: "index calls by xid modulo a power-of-two window (slab) or use FxHash/ahash; \
              `take_xid`'s two contains_key go with it",
    },
    Cost {
        what: "RPC-over-RDMA header encode/decode (decode_header, decode_reply_header)",
        transport: 1025,
        floor: 0,
        fix: "decode chunk lists into SmallVecs / with_capacity, skipping the Vec growth \
              (realloc) for the empty lists of an inline call",
    },
    Cost {
        what: "service dispatch + ONC RPC codec",
        transport: 543,
        floor: 0,
        fix: "see heap: most of it is the header/results Vec building",
    },
    Cost {
        what: "client logic (rpc.rs, post.rs, reply.rs)",
        transport: 520,
        floor: 0,
        fix: "-",
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
         region-to-region without an intermediate Vec",
    ),
    (
        "~5 zero-fills of 64 KiB per call (calloc + `Offered::gather` memset)",
        "client `register_remote` allocates zeroed 64 KiB MRs per call (Read and Write \
         chunk), server Read buffer per call, `Offered::gather` clears",
        "pool and reuse registered chunk buffers per credit (client) and Read buffers per \
         transport (server: done since, 0 server zero-fills in the B4 copies table); skip \
         zeroing memory the NIC is about to overwrite",
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
        "total (listed groups; whole run incl. memcpy, harness: ~16.3K vs ~4.2K)".into(),
        x.to_string(),
        f.to_string(),
        String::new(),
    ]);
    t.note = format!(
        "Measured once with callgrind (not by this report; commands in bench/src/profile.rs), \
         self instructions grouped by owner / calls completed: transport {TRANSPORT_CALLS} calls \
         (`--only-e2e rtc:transport:1:64:3000`), floor {FLOOR_CALLS} calls \
         (`--only-e2e rtc:raw:1:64:3000`). The raw mock loop alone costs ~4.2K instructions \
         (~1.3 us measured) per call, so the < 0.5 us CPU target for both ends cannot be met \
         on this mock NIC whatever the transport does; the transport's own excess over the \
         floor is ~12K instructions per call, a third of it heap traffic."
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
