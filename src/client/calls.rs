//! The client's calls by xid: an xid-indexed table (slot `xid & mask`)
//! instead of a SipHash map. The client picks its xids, so it skips any
//! whose slot is taken ([`CallTable::is_free`]) and no two entries ever
//! share a slot; a lookup is one index and one xid compare, and a reply
//! whose xid is unknown or stale (its slot empty or holding another xid)
//! finds nothing.

/// Entries of type `T` keyed by xid, at most one per slot.
pub(super) struct CallTable<T> {
    slots: Vec<Option<(u32, T)>>,
    len: usize,
}

/// Slots of a new table (a power of two).
const MIN_SLOTS: usize = 16;

impl<T> CallTable<T> {
    /// A table with room for at least `expected` entries at half load.
    pub(super) fn with_capacity(expected: usize) -> Self {
        let n = expected
            .saturating_mul(2)
            .max(MIN_SLOTS)
            .checked_next_power_of_two()
            .unwrap_or(MIN_SLOTS);
        Self {
            slots: (0..n).map(|_| None).collect(),
            len: 0,
        }
    }

    #[inline]
    fn slot(&self, xid: u32) -> usize {
        // `slots.len()` is a power of two no larger than 2^32 in practice
        // (it doubles only while half full); the mask keeps the low bits.
        (xid as usize) & (self.slots.len() - 1)
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether `xid` can be inserted: its slot is empty.
    #[inline]
    pub(super) fn is_free(&self, xid: u32) -> bool {
        self.slots[self.slot(xid)].is_none()
    }

    /// Inserts the entry `make` builds under `xid`, built right in its slot
    /// (a large entry is not moved through the call), if the slot is free
    /// ([`is_free`](Self::is_free)); otherwise returns `false` without
    /// calling `make`. Doubles the table first if it is half full (entries
    /// of distinct slots stay in distinct slots under the larger mask).
    #[inline]
    pub(super) fn insert_with(&mut self, xid: u32, make: impl FnOnce() -> T) -> bool {
        if !self.is_free(xid) {
            return false;
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let i = self.slot(xid);
        self.slots[i] = Some((xid, make()));
        self.len += 1;
        true
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, (0..n).map(|_| None).collect());
        for (xid, v) in old.into_iter().flatten() {
            let i = self.slot(xid);
            self.slots[i] = Some((xid, v));
        }
    }

    /// The entry of `xid`, if held.
    #[inline]
    pub(super) fn get(&self, xid: u32) -> Option<&T> {
        match &self.slots[self.slot(xid)] {
            Some((x, v)) if *x == xid => Some(v),
            _ => None,
        }
    }

    /// The entry of `xid`, writable, if held.
    #[inline]
    pub(super) fn get_mut(&mut self, xid: u32) -> Option<&mut T> {
        let i = self.slot(xid);
        match &mut self.slots[i] {
            Some((x, v)) if *x == xid => Some(v),
            _ => None,
        }
    }

    /// Removes and returns the entry of `xid` if it is held and `take`
    /// accepts it (one lookup for "take it if it is done").
    #[inline]
    pub(super) fn remove_if(&mut self, xid: u32, take: impl FnOnce(&T) -> bool) -> Option<T> {
        let i = self.slot(xid);
        match &self.slots[i] {
            Some((x, v)) if *x == xid && take(v) => {
                self.len -= 1;
                self.slots[i].take().map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Every entry, writable, with its xid.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.as_mut().map(|(x, v)| (*x, v)))
    }

    /// Removes every entry.
    pub(super) fn clear(&mut self) {
        for s in &mut self.slots {
            *s = None;
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_check_the_xid_not_just_the_slot() {
        let mut t = CallTable::with_capacity(4);
        assert_eq!(t.slots.len(), 16);
        assert!(t.insert_with(5, || "five"));
        // Same slot (5 + 16), another xid: not found, not insertable.
        assert_eq!(t.get(21), None);
        assert_eq!(t.remove_if(21, |_| true), None);
        assert!(!t.is_free(21));
        assert!(!t.insert_with(21, || panic!("made for a taken slot")));
        assert_eq!(t.get(5), Some(&"five"));
        assert_eq!(t.remove_if(5, |_| true), Some("five"));
        assert_eq!(t.remove_if(5, |_| true), None, "removed twice");
        assert!(t.insert_with(5, || "five"));
        assert_eq!(t.remove_if(5, |v| *v == "six"), None, "refused");
        assert_eq!(t.remove_if(21, |_| true), None, "same slot, other xid");
        assert_eq!(t.remove_if(5, |v| *v == "five"), Some("five"));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn growing_keeps_every_entry_findable() {
        let mut t = CallTable::with_capacity(1);
        let xids: Vec<u32> = (0..100u32).map(|i| 0xfff0_0000 + i * 3).collect();
        for &x in &xids {
            assert!(t.is_free(x));
            assert!(t.insert_with(x, || x ^ 0xabcd));
        }
        assert_eq!(t.len(), 100);
        assert!(t.slots.len() >= 200);
        for &x in &xids {
            assert_eq!(t.get(x), Some(&(x ^ 0xabcd)));
        }
        assert_eq!(t.get(0xfff0_0001), None);
        let mut seen: Vec<u32> = t.iter_mut().map(|(x, _)| x).collect();
        seen.sort_unstable();
        assert_eq!(seen, xids);
        t.clear();
        assert_eq!(t.len(), 0);
        assert_eq!(t.get(xids[0]), None);
    }
}
