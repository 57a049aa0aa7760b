//! Reading and writing ABI structures in guest memory.
//!
//! Guest memory is untrusted input: a structure is copied out as bytes
//! first (so the guest cannot change it while the VMM looks at it) and then
//! decoded field by field. No raw pointers into guest memory escape this file.

use shared_abi::{
    ArgDesc, BootInfo, CallRequest, EntryName, Hello, Invocation, Sample, ENTRY_NAME_MAX, MAX_ARGS,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

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

/// Read a little-endian `u64`.
pub fn read_u64(mem: &GuestMemoryMmap, addr: u64) -> Result<u64, GuestMemError> {
    let mut b = [0u8; 8];
    read(mem, addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A little cursor over copied-out bytes.
struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.bytes.get(self.at..self.at + N) {
            out.copy_from_slice(s);
        }
        self.at += N;
        out
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Decode a [`CallRequest`] from its wire bytes.
pub fn decode_call_request(bytes: &[u8; size_of::<CallRequest>()]) -> CallRequest {
    let mut d = Decoder { bytes, at: 0 };
    let mut r = CallRequest {
        slot: d.u32(),
        nargs: d.u32(),
        ..Default::default()
    };
    for s in r.scalars.iter_mut() {
        *s = d.u64();
    }
    for a in r.args.iter_mut() {
        *a = ArgDesc {
            addr: d.u64(),
            len: d.u64(),
            mode: d.u32(),
            reserved: d.u32(),
        };
    }
    r
}

/// Bytes of a [`CallRequest`] before its descriptor array.
pub const CALL_REQUEST_HEADER: u64 = 8 + 8 * shared_abi::MAX_SCALARS as u64;

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
    let mut b = [0u8; size_of::<CallRequest>()];
    let header = CALL_REQUEST_HEADER as usize;
    let bad = GuestMemError { addr, len: header };
    if !check(addr, CALL_REQUEST_HEADER) {
        return Err(bad);
    }
    read(
        mem,
        addr,
        b.get_mut(..header)
            .ok_or(GuestMemError { addr, len: header })?,
    )?;
    let nargs = u32::from_le_bytes(
        b.get(4..8)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 4]),
    );
    let len = call_request_len(nargs);
    if len > CALL_REQUEST_HEADER {
        if !check(addr, len) {
            return Err(GuestMemError {
                addr,
                len: len as usize,
            });
        }
        let rest = b.get_mut(header..len as usize).ok_or(GuestMemError {
            addr,
            len: len as usize,
        })?;
        read(mem, addr + CALL_REQUEST_HEADER, rest)?;
    }
    Ok(decode_call_request(&b))
}

/// Bytes of an [`Invocation`] that carry `nargs` descriptors.
pub fn invocation_len(nargs: usize) -> usize {
    size_of::<Invocation>() - (MAX_ARGS - nargs.min(MAX_ARGS)) * size_of::<ArgDesc>()
}

/// Copy a [`Hello`] out of guest memory.
pub fn read_hello(mem: &GuestMemoryMmap, addr: u64) -> Result<Hello, GuestMemError> {
    let mut b = [0u8; size_of::<Hello>()];
    read(mem, addr, &mut b)?;
    let mut d = Decoder { bytes: &b, at: 0 };
    Ok(Hello {
        abi_version: d.u32(),
        entry_count: d.u32(),
        entries: d.u64(),
        dispatcher: d.u64(),
        samples: d.u64(),
        sample_capacity: d.u64(),
        sample_count: d.u64(),
    })
}

/// Copy entry name `index` of the table at `table` out of guest memory.
pub fn read_entry_name(
    mem: &GuestMemoryMmap,
    table: u64,
    index: u64,
) -> Result<EntryName, GuestMemError> {
    let size = size_of::<EntryName>() as u64;
    let addr = table.saturating_add(index.saturating_mul(size));
    let mut b = [0u8; size_of::<EntryName>()];
    read(mem, addr, &mut b)?;
    let mut d = Decoder { bytes: &b, at: 0 };
    let name: [u8; ENTRY_NAME_MAX] = d.take();
    Ok(EntryName {
        name,
        len: d.u32(),
        reserved: d.u32(),
    })
}

/// Copy sample `index` of the ring at `ring` out of guest memory.
pub fn read_sample(mem: &GuestMemoryMmap, ring: u64, index: u64) -> Result<Sample, GuestMemError> {
    let size = size_of::<Sample>() as u64;
    let mut b = [0u8; size_of::<Sample>()];
    read(mem, ring.saturating_add(index.saturating_mul(size)), &mut b)?;
    let mut d = Decoder { bytes: &b, at: 0 };
    Ok(Sample {
        slot: d.u32(),
        reserved: d.u32(),
        cycles: d.u64(),
    })
}

/// Encode an [`Invocation`] into its wire bytes.
pub fn encode_invocation(inv: &Invocation) -> [u8; size_of::<Invocation>()] {
    let mut out = [0u8; size_of::<Invocation>()];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        if let Some(s) = out.get_mut(at..at + b.len()) {
            s.copy_from_slice(b);
        }
        at += b.len();
    };
    put(&inv.caller_domain.to_le_bytes());
    put(&inv.entry.to_le_bytes());
    put(&inv.thread_id.to_le_bytes());
    put(&inv.depth.to_le_bytes());
    put(&inv.nargs.to_le_bytes());
    for s in &inv.scalars {
        put(&s.to_le_bytes());
    }
    for a in inv.args.iter().take(MAX_ARGS) {
        put(&a.addr.to_le_bytes());
        put(&a.len.to_le_bytes());
        put(&a.mode.to_le_bytes());
        put(&a.reserved.to_le_bytes());
    }
    out
}

/// Encode a [`BootInfo`] into its wire bytes.
pub fn encode_boot_info(b: &BootInfo) -> [u8; size_of::<BootInfo>()] {
    let mut out = [0u8; size_of::<BootInfo>()];
    let fields: [&[u8]; 6] = [
        &b.abi_version.to_le_bytes(),
        &b.domain_id.to_le_bytes(),
        &b.heap_base.to_le_bytes(),
        &b.heap_size.to_le_bytes(),
        &b.stack_size.to_le_bytes(),
        &b.generation.to_le_bytes(),
    ];
    let mut at = 0;
    for f in fields {
        if let Some(s) = out.get_mut(at..at + f.len()) {
            s.copy_from_slice(f);
        }
        at += f.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_request_layout_matches_repr_c() {
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
            reserved: 4,
        };
        // SAFETY: CallRequest is repr(C) plain data without padding (asserted
        // size 440 = sum of its fields); viewing it as bytes is sound.
        let bytes: [u8; 440] = unsafe { core::mem::transmute(r) };
        assert_eq!(decode_call_request(&bytes), r);
    }

    #[test]
    fn invocation_layout_matches_repr_c() {
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
            reserved: 0,
        };
        // SAFETY: as above; Invocation has no padding (size asserted 456).
        let bytes: [u8; 456] = unsafe { core::mem::transmute(inv) };
        assert_eq!(encode_invocation(&inv), bytes);
    }

    #[test]
    fn boot_info_layout_matches_repr_c() {
        let b = BootInfo {
            abi_version: 1,
            domain_id: 2,
            heap_base: 3,
            heap_size: 4,
            stack_size: 5,
            generation: 6,
        };
        // SAFETY: BootInfo is repr(C) plain data without padding.
        let bytes: [u8; 40] = unsafe { core::mem::transmute(b) };
        assert_eq!(encode_boot_info(&b), bytes);
    }
}
