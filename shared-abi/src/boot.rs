//! How a guest boots and introduces itself.
//!
//! The VMM starts a guest at its ELF entry with `RDI` → [`BootInfo`] (on the
//! boot stack). The guest sets up its heap, then says `Hello` with `RDI` →
//! [`Hello`]: its ABI version, its entry table and where it keeps latency
//! samples. The VMM checks the entry table against the manifest and answers
//! with status 0, or stops the domain naming both sides of the mismatch.
//! After its own initialisation the guest says `Ready`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Longest entry name, in bytes.
pub const ENTRY_NAME_MAX: usize = 32;

/// `Sample::slot` of a null-hypercall (floor) measurement.
pub const FLOOR_SLOT: u32 = u32::MAX;

/// `Sample::slot` of a plain in-guest function call (a baseline: what a
/// call costs when no domain boundary is crossed).
pub const FUNCTION_SLOT: u32 = u32::MAX - 1;

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
}
const _: () = assert!(core::mem::size_of::<BootInfo>() == 40);

/// One exported entry's name. The entry's index is its position in the table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct EntryName {
    /// UTF-8 name, `len` bytes used.
    pub name: [u8; ENTRY_NAME_MAX],
    /// Used bytes of `name`.
    pub len: u32,
    /// Must be zero.
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<EntryName>() == 40);

impl EntryName {
    /// Build a table entry at compile time; names longer than
    /// [`ENTRY_NAME_MAX`] fail the build.
    pub const fn new(name: &str) -> Self {
        let bytes = name.as_bytes();
        assert!(bytes.len() <= ENTRY_NAME_MAX, "entry name too long");
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
}

/// A guest's introduction (by address, in `RDI`, with `Hello`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Hello {
    /// The guest's [`crate::ABI_VERSION`].
    pub abi_version: u32,
    /// Number of [`EntryName`]s at `entries`.
    pub entry_count: u32,
    /// Guest address of the entry table.
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
}
const _: () = assert!(core::mem::size_of::<Hello>() == 48);

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
