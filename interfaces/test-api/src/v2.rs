//! `Probe` version 2: `probe_add` takes a `u32` counter, so its method id
//! differs from version 1's although the interface and method names match.
//! A client of this version and a server of version 1 are refused at boot.

/// [`crate::v1::Probe`] with a narrower counter.
#[ferry_interface::interface]
pub trait Probe {
    /// Add `by` to `*value` (INOUT) and answer the sum.
    fn probe_add(&self, value: &mut u32, by: u64) -> u64;
}
