//! `Probe` version 1: the definition the `typed_v1` server serves.

/// A counter a caller lends by reference.
#[ferry_interface::interface]
pub trait Probe {
    /// Add `by` to `*value` (INOUT) and answer the sum.
    fn probe_add(&self, value: &mut u64, by: u64) -> u64;
}
