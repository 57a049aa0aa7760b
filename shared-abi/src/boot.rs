//! How a guest boots and introduces itself.
//!
//! The VMM starts a guest at its ELF entry with `RDI` → [`BootInfo`] (on the
//! boot stack). The guest sets up its heap, then says `Hello` with `RDI` →
//! [`Hello`]: its ABI version, its entry table and where it keeps latency
//! samples, the interface methods it calls, and a buffer for its
//! capability table. The VMM checks the entry table against the manifest,
//! fills the buffer with [`CapDecl`]s and answers with status 0, or stops
//! the domain naming both sides of the mismatch. After its own
//! initialisation the guest says `Ready`. Once every domain has said
//! `Hello`, the VMM checks that each client and the servers it holds
//! capabilities to were built from the same interface definitions
//! ([`EntryDecl::method_id`]).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Longest name (of an entry, an interface or a domain), in bytes.
pub const ENTRY_NAME_MAX: usize = 32;

/// `EntryDecl::method_id` of an entry that belongs to no interface (a raw
/// entry, written against the `Call`/`Invocation` ABI by hand).
pub const RAW_METHOD: u64 = 0;

/// `Sample::slot` of a null-hypercall (floor) measurement.
pub const FLOOR_SLOT: u32 = u32::MAX;

/// `Sample::slot` of a plain in-guest function call (a baseline: what a
/// call costs when no domain boundary is crossed).
pub const FUNCTION_SLOT: u32 = u32::MAX - 1;

/// `Sample::slot` of a call's guest-side cycles: the time around a call
/// minus its `Call` hypercall, i.e. what the caller's own code (a typed
/// stub or the raw API) spent building the request and decoding the answer.
pub const GUEST_SIDE_SLOT: u32 = u32::MAX - 2;

/// What the VMM tells a booting guest.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BootInfo {
    /// The VMM's [`crate::ABI_VERSION`].
    pub abi_version: u32,
    /// This domain's id (its index in the manifest).
    pub domain_id: u32,
    /// First byte of the heap the guest may hand to its allocator.
    pub heap_base: u64,
    /// Heap size in bytes.
    pub heap_size: u64,
    /// Size of every stack of this domain's pool.
    pub stack_size: u64,
    /// How often this domain has been (re)started; 0 at first boot.
    pub generation: u64,
    /// How many capabilities the manifest grants this domain: the
    /// capacity the guest gives its `Hello::caps` buffer.
    pub cap_count: u32,
    /// Must be zero.
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<BootInfo>() == 48);

/// A short UTF-8 name (an entry's, an interface's or a domain's), at most
/// [`ENTRY_NAME_MAX`] bytes, in a fixed-size field so tables stay flat.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Name {
    /// UTF-8 name, `len` bytes used.
    pub name: [u8; ENTRY_NAME_MAX],
    /// Used bytes of `name`.
    pub len: u32,
    /// Must be zero.
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<Name>() == 40);

impl Name {
    /// The empty name (an entry of no interface has it as its interface).
    pub const EMPTY: Self = Self {
        name: [0; ENTRY_NAME_MAX],
        len: 0,
        reserved: 0,
    };

    /// Build a name at compile time; names longer than [`ENTRY_NAME_MAX`]
    /// fail the build (and panic at run time).
    pub const fn new(name: &str) -> Self {
        let bytes = name.as_bytes();
        assert!(bytes.len() <= ENTRY_NAME_MAX, "name longer than 32 bytes");
        let mut out = [0u8; ENTRY_NAME_MAX];
        let mut i = 0;
        while i < bytes.len() {
            out[i] = bytes[i];
            i += 1;
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "bounded by ENTRY_NAME_MAX, asserted above"
        )]
        let len = bytes.len() as u32;
        Self {
            name: out,
            len,
            reserved: 0,
        }
    }

    /// The used bytes, if `len` is sane.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        self.name.get(..self.len as usize)
    }

    /// The name as text, if `len` is sane and the bytes are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()?).ok()
    }
}

