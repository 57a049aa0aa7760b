//! The benchmark callees: what `ferry bench` calls, raw and typed.
//!
//! The `bench` image serves [`Bench`]; its call loops reach it through the
//! raw API (descriptors built by hand, the path every figure measures) and,
//! for the stub-cost figure, through [`BenchClient`].
#![no_std]
#![deny(missing_docs)]

use ferry_interface::AppError;

/// Callees that do as little as possible, so a figure is the cost of the
/// call itself.
#[ferry_interface::interface]
pub trait Bench {
    /// Nothing: the null call.
    fn null(&self);
    /// Take one IN object and answer its length without touching it.
    fn sink_in(&self, data: &[u8]) -> u64;
    /// Take one OUT object (zero-filled by the VMM) and answer its length.
    fn sink_out(&self, #[out] data: &mut [u8]) -> u64;
    /// Take one INOUT object and answer its length without touching it.
    fn sink_inout(&self, data: &mut [u8]) -> u64;
    /// Call the next domain's `relay` with `depth - 1` (through capability
    /// slot 0) while `depth > 0`; answer `depth`.
    fn relay(&self, depth: u64) -> Result<u64, BenchError>;
}

/// Why a callee failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AppError)]
#[repr(u32)]
pub enum BenchError {
    /// `relay`'s nested call failed.
    RelayFailed = 1,
}
