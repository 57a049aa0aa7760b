//! The host TSC: time accounting for migrating threads and the direct
//! measurement of VMM work between two `KVM_RUN`s. Cycles, not nanoseconds:
//! on a noisy shared host the figures that carry are ratios.

/// Read the host time-stamp counter.
#[inline]
pub fn now() -> u64 {
    // SAFETY: `rdtsc` reads a counter and touches no memory; every x86-64
    // CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}
