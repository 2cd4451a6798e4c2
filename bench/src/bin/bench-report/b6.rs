//! B6 (free-list pop+push pairs).

use super::*;

pub(super) fn b6(mode: &Mode) -> Table {
    let mut t = Table::new(
        "B6 free-list pop+push pairs",
        &[
            "list",
            "threads",
            "ns/pair (median)",
            "min..max",
            "floor: 2 shared fetch_add",
            "ratio to floor",
            "thread overlap (kept/tried): list / floor",
        ],
    );
    for threads in THREADS {
        let f = med(mode.reps, || {
            freelist::time_pairs(ListKind::Floor, threads, mode.pairs)
        });
        for kind in [ListKind::Locked, ListKind::Tagged] {
            let m = med(mode.reps, || {
                freelist::time_pairs(kind, threads, mode.pairs)
            });
            t.row(vec![
                kind.to_string(),
                threads.to_string(),
                fmt_ns(m.ns),
                m.range(),
                fmt_ns(f.ns),
                fmt_ratio(ratio(m.ns, f.ns)),
                if threads == 1 {
                    "-".into()
                } else {
                    format!("{} / {}", m.overlap_cell(), f.overlap_cell())
                },
            ]);
        }
    }
    t.note = format!(
        "{} pairs per thread per run, {} nodes on the list, median of {} runs; per-pair time \
         as each thread sees it.",
        mode.pairs,
        freelist::NODES,
        mode.reps
    );
    t
}
