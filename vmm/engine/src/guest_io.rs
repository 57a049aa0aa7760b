//! Reading and writing ABI structures in guest memory.
//!
//! Guest memory is untrusted input: a structure is copied out into a local
//! first (so the guest cannot change it while the VMM looks at it) and only
//! the copy is decoded. The wire types are zerocopy `FromBytes`/`IntoBytes`,
//! so decoding and encoding are layout-checked byte views, not hand-written
//! field lists. No raw pointers into guest memory escape this file.

use core::mem::offset_of;
use shared_abi::{ArgDesc, BootInfo, CallRequest, EntryDecl, Hello, Invocation, Sample, MAX_ARGS};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// A guest address could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("guest memory at {addr:#x}+{len:#x} is not accessible")]
pub struct GuestMemError {
    /// Start of the access.
    pub addr: u64,
    /// Its length.
    pub len: usize,
}

/// Copy `buf.len()` bytes out of guest memory at `addr`.
pub fn read(mem: &GuestMemoryMmap, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
    mem.read_slice(buf, GuestAddress(addr))
        .map_err(|_| GuestMemError {
            addr,
            len: buf.len(),
        })
}

/// Copy `bytes` into guest memory at `addr`.
pub fn write(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8]) -> Result<(), GuestMemError> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|_| GuestMemError {
            addr,
            len: bytes.len(),
        })
}

/// Read a `u64` (the guest's byte order: x86-64 is little-endian).
pub fn read_u64(mem: &GuestMemoryMmap, addr: u64) -> Result<u64, GuestMemError> {
    read_copy(mem, addr)
}

/// Copy a `T` out of guest memory at `addr` into a local `T` (the buffer),
/// and only then look at it: the guest (or another vCPU) cannot change the
/// copy under the VMM, and any bytes are a valid `T` (`FromBytes`).
fn read_copy<T: FromBytes + IntoBytes>(
    mem: &GuestMemoryMmap,
    addr: u64,
) -> Result<T, GuestMemError> {
    let mut copy = T::new_zeroed();
    read(mem, addr, copy.as_mut_bytes())?;
    Ok(copy)
}

/// Decode a [`CallRequest`] from its wire bytes (the tests' view of the wire).
#[cfg(test)]
pub fn decode_call_request(bytes: &[u8; size_of::<CallRequest>()]) -> CallRequest {
    zerocopy::transmute!(*bytes)
}

/// Bytes of a [`CallRequest`] before its descriptor array.
pub const CALL_REQUEST_HEADER: u64 = offset_of!(CallRequest, args) as u64;

/// How many bytes of a request the VMM reads: the header and the used
/// descriptors only (a request claiming more than [`MAX_ARGS`] is refused
/// on its count, so its descriptors are never read).
pub fn call_request_len(nargs: u32) -> u64 {
    let used = if nargs as usize <= MAX_ARGS {
        u64::from(nargs)
    } else {
        0
    };
    CALL_REQUEST_HEADER + used * size_of::<ArgDesc>() as u64
}

/// Copy a [`CallRequest`] out of guest memory: the header, then only the
/// descriptors it uses. Each read is bounds-checked by `check` first.
pub fn read_call_request(
    mem: &GuestMemoryMmap,
    addr: u64,
    check: impl Fn(u64, u64) -> bool,
) -> Result<CallRequest, GuestMemError> {
    // The local copy is the buffer; unread descriptors stay zero.
    let mut req = CallRequest::new_zeroed();
    let header = offset_of!(CallRequest, args);
    let bad = |len: usize| GuestMemError { addr, len };
    if !check(addr, CALL_REQUEST_HEADER) {
        return Err(bad(header));
    }
    let head = req.as_mut_bytes().get_mut(..header).ok_or(bad(header))?;
    read(mem, addr, head)?;
    let len = call_request_len(req.nargs);
    if len > CALL_REQUEST_HEADER {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        if !check(addr, len) {
            return Err(bad(n));
        }
        let rest = req.as_mut_bytes().get_mut(header..n).ok_or(bad(n))?;
        read(mem, addr + CALL_REQUEST_HEADER, rest)?;
    }
    Ok(req)
}

/// Bytes of an [`Invocation`] that carry `nargs` descriptors.
pub fn invocation_len(nargs: usize) -> usize {
    size_of::<Invocation>() - (MAX_ARGS - nargs.min(MAX_ARGS)) * size_of::<ArgDesc>()
}

/// Copy a [`Hello`] out of guest memory.
pub fn read_hello(mem: &GuestMemoryMmap, addr: u64) -> Result<Hello, GuestMemError> {
    read_copy(mem, addr)
}

