//! Internals the integration tests need and users never do: hooks that make
//! KVM failures happen on demand. Compiled only with the `test-util`
//! feature, so they are not part of the public API.

use crate::domain::Domain;

/// Make `domain`'s next `n` vCPU creations fail as if KVM were out of
/// memory (a failed creation must not leave its slot counted as live).
pub fn fail_next_vcpu_creations(domain: &Domain, n: u32) {
    domain.fail_next_vcpu_creations(n);
}
