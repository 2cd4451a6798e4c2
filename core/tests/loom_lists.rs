//! Loom models of the lock-free lists.
#![cfg(rdmaxprt_loom)]

#[path = "common/loom_model.rs"]
mod loom_model;

use loom::sync::atomic::AtomicU32;
use loom::sync::Arc;
use loom::thread;
use rdmaxprt_core::llist::{FreeList, LockedFreeList, ReleaseList, TaggedFreeList, NIL};

fn links(n: usize) -> Arc<Vec<AtomicU32>> {
    Arc::new((0..n).map(|_| AtomicU32::new(NIL)).collect())
}

/// Two producers push while one consumer takes all: every node is seen
/// exactly once, and the empty edge is reported once per empty period.
#[test]
fn release_list_producers_and_take_all_consumer() {
    loom_model::check("release_list_producers_and_take_all_consumer", || {
        let l = links(4);
        let list = Arc::new(ReleaseList::new());
        let producers: Vec<_> = [[0u32, 1], [2, 3]]
            .into_iter()
            .map(|nodes| {
                let (l, list) = (l.clone(), list.clone());
                thread::spawn(move || nodes.iter().filter(|&&i| list.push(&l[..], i)).count())
            })
            .collect();
        let taken_mid: Vec<u32> = list.take_all(&l[..]).collect();
        let edges: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
        let rest: Vec<u32> = list.take_all(&l[..]).collect();
        let mut all: Vec<u32> = taken_mid.iter().chain(rest.iter()).copied().collect();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3], "a node was lost or duplicated");
        assert!(edges >= 1);
        // A second edge is possible only if the consumer emptied the list
        // in between.
        assert!(
            edges <= 1 + usize::from(!taken_mid.is_empty()),
            "spurious edge"
        );
    });
}

fn free_list_pop_push_no_aba<F: FreeList + Default + 'static>(name: &str) {
    loom_model::check(name, || {
        let l = links(3);
        let f = Arc::new(F::default());
        for i in 0..3 {
            f.push(&l[..], i);
        }
        let ths: Vec<_> = (0..2)
            .map(|_| {
                let (l, f) = (l.clone(), f.clone());
                thread::spawn(move || {
                    let a = f.pop(&l[..]).expect("3 nodes, 2 poppers");
                    let b = f.pop(&l[..]);
                    f.push(&l[..], a);
                    if let Some(b) = b {
                        f.push(&l[..], b);
                    }
                })
            })
            .collect();
        for t in ths {
            t.join().unwrap();
        }
        let mut all = Vec::new();
        while let Some(i) = f.pop(&l[..]) {
            all.push(i);
            assert!(all.len() <= 3, "cycle in the free list (ABA)");
        }
        all.sort();
        assert_eq!(all, [0, 1, 2], "a node was lost or duplicated");
    });
}

#[test]
fn tagged_free_list_concurrent_pop_push_has_no_aba() {
    free_list_pop_push_no_aba::<TaggedFreeList>("tagged_free_list_concurrent_pop_push_has_no_aba");
}

#[test]
fn locked_free_list_concurrent_pop_push_has_no_aba() {
    free_list_pop_push_no_aba::<LockedFreeList>("locked_free_list_concurrent_pop_push_has_no_aba");
}

/// The spin mutex: two threads each do a read-modify-write of a plain
/// (non-atomic) value under the lock; no update is lost, and loom's tracked
/// cell finds no overlapping access (it would if two guards coexisted).
#[test]
fn spin_mutex_excludes() {
    use rdmaxprt_core::spin::SpinMutex;
    loom_model::check("spin_mutex_excludes", || {
        let m = Arc::new(SpinMutex::new(0u32));
        let t = {
            let m = m.clone();
            thread::spawn(move || {
                let mut g = m.lock();
                let v = *g;
                *g = v + 1;
            })
        };
        {
            let mut g = m.lock();
            let v = *g;
            *g = v + 1;
        }
        t.join().unwrap();
        assert_eq!(*m.lock(), 2);
    });
}
