//! Page-table entries of the lease window (`shared_abi::layout::LEASE_*`):
//! the page-directory entries that point at the window's own page tables
//! (written at every boot, the tables themselves left zero: nothing is
//! mapped), and the leaf entries the VMM writes when it lends a page to a
//! callee and clears when the call ends.
//!
//! A lent page is user-accessible; it is writable only for OUT and INOUT
//! objects. Read-only is enforced here, in the guest's PTE (a store is a
//! clean #PF at CPL3 with CR2 the written address), never with a read-only
//! memory slot: on PVM an AVX store into one is an emulation failure that
//! kills the vCPU.

use super::Blob;
use shared_abi::layout::{
    LEASE_PAGE_TABLES_ADDR, LEASE_PAGE_TABLES_END, LEASE_WINDOW_BASE, LEASE_WINDOW_SIZE, PAGE_SIZE,
    PAGE_TABLES_ADDR,
};
use x86::bits64::paging::{PDFlags, PTFlags};

/// The page directory mapping the first GiB (PML4, PDPT, then PD 0).
const PD0: u64 = PAGE_TABLES_ADDR + 2 * PAGE_SIZE;
/// Bytes one page table maps.
const PT_SPAN: u64 = 512 * PAGE_SIZE;
/// Page tables of the window.
const WINDOW_PTS: u64 = LEASE_WINDOW_SIZE / PT_SPAN;
const _: () = assert!(LEASE_PAGE_TABLES_ADDR + WINDOW_PTS * PAGE_SIZE <= LEASE_PAGE_TABLES_END);
const _: () = assert!(LEASE_WINDOW_SIZE.is_multiple_of(PT_SPAN));

/// The PD entries pointing at the window's page tables (U/S at every
/// upper level, as PVM needs; each leaf decides who may access).
pub fn pd_entries() -> Blob {
    let flags = (PDFlags::P | PDFlags::RW | PDFlags::US).bits();
    let bytes = (0..WINDOW_PTS)
        .flat_map(|i| ((LEASE_PAGE_TABLES_ADDR + i * PAGE_SIZE) | flags).to_le_bytes())
        .collect();
    Blob {
        addr: PD0 + 8 * (LEASE_WINDOW_BASE / PT_SPAN),
        bytes,
    }
}

/// Where the leaf entry of window page `addr` lies (`addr` page-aligned
/// and inside the window; the window's PTs are contiguous).
pub const fn pte_addr(addr: u64) -> u64 {
    LEASE_PAGE_TABLES_ADDR + (addr - LEASE_WINDOW_BASE) / PAGE_SIZE * 8
}

/// The leaf entries mapping `len` bytes (whole pages) at window address
/// `addr` to themselves: user, present, writable only if `writable`.
pub fn ptes(addr: u64, len: u64, writable: bool) -> Blob {
    let mut flags = PTFlags::P | PTFlags::US;
    if writable {
        flags |= PTFlags::RW;
    }
    let bytes = (0..len / PAGE_SIZE)
        .flat_map(|i| ((addr + i * PAGE_SIZE) | flags.bits()).to_le_bytes())
        .collect();
    Blob {
        addr: pte_addr(addr),
        bytes,
    }
}

/// Zero leaf entries for `len` bytes at window address `addr`: unmapped.
pub fn cleared(addr: u64, len: u64) -> Blob {
    Blob {
        addr: pte_addr(addr),
        bytes: vec![0; usize::try_from(len / PAGE_SIZE * 8).unwrap_or(0)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_has_its_own_pd_entries_and_ptes() {
        let pd = pd_entries();
        // 0x2000_0000 is PD entry 256 of PD 0 (0x1_2000).
        assert_eq!(pd.addr, 0x1_2000 + 8 * 256);
        assert_eq!(pd.bytes.len() as u64, 8 * WINDOW_PTS);
        let first = u64::from_le_bytes(pd.bytes[..8].try_into().unwrap());
        assert_eq!(first & !0xfff, LEASE_PAGE_TABLES_ADDR);
        assert_eq!(first & 0x7, 0x7, "present, writable, user");
        let ro = ptes(LEASE_WINDOW_BASE + 0x20_1000, 0x2000, false);
        assert_eq!(ro.addr, LEASE_PAGE_TABLES_ADDR + 0x201 * 8);
        let e = u64::from_le_bytes(ro.bytes[8..16].try_into().unwrap());
        assert_eq!(
            e,
            (LEASE_WINDOW_BASE + 0x20_2000) | 0x5,
            "present, user, read-only"
        );
        let rw = ptes(LEASE_WINDOW_BASE, 0x1000, true);
        assert_eq!(
            u64::from_le_bytes(rw.bytes[..8].try_into().unwrap()) & 0x7,
            0x7
        );
        let last = LEASE_WINDOW_BASE + LEASE_WINDOW_SIZE - PAGE_SIZE;
        assert!(pte_addr(last) + 8 <= LEASE_PAGE_TABLES_END);
        assert_eq!(cleared(last, PAGE_SIZE).bytes, [0; 8]);
    }
}
