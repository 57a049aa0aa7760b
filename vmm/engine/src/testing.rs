//! Internals the integration tests need and users never do: hooks that make
//! KVM failures happen on demand. Compiled only with the `test-util`
//! feature, so they are not part of the public API.

use crate::domain::Domain;

/// Make `domain`'s next `n` vCPU creations fail as if KVM were out of
/// memory (a failed creation must not leave its slot counted as live).
pub fn fail_next_vcpu_creations(domain: &Domain, n: u32) {
    domain.fail_next_vcpu_creations(n);
}

/// `KVM_RUN`s and other vCPU ioctls made so far, process-wide (the hot-path
/// test asserts a warm call makes no ioctl but `KVM_RUN`).
pub fn vcpu_ioctl_counts() -> (u64, u64) {
    crate::vcpu::ioctl_counts()
}

/// Budget publications (frame pushes and pops on meters) of every chain
/// that has ended, and kicks sent, process-wide.
pub fn budget_counts() -> (u64, u64) {
    (crate::watch::publications(), crate::watch::kick::sent())
}

/// Write `bytes` into `domain`'s memory at `addr`, as a test standing in
/// for another party that shares the page would.
pub fn write_guest(domain: &Domain, addr: u64, bytes: &[u8]) -> Result<(), String> {
    crate::guest_io::write(domain.mem(), addr, bytes).map_err(|e| e.to_string())
}
