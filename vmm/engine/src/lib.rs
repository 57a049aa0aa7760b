//! Ferry's host side: every domain is a tiny `no_std` guest in its own KVM
//! VM, and threads migrate between them. A thread calling into another
//! domain keeps its identity; it gets a fresh stack from the callee's pool
//! and the objects named in its argument list are copied in and back out.
//!
//! Start at [`system::System::boot`] and [`system::System::run`]; one call's
//! journey is in [`migrate`].
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

pub mod clock;
pub mod domain;
pub mod fault;
pub mod guest_io;
pub mod images;
pub mod kvm;
pub mod manifest;
pub mod message;
pub mod migrate;
pub mod observe;
pub mod stats;
pub mod system;
pub mod vcpu;

pub use shared_abi;
