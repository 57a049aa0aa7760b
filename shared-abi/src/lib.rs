//! The one contract between Ferry's VMM and its guests.
//!
//! Both sides compile this crate: the VMM on the host, every guest in its
//! `no_std` image. Nothing else lives here, so a change to this crate is, by
//! definition, a change to the ABI — bump [`ABI_VERSION`] when one breaks.
//! Every type is `#[repr(C)]` with explicit padding and a compile-time size
//! assertion, because guest memory is read by the VMM byte for byte. Wire
//! types derive zerocopy's `FromBytes`/`IntoBytes` (which also proves at
//! compile time that they have no padding and accept any bytes), so neither
//! side hand-writes an encoder or decoder; numeric enums derive num_enum's
//! checked conversions.
#![no_std]
#![deny(missing_docs)]

pub mod boot;
pub mod call;
pub mod error;
pub mod hypercall;
pub mod layout;

pub use boot::{
    BootInfo, CapDecl, EntryDecl, Hello, Name, Sample, ENTRY_NAME_MAX, FLOOR_SLOT, FUNCTION_SLOT,
    GUEST_SIDE_SLOT, RAW_METHOD,
};
pub use call::{ArgDesc, ArgMode, CallRequest, Invocation, MAX_ARGS, MAX_SCALARS, NO_CALLER};
pub use error::{pseudo_vector, runtime_status, CallStatus, ErrorCode, APP_ERROR_BASE};
pub use hypercall::{Hypercall, UnknownHypercall, FAULT_PORT_BASE, HYPERCALL_PORT};

/// Version of this contract. A guest sends it in its `Hello`; the VMM refuses
/// to start a guest built against another version, naming both.
///
/// History: 1 — first contract. 2 — `Spawn`, `QuotaExceeded`/`NoSuchEntry`,
/// `DomainDead`/`Restarting` now mean "reset failed"/"being reset", and
/// only `args[..nargs]` of an `Invocation` is written. 3 — `Internal` (17).
/// 4 — `Timeout` (19), `CalleeExited` (20); `Call` takes a
/// CPU budget (`RSI`) and a wait limit (`RDX`) and answers the callee's
/// generation (`R8`); `Exit` only from the bottom frame; fault reports are
/// private (`pseudo_vector::DOMAIN_DOWN`). 5 — typed interfaces: the entry
/// table is `[EntryDecl]` (name, interface, method id); `Hello` carries the
/// image's imports and a buffer the VMM fills with its capability table
/// (`CapDecl`, `BootInfo::cap_count`); application statuses from
/// `runtime_status::BASE` up belong to the guest runtime.
pub const ABI_VERSION: u32 = 6;
