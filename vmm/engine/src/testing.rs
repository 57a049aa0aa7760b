//! Internals the integration tests need and users never do: hooks that make
//! KVM failures happen on demand. Compiled only with the `test-util`
//! feature, so they are not part of the public API.

/// Make the next `n` vCPU creations of any domain fail as if KVM were out
/// of memory (a failed creation must not leave its slot counted as live).
pub fn fail_next_vcpu_creations(n: u32) {
    crate::domain::vcpu_pool::FAIL_NEXT_CREATIONS.store(n, std::sync::atomic::Ordering::Release);
}