/// Copy entry declaration `index` of the table at `table` out of guest memory.
pub fn read_entry_decl(
    mem: &GuestMemoryMmap,
    table: u64,
    index: u64,
) -> Result<EntryDecl, GuestMemError> {
    let size = size_of::<EntryDecl>() as u64;
    read_copy(mem, table.saturating_add(index.saturating_mul(size)))
}

/// Copy sample `index` of the ring at `ring` out of guest memory.
pub fn read_sample(mem: &GuestMemoryMmap, ring: u64, index: u64) -> Result<Sample, GuestMemError> {
    let size = size_of::<Sample>() as u64;
    read_copy(mem, ring.saturating_add(index.saturating_mul(size)))
}

/// Encode an [`Invocation`] into its wire bytes.
pub fn encode_invocation(inv: &Invocation) -> [u8; size_of::<Invocation>()] {
    zerocopy::transmute!(*inv)
}

/// Encode a [`BootInfo`] into its wire bytes.
pub fn encode_boot_info(b: &BootInfo) -> [u8; size_of::<BootInfo>()] {
    zerocopy::transmute!(*b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field at a distinct byte value, so a misplaced field shows.
    #[test]
    fn call_request_round_trips_through_bytes() {
        let mut r = CallRequest {
            slot: 3,
            nargs: 2,
            ..Default::default()
        };
        r.scalars[5] = 0xabcd;
        r.args[15] = ArgDesc {
            addr: 1,
            len: 2,
            mode: 3,
            flags: 4,
        };
        let bytes: [u8; 440] = r.as_bytes().try_into().unwrap();
        assert_eq!(decode_call_request(&bytes), r);
        assert_eq!(bytes[0..4], 3u32.to_le_bytes());
        assert_eq!(bytes[4..8], 2u32.to_le_bytes());
        assert_eq!(bytes[48..56], 0xabcdu64.to_le_bytes());
        assert_eq!(bytes[416..424], 1u64.to_le_bytes());
        assert_eq!(bytes[436..440], 4u32.to_le_bytes());
        assert_eq!(CALL_REQUEST_HEADER, 56);
    }

    #[test]
    fn invocation_encodes_in_field_order() {
        let mut inv = Invocation {
            caller_domain: 1,
            entry: 2,
            thread_id: 3,
            depth: 4,
            nargs: 5,
            scalars: [6, 7, 8, 9, 10, 11],
            args: [ArgDesc::default(); MAX_ARGS],
        };
        inv.args[0] = ArgDesc {
            addr: 12,
            len: 13,
            mode: 1,
            flags: 0,
        };
        let bytes = encode_invocation(&inv);
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let half = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!([half(0), half(4)], [1, 2]);
        assert_eq!(word(8), 3);
        assert_eq!([half(16), half(20)], [4, 5]);
        assert_eq!([word(24), word(64)], [6, 11]);
        assert_eq!([word(72), word(80), u64::from(half(88))], [12, 13, 1]);
        assert_eq!(Invocation::read_from_bytes(&bytes[..]).unwrap(), inv);
        assert_eq!(invocation_len(1), 72 + 24);
    }

    #[test]
    fn boot_info_encodes_in_field_order() {
        let b = BootInfo {
            abi_version: 1,
            domain_id: 2,
            heap_base: 3,
            heap_size: 4,
            stack_size: 5,
            generation: 6,
            cap_count: 7,
            reserved: 0,
        };
        let bytes = encode_boot_info(&b);
        let mut want = [0u8; 48];
        want[40] = 7;
        want[0] = 1;
        want[4] = 2;
        for (i, v) in (3u8..=6).enumerate() {
            want[8 + 8 * i] = v;
        }
        assert_eq!(bytes, want);
        assert_eq!(BootInfo::read_from_bytes(&bytes[..]).unwrap(), b);
    }

    #[test]
    fn small_types_decode_from_bytes() {
        let mut raw = [0u8; 72];
        raw[0] = 3; // abi_version
        raw[4] = 2; // entry_count
        raw[40] = 9; // sample_count
        let h = Hello::read_from_bytes(&raw[..]).unwrap();
        assert_eq!((h.abi_version, h.entry_count, h.sample_count), (3, 2, 9));

        let mut raw = [0u8; 88];
        raw[..3].copy_from_slice(b"put");
        raw[32] = 3;
        raw[80] = 7; // method_id
        let e = EntryDecl::read_from_bytes(&raw[..]).unwrap();
        assert_eq!(e.name.as_bytes(), Some(&b"put"[..]));
        assert_eq!(e.method_id, 7);

        let mut raw = [0u8; 16];
        raw[0] = 7;
        raw[8] = 42;
        let s = Sample::read_from_bytes(&raw[..]).unwrap();
        assert_eq!((s.slot, s.cycles), (7, 42));
    }
}
