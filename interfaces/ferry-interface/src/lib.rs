//! Runtime of Ferry's typed interfaces.
//!
//! An interface is a Rust trait marked `#[ferry_interface::interface]`; the
//! macro generates a client stub (`<Trait>Client<T>`), a server wrapper
//! (`<Trait>Server<S>`) and a description (`<TRAIT>_INTERFACE`) from it, and
//! all three call into this crate. The crate is `no_std` and does not depend
//! on the guest runtime: the stub reaches the VMM through a [`Transport`]
//! (the guest runtime implements it with the `Call` hypercall; host tests
//! with a mock), so an `-api` crate compiles on the host too, where the
//! demo's referee and the tests use its types.
//!
//! `docs/INTERFACES.md` is the user's guide: the mapping from Rust types to
//! argument modes, method ids and compatibility, and what is not supported.
#![no_std]
#![deny(missing_docs)]

pub mod client;
pub mod id;
pub mod server;
pub mod types;

pub use client::{finish, BindError, Error, Failure, Limits, Transport, NO_SLOT};
pub use ferry_macros::{interface, AppError};
pub use id::MethodId;
pub use server::{reply, Incoming, InterfaceDecl, Malformed, MethodDecl, Serve};
pub use types::{AppError, Plain, Reply, Scalar, MAX_ALIGN};

/// Re-exported for generated code, so an `-api` crate needs no direct
/// dependency on them.
#[doc(hidden)]
pub mod __private {
    pub use shared_abi::{runtime_status, ArgDesc, ArgMode, CallRequest, ErrorCode, MAX_ARGS};
    pub use zerocopy;
}
