//! The capability table: for each calling domain, its slots resolved to a
//! callee domain and entry once, at boot, so a call looks up two indices
//! and nothing else.

use crate::ids::{DomainId, EntryIndex, Slot};

/// A capability resolved to the callee's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The callee.
    pub domain: DomainId,
    /// The entry in the callee's table.
    pub entry: EntryIndex,
}

/// Every domain's capabilities, by caller then slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapTable {
    by_caller: Vec<Vec<Capability>>,
}

impl CapTable {
    /// A table from each domain's resolved slots (index = domain id).
    pub fn new(by_caller: Vec<Vec<Capability>>) -> Self {
        Self { by_caller }
    }

    /// Capability `slot` of `caller`; `None` is a `BadSlot` refusal.
    pub fn get(&self, caller: DomainId, slot: Slot) -> Option<Capability> {
        self.by_caller
            .get(caller.index())?
            .get(slot.index())
            .copied()
    }
}