/// One entry of an image's entry table (its index is its position), or one
/// interface method an image calls (in `Hello::imports`).
///
/// A typed interface's methods carry the interface's name and a method id
/// derived from the method's name and signature (see `docs/INTERFACES.md`
/// for the algorithm), so the VMM can refuse at boot a client and a server
/// built from different definitions instead of letting them exchange
/// misread bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct EntryDecl {
    /// The entry's name (what manifests export and grant).
    pub name: Name,
    /// The interface the method belongs to ([`Name::EMPTY`] for a raw entry).
    pub interface: Name,
    /// The method's id, or [`RAW_METHOD`] for a raw entry.
    pub method_id: u64,
}
const _: () = assert!(core::mem::size_of::<EntryDecl>() == 88);

impl EntryDecl {
    /// A raw entry (no interface) at compile time.
    pub const fn raw(name: &str) -> Self {
        Self {
            name: Name::new(name),
            interface: Name::EMPTY,
            method_id: RAW_METHOD,
        }
    }
}

/// One capability of a domain, as the VMM writes it into the guest's
/// `Hello::caps` buffer: what slot `slot` reaches. A guest binds a typed
/// handle by domain name through this table once, instead of compiling
/// slot numbers that must match the manifest's order; the server entry's
/// interface and method id come along so a handle binds only methods of
/// its own interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CapDecl {
    /// The domain the capability calls into.
    pub domain: Name,
    /// The entry it may call there.
    pub entry: Name,
    /// The interface that entry belongs to ([`Name::EMPTY`] if raw).
    pub interface: Name,
    /// The entry's method id ([`RAW_METHOD`] if raw).
    pub method_id: u64,
    /// The capability slot to put in `CallRequest::slot`.
    pub slot: u32,
    /// Must be zero.
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<CapDecl>() == 136);

/// A guest's introduction (by address, in `RDI`, with `Hello`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Hello {
    /// The guest's [`crate::ABI_VERSION`].
    pub abi_version: u32,
    /// Number of [`EntryDecl`]s at `entries`.
    pub entry_count: u32,
    /// Guest address of the entry table (`[EntryDecl; entry_count]`).
    pub entries: u64,
    /// Guest address of the runtime's dispatcher: the VMM starts every
    /// invocation there with `RDI` → [`crate::Invocation`], `RSI` = entry index.
    pub dispatcher: u64,
    /// Guest address of the sample ring (`[Sample; sample_capacity]`), or 0.
    pub samples: u64,
    /// Capacity of the sample ring.
    pub sample_capacity: u64,
    /// Guest address of the `u64` count of samples ever written (the ring
    /// index is `count % capacity`).
    pub sample_count: u64,
    /// Guest address of `[EntryDecl; import_count]`: the interface methods
    /// this image calls (entry name, interface, method id), or 0.
    pub imports: u64,
    /// Number of [`EntryDecl`]s at `imports`.
    pub import_count: u32,
    /// Capacity of the buffer at `caps`, in [`CapDecl`]s.
    pub cap_capacity: u32,
    /// Guest address of a buffer the VMM fills with the domain's
    /// capability table (`BootInfo::cap_count` entries, slot order) when
    /// it accepts the `Hello`; 0 if the guest does not want it.
    pub caps: u64,
}
const _: () = assert!(core::mem::size_of::<Hello>() == 72);

/// One latency measurement a guest took with `rdtsc` around a `Call` (or a
/// `Nop`, with `slot == FLOOR_SLOT`). Guests write these into their own
/// memory; the VMM reads them after the run — no exit per sample.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Sample {
    /// The capability slot called, or [`FLOOR_SLOT`].
    pub slot: u32,
    /// Must be zero.
    pub reserved: u32,
    /// TSC cycles from just before the `out` to just after it returned.
    pub cycles: u64,
}
const _: () = assert!(core::mem::size_of::<Sample>() == 16);
