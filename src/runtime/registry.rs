//! The server's live transports (`svc_xprt` list of a `svc_serv`): a
//! [`Slab`] indexed by the transport id's low half, a generation in its
//! high half, so an id that outlived its transport never names the
//! transport that reused the slot.

use super::{Entry, RtError};
use rdmaxprt_core::backend::ErrorKind;
use slab::Slab;
use std::sync::Arc;

/// One slot: the generation of the id that owns it, and the transport once
/// it is built (`None` while the id is reserved for a connection being set
/// up).
struct Slot {
    gen: u32,
    entry: Option<Arc<Entry>>,
}

/// Transport ids and the transports they name.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Slab<Slot>,
    /// Generation of the next id (never 0, so no id is 0).
    next_gen: u32,
}

/// The slab key of `id`.
fn key(id: u64) -> usize {
    (id & u64::from(u32::MAX)) as usize
}

/// The generation of `id`.
fn gen(id: u64) -> u32 {
    (id >> 32) as u32
}

impl Registry {
    /// Reserves a new id (its slot holds no transport yet).
    pub(crate) fn reserve(&mut self) -> Result<u64, RtError> {
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let g = self.next_gen;
        let v = self.slots.vacant_entry();
        let k = u32::try_from(v.key()).map_err(|_| RtError::Fatal {
            kind: ErrorKind::OutOfResources,
            msg: "more than 2^32 transport slots".into(),
        })?;
        v.insert(Slot {
            gen: g,
            entry: None,
        });
        Ok(u64::from(g) << 32 | u64::from(k))
    }

    fn slot(&self, id: u64) -> Option<&Slot> {
        self.slots.get(key(id)).filter(|s| s.gen == gen(id))
    }

    /// Puts the transport in its reserved slot; `false` if `id` is not
    /// reserved (cancelled, or never handed out).
    pub(crate) fn fill(&mut self, id: u64, e: Arc<Entry>) -> bool {
        match self.slots.get_mut(key(id)) {
            Some(s) if s.gen == gen(id) && s.entry.is_none() => {
                s.entry = Some(e);
                true
            }
            _ => false,
        }
    }

    /// The live transport `id` names (none for a stale or reserved id).
    pub(crate) fn get(&self, id: u64) -> Option<&Arc<Entry>> {
        self.slot(id).and_then(|s| s.entry.as_ref())
    }

    /// Frees `id`'s slot (live or reserved); what it held.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Arc<Entry>> {
        self.slot(id)?;
        self.slots.remove(key(id)).entry
    }

    /// Frees a reservation that never got its transport (a connection
    /// whose setup failed); a live or stale id is left alone.
    pub(crate) fn cancel(&mut self, id: u64) {
        if self.slot(id).is_some_and(|s| s.entry.is_none()) {
            self.slots.remove(key(id));
        }
    }

    /// Every live transport.
    pub(crate) fn live(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.slots.iter().filter_map(|(_, s)| s.entry.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_gets_a_new_id_and_the_old_id_names_nothing() {
        let mut r = Registry::default();
        let a = r.reserve().unwrap();
        r.cancel(a);
        let b = r.reserve().unwrap();
        assert_eq!(key(a), key(b), "the slot is reused");
        assert_ne!(a, b, "but the id is not");
        assert!(r.slot(a).is_none());
        assert!(r.remove(a).is_none(), "a stale id frees nothing");
        assert!(r.slot(b).is_some(), "b survives the stale remove");
        r.cancel(a);
        assert!(r.slot(b).is_some(), "nor a stale cancel");
        assert_ne!(a, 0);
    }
}
