//! Ferry's host side: every domain is a tiny `no_std` guest in its own KVM
//! VM, and threads migrate between them. A thread calling into another
//! domain keeps its identity; it gets a fresh stack from the callee's pool
//! and the objects named in its argument list are copied in and back out.
//!
//! Start at [`system::System::boot`] and [`system::System::run`]; one call's
//! journey is in `migrate/` (crate-private; docs/ARCHITECTURE.md follows it).
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

// Layer 1: leaves.
pub(crate) mod arch;
pub mod clock;
pub(crate) mod guest_io;
pub mod guest_text;
pub mod host_heap;
pub mod host_limits;
pub(crate) mod hypercall;
pub mod ids;
pub(crate) mod images;
pub mod kvm;
pub mod manifest;
pub mod observe;
pub mod parallel;
pub(crate) mod region;
pub mod sandbox;
pub mod watch;
pub(crate) mod window;
// Layer 2 and 3: a vCPU, and what its death means.
pub mod fault;
pub(crate) mod vcpu;
// Layer 4: domains.
pub mod domain;
// Layer 5: what a migrating thread carries.
pub mod thread;
// Layer 6: the two IPC paths, side by side.
pub(crate) mod message;
pub(crate) mod migrate;
// Layer 7: the running system.
pub mod stats;
pub mod system;
// Layer 8: internals for the integration tests only.
#[cfg(feature = "test-util")]
pub mod testing;
// Property tests over hostile input for every decoder (test builds only).
#[cfg(test)]
mod props;

pub use shared_abi;
