//! `Probe` version 3: version 1 plus one method. `probe_add` keeps its
//! method id, so a client of this version boots against a version-1
//! server; `probe_twice` is not exported there, so it is never granted and
//! answers `BadSlot` without reaching the VMM.

/// [`crate::v1::Probe`] with a method added.
#[ferry_interface::interface]
pub trait Probe {
    /// Add `by` to `*value` (INOUT) and answer the sum.
    fn probe_add(&self, value: &mut u64, by: u64) -> u64;
    /// Double `*value` (INOUT) and answer it.
    fn probe_twice(&self, value: &mut u64) -> u64;
}
