//! The data region: the only guest memory a descriptor or a hypercall
//! pointer may name. A guest address is an allegation until it is checked
//! here, end included (Hubris's `USlice` idea).

use shared_abi::layout::{DomainLayout, IMAGE_BASE, PAGE_SIZE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Whether `[addr, addr + len)` is whole pages: a non-empty run of pages
/// from a page boundary, what a memory slot can map (a lendable object).
pub const fn whole_pages(addr: u64, len: u64) -> bool {
    len > 0 && addr.is_multiple_of(PAGE_SIZE) && len.is_multiple_of(PAGE_SIZE)
}

/// Why a range was refused.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("address {addr:#x} + length {len:#x} overflows")]
    Overflow {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
    #[error("range {addr:#x}+{len:#x} is outside the data region")]
    Outside {
        /// Start of the range.
        addr: u64,
        /// Its length.
        len: u64,
    },
}

/// A guest range that passed [`DataRegion::check`]: the only way to read or
/// write guest memory on a guest's behalf. It cannot be built from a bare
/// address, so an unchecked allegation cannot reach a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRange {
    addr: u64,
    len: u64,
}

/// A checked range that vm-memory still refused (the region and the memory
/// disagree: a VMM bug, reported rather than unwrapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("guest range {addr:#x}+{len:#x} is not backed by memory")]
pub struct Unbacked {
    /// Start of the range.
    pub addr: u64,
    /// Its length.
    pub len: u64,
}

impl GuestRange {
    /// The empty range: a zero-length object names no memory at all.
    pub const EMPTY: Self = Self { addr: 0, len: 0 };

    /// First byte.
    pub const fn addr(self) -> u64 {
        self.addr
    }

    /// Length in bytes.
    pub const fn len(self) -> u64 {
        self.len
    }

    /// Whether it names no byte.
    pub const fn is_empty(self) -> bool {
        self.len == 0
    }

    /// One past the last byte (cannot overflow: checked at creation).
    pub const fn end(self) -> u64 {
        self.addr + self.len
    }

    /// Whether two ranges share a byte.
    pub const fn overlaps(self, other: Self) -> bool {
        !self.is_empty() && !other.is_empty() && self.addr < other.end() && other.addr < self.end()
    }

    /// Copy the range out of `mem` into a buffer of the VMM's own: what is
    /// decoded afterwards is this copy, which no vCPU can change.
    pub fn read(self, mem: &GuestMemoryMmap) -> Result<Vec<u8>, Unbacked> {
        let n = usize::try_from(self.len).map_err(|_| self.unbacked())?;
        let mut buf = vec![0u8; n];
        self.read_into(mem, &mut buf)?;
        Ok(buf)
    }

    /// Copy the start of the range into `buf` (at most `buf.len()` bytes).
    pub fn read_into(self, mem: &GuestMemoryMmap, buf: &mut [u8]) -> Result<(), Unbacked> {
        let n = usize::try_from(self.len).map_err(|_| self.unbacked())?;
        let take = n.min(buf.len());
        let dst = buf.get_mut(..take).ok_or(self.unbacked())?;
        mem.read_slice(dst, GuestAddress(self.addr))
            .map_err(|_| self.unbacked())
    }

    /// Copy `bytes` into the start of the range: refused if they do not
    /// fit it, so a write on a guest's behalf stays inside what was checked.
    pub fn write(self, mem: &GuestMemoryMmap, bytes: &[u8]) -> Result<(), Unbacked> {
        if bytes.len() as u64 > self.len {
            return Err(self.unbacked());
        }
        mem.write_slice(bytes, GuestAddress(self.addr))
            .map_err(|_| self.unbacked())
    }

    fn unbacked(self) -> Unbacked {
        Unbacked {
            addr: self.addr,
            len: self.len,
        }
    }
}

/// The pieces of a domain's memory that hold its own data: the image, each
/// stack (without its guard page) and the heap. Sorted, disjoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRegion {
    pieces: Vec<(u64, u64)>,
}

impl DataRegion {
    /// The data region of a domain laid out as `dl`.
    pub fn of(dl: &DomainLayout) -> Self {
        let mut pieces = Vec::with_capacity(dl.stack_count as usize + 2);
        pieces.push((IMAGE_BASE, dl.image_end));
        for i in 0..dl.stack_count {
            pieces.push((dl.stack_bottom(i), dl.stack_top(i)));
        }
        pieces.push((dl.heap_base(), dl.memory_size));
        Self::from_pieces(pieces)
    }

    /// A region made of arbitrary `[start, end)` pieces (tests, fuzzing).
    pub fn from_pieces(mut pieces: Vec<(u64, u64)>) -> Self {
        pieces.retain(|(s, e)| s < e);
        pieces.sort_unstable();
        Self { pieces }
    }

    /// Guest text (a print, a panic message) at `[addr, addr + len)`: at
    /// most `max` bytes, only from this region, copied out and lossily
    /// decoded; what went wrong otherwise. Never fails, whatever the guest
    /// named.
    pub fn read_text(&self, mem: &GuestMemoryMmap, addr: u64, len: u64, max: u64) -> String {
        let range = match self.check(addr, len.min(max)) {
            Ok(r) => r,
            Err(e) => return format!("(text refused: {e})"),
        };
        match range.read(mem) {
            Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
            Err(e) => format!("(text unreadable: {e})"),
        }
    }

    /// This region plus the `extra` pieces `[start, end)`: a frame's view
    /// when it holds leases (ranges it may name only to lend them on).
    pub fn with(&self, extra: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut pieces = self.pieces.clone();
        pieces.extend(extra);
        Self::from_pieces(pieces)
    }

    /// The pieces, sorted.
    pub fn pieces(&self) -> &[(u64, u64)] {
        &self.pieces
    }

    /// Check that `[addr, addr + len)` lies inside a single piece. A zero
    /// length is checked like a one-byte range at `addr` minus the byte, i.e.
    /// `addr` may be a piece's end; callers that ignore the address of empty
    /// objects should not call this for them.
    pub fn check(&self, addr: u64, len: u64) -> Result<GuestRange, RangeError> {
        let end = addr
            .checked_add(len)
            .ok_or(RangeError::Overflow { addr, len })?;
        // The last piece starting at or before `addr`.
        let idx = self.pieces.partition_point(|&(s, _)| s <= addr);
        let inside = idx
            .checked_sub(1)
            .and_then(|i| self.pieces.get(i))
            .is_some_and(|&(_, e)| end <= e);
        if inside {
            Ok(GuestRange { addr, len })
        } else {
            Err(RangeError::Outside { addr, len })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_both_ends() {
        let r = DataRegion::from_pieces(vec![(0x1000, 0x2000), (0x3000, 0x4000)]);
        assert!(r.check(0x1000, 0x1000).is_ok());
        assert!(r.check(0x1fff, 1).is_ok());
        assert!(r.check(0x1fff, 2).is_err(), "crosses into the gap");
        assert!(r.check(0x1800, 0x2000).is_err(), "spans two pieces");
        assert!(r.check(0xfff, 1).is_err());
        assert!(r.check(0x3000, 0).is_ok());
        assert_eq!(
            r.check(u64::MAX, 2),
            Err(RangeError::Overflow {
                addr: u64::MAX,
                len: 2
            })
        );
    }
}
