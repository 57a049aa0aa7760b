//! What a migrating call carries: the request a caller fills in, and the
//! invocation frame the callee finds on its fresh stack.

use num_enum::{IntoPrimitive, TryFromPrimitive};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// At most this many objects travel with one call.
pub const MAX_ARGS: usize = 16;
/// At most this many scalar arguments travel with one call.
pub const MAX_SCALARS: usize = 6;
/// `Invocation::caller_domain` of a thread's first frame (nobody called it).
pub const NO_CALLER: u32 = u32::MAX;

/// Which way an object travels. A `u32` on the wire; the VMM rejects any
/// other value as a malformed argument list.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, TryFromPrimitive, IntoPrimitive)]
pub enum ArgMode {
    /// Copied into the callee; never written back.
    In = 1,
    /// Zero-filled in the callee; copied back to the caller on success.
    Out = 2,
    /// Copied in, and copied back on success.
    InOut = 3,
}

impl ArgMode {
    /// Decode a wire value; `None` for anything but 1, 2, 3.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::try_from(v).ok()
    }

    /// Whether the callee sees the caller's bytes.
    pub const fn copies_in(self) -> bool {
        matches!(self, Self::In | Self::InOut)
    }

    /// Whether the caller's range is written when the call succeeds.
    pub const fn copies_out(self) -> bool {
        matches!(self, Self::Out | Self::InOut)
    }
}

/// One object of an argument list: a range of the owner's memory.
/// In a [`CallRequest`] the range is in the caller; in an [`Invocation`]
/// the VMM has rewritten it to the copy on the callee's stack.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArgDesc {
    /// Guest address of the first byte (ignored when `len` is 0).
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// An [`ArgMode`] as `u32`.
    pub mode: u32,
    /// Flags: in a [`CallRequest`] only [`ARG_LEND`] may be set (any other
    /// bit makes the argument list malformed); in an [`Invocation`],
    /// [`ARG_LEND`] is set exactly when the object was lent, not copied.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<ArgDesc>() == 24);

/// [`ArgDesc::flags`] bit: lend the object instead of copying it. The
/// caller's pages are mapped into the callee's lease window for the
/// duration of the call (read-only for IN, writable for OUT/INOUT). Only an
/// object of whole pages (page-aligned address, length a non-zero multiple
/// of the page size) in a migrate-mode callee is lent; any other object
/// marked so is copied as if the bit were clear, and its [`Invocation`]
/// descriptor says so (the bit is clear there).
pub const ARG_LEND: u32 = 1;
/// Every [`ArgDesc::flags`] bit this ABI defines.
pub const ARG_FLAGS: u32 = ARG_LEND;

/// What a caller hands to the `Call` hypercall (by address, in `RDI`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CallRequest {
    /// Capability slot: index into the caller domain's capability list.
    pub slot: u32,
    /// How many entries of `args` are used (at most [`MAX_ARGS`]).
    pub nargs: u32,
    /// Scalars, passed by value.
    pub scalars: [u64; MAX_SCALARS],
    /// The argument list.
    pub args: [ArgDesc; MAX_ARGS],
}
const _: () = assert!(core::mem::size_of::<CallRequest>() == 440);

/// What a callee's entry finds (by address, in `RDI`) at the top of its fresh
/// stack. `args[i].addr` points at the copy of object `i` on that stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Invocation {
    /// Domain id of the caller ([`NO_CALLER`] for a thread's first frame):
    /// the callee's credential of who asked.
    pub caller_domain: u32,
    /// Index of the entry being invoked in the callee's entry table.
    pub entry: u32,
    /// Id of the migrating thread; the same in every domain it visits.
    pub thread_id: u64,
    /// How deep the thread's invocation chain is (its first frame is 0).
    pub depth: u32,
    /// How many entries of `args` are used.
    pub nargs: u32,
    /// Scalars from the caller.
    pub scalars: [u64; MAX_SCALARS],
    /// The objects, rewritten to their copies on this stack.
    pub args: [ArgDesc; MAX_ARGS],
}
const _: () = assert!(core::mem::size_of::<Invocation>() == 456);
