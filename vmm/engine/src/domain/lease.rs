//! Leases: pages of another domain's memory lent to this domain for the
//! duration of one call, without a copy.
//!
//! A lease is one KVM memory slot of this domain's VM at an address of its
//! lease window (`shared_abi::layout::LEASE_WINDOW_BASE`), backed by the
//! lender's host memory (its guest-memory mmap), plus the leaf PTEs that
//! map those pages in this domain's page tables: user, read-only for IN,
//! writable for OUT/INOUT. Read-only is enforced by the PTEs, not by a
//! read-only slot (on PVM an AVX store into a read-only slot kills the
//! vCPU); a store into a read-only lease is a clean page fault of the
//! borrower, reported through the ordinary fault path.
//!
//! Taking a lease back clears its PTEs and deletes its slot; deleting the
//! slot makes KVM drop every mapping of those pages in this VM (on every
//! vCPU), so a later access faults even from a vCPU whose TLB still held
//! them. Both steps are needed, as measured on PVM: with the PTEs cleared
//! but the slot kept, the borrower still read the page through the shadow
//! mapping it had (the guest cannot flush its TLB at CPL3, and a write to
//! its page tables by the VMM is not seen until it does); with the slot
//! deleted but the PTEs kept, the access was to unbacked memory, a fault
//! but not a clean #PF. With KVM's `SLOT_ZAP_ALL` quirk turned off (at VM
//! creation), the deletion drops only that slot's mappings, not the whole
//! VM's.
//!
//! The window is shared by every frame inside the domain: each lease takes
//! the first free run of window pages large enough. The slot id is derived
//! from the run's first page, so two live leases never share one.

use super::Domain;
use crate::arch;
use crate::guest_io::{self, GuestMemError};
use kvm_bindings::{
    kvm_enable_cap, kvm_userspace_memory_region, KVM_CAP_DISABLE_QUIRKS2,
    KVM_X86_QUIRK_SLOT_ZAP_ALL,
};
use kvm_ioctls::VmFd;
use shared_abi::layout::{LEASE_WINDOW_BASE, LEASE_WINDOW_SIZE, PAGE_SIZE};
use std::sync::{Mutex, Once, PoisonError};
use vm_memory::VolatileSlice;

/// The memory slot of a lease whose first window page is page 0; page `i`
/// gives slot `LEASE_SLOT_BASE + i`. Far above the one slot of guest
/// memory (0) and below KVM's per-VM limit (32,764 on the hosts measured).
pub const LEASE_SLOT_BASE: u32 = 0x2000;
/// Pages in the window.
const WINDOW_PAGES: u64 = LEASE_WINDOW_SIZE / PAGE_SIZE;
const _: () = assert!(LEASE_SLOT_BASE as u64 + WINDOW_PAGES <= 32_764);

/// Turn off KVM's `SLOT_ZAP_ALL` quirk on `vm`: without it, deleting a
/// lease's slot (or a mapped-mode window stack's) drops the shadow mappings
/// of the whole VM, so every page of every frame inside the domain refaults
/// afterwards. A KVM without the
/// capability keeps working (slower after each lease); that is logged once.
pub(crate) fn keep_slot_deletes_local(vm: &VmFd) {
    static WARNED: Once = Once::new();
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_DISABLE_QUIRKS2,
        ..Default::default()
    };
    cap.args[0] = u64::from(KVM_X86_QUIRK_SLOT_ZAP_ALL);
    if let Err(e) = vm.enable_cap(&cap) {
        WARNED.call_once(|| {
            log::warn!(
                "KVM cannot turn off its SLOT_ZAP_ALL quirk ({e}): each lease taken back makes the whole VM of its borrower refault"
            );
        });
    }
}

/// Why a lease could not be made or taken back.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("no run of {0} free pages in the lease window")]
    WindowFull(u64),
    #[error("KVM refused the lease's memory slot {slot}")]
    Slot {
        /// The slot.
        slot: u32,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("writing the lease's page-table entries")]
    Ptes(#[source] GuestMemError),
}

/// Whole pages of a domain's guest memory, by host address: what a lease
/// maps. Made only from a domain's own memory ([`Domain::pages`], checked
/// against it) or from a live lease ([`Lease::pages`], a part of it), so it
/// always lies inside some domain's guest-memory mmap, which lives as long
/// as the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pages {
    host: u64,
    len: u64,
}

impl Pages {
    /// Write zeros over them (an OUT object before it is lent: the borrower
    /// never reads the lender's old bytes).
    pub(crate) fn zero(&self) {
        static ZEROS: [u8; 4096] = [0; 4096];
        let Ok(n) = usize::try_from(self.len) else {
            return;
        };
        // SAFETY: `host..host + len` lies inside a live guest-memory mmap
        // (see the type's documentation) for the whole call that lends it;
        // every other access to guest memory is volatile (vm-memory's
        // slices, or a guest through KVM).
        let slice = unsafe { VolatileSlice::new(self.host as *mut u8, n) };
        let mut off = 0;
        while off < n {
            let chunk = (n - off).min(ZEROS.len());
            if let Ok(part) = slice.subslice(off, chunk) {
                part.copy_from(ZEROS.get(..chunk).unwrap_or(&[]));
            }
            off += chunk;
        }
    }
}

/// One live lease in a borrower domain: where it is mapped and what backs
/// it. Taken back only by [`Domain::take_back`], which consumes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    addr: u64,
    len: u64,
    slot: u32,
    writable: bool,
    host: u64,
}

impl Lease {
    /// The pages backing `[addr, addr + len)` of this lease (whole pages,
    /// inside it), to lend them on to a further callee.
    pub(crate) fn pages(&self, addr: u64, len: u64) -> Option<Pages> {
        let inside = addr >= self.addr && addr.checked_add(len)? <= self.addr + self.len;
        (inside && crate::region::whole_pages(addr, len)).then(|| Pages {
            host: self.host + (addr - self.addr),
            len,
        })
    }

    /// Whether `[addr, addr + len)` lies inside it.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.addr
            && addr
                .checked_add(len)
                .is_some_and(|e| e <= self.addr + self.len)
    }

    /// Its address in the borrower's lease window.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Its length in bytes (whole pages).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty (never: a lease is at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the borrower may write it.
    pub fn writable(&self) -> bool {
        self.writable
    }
}

/// The allocation state of one domain's lease window: the runs of pages
/// in use, `(first page, pages)`, sorted by first page.
#[derive(Debug, Default)]
pub struct LeaseWindow {
    used: Mutex<Vec<(u64, u64)>>,
}

impl LeaseWindow {
    /// The first free run of `pages` pages: claimed, its first page returned.
    fn claim(&self, pages: u64) -> Option<u64> {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let mut at = 0;
        let mut index = 0;
        for &(first, n) in used.iter() {
            if first - at >= pages {
                break;
            }
            at = first + n;
            index += 1;
        }
        if at + pages > WINDOW_PAGES {
            return None;
        }
        used.insert(index, (at, pages));
        Some(at)
    }

    /// Give back the run starting at page `first`.
    fn release(&self, first: u64) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        used.retain(|&(f, _)| f != first);
    }

    /// Runs in use: live leases.
    pub fn live(&self) -> usize {
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Domain {
    /// Lend `pages` to this domain: map them into its lease window,
    /// writable or not.
    pub(crate) fn lend(&self, from: Pages, writable: bool) -> Result<Lease, LeaseError> {
        let Pages { host, len } = from;
        let pages = len / PAGE_SIZE;
        let first = self
            .leases
            .claim(pages)
            .ok_or(LeaseError::WindowFull(pages))?;
        let lease = Lease {
            addr: LEASE_WINDOW_BASE + first * PAGE_SIZE,
            len,
            // `first` < WINDOW_PAGES (asserted to fit a slot id).
            slot: LEASE_SLOT_BASE + u32::try_from(first).unwrap_or(0),
            writable,
            host,
        };
        let region = kvm_userspace_memory_region {
            slot: lease.slot,
            flags: 0,
            guest_phys_addr: lease.addr,
            memory_size: len,
            userspace_addr: host,
        };
        // SAFETY: `host..host + len` lies inside a domain's guest-memory mmap
        // (what `Pages` guarantees), which lives as long as the system and
        // so outlives this lease: the lease is taken back (slot deleted)
        // before the frame that holds it is popped, on every path, and a
        // lease lent on is taken back before the one it came from.
        if let Err(source) = unsafe { self.vm.set_user_memory_region(region) } {
            self.leases.release(first);
            return Err(LeaseError::Slot {
                slot: lease.slot,
                source,
            });
        }
        let ptes = arch::lease::ptes(lease.addr, len, writable);
        if let Err(e) = guest_io::write(&self.mem, ptes.addr, &ptes.bytes) {
            self.take_back(lease);
            return Err(LeaseError::Ptes(e));
        }
        Ok(lease)
    }

    /// Take `lease` back: its PTEs cleared, its slot deleted (which drops
    /// every mapping of it in this VM), its window pages free again. A
    /// failure is logged and the window pages stay claimed, so nothing is
    /// ever mapped over a slot KVM still has.
    pub(crate) fn take_back(&self, lease: Lease) {
        let cleared = arch::lease::cleared(lease.addr, lease.len);
        if let Err(e) = guest_io::write(&self.mem, cleared.addr, &cleared.bytes) {
            log::error!("[{}] clearing a lease's PTEs failed: {e}", self.name);
        }
        let region = kvm_userspace_memory_region {
            slot: lease.slot,
            flags: 0,
            guest_phys_addr: lease.addr,
            memory_size: 0,
            userspace_addr: 0,
        };
        // SAFETY: a zero-sized region deletes the slot; no host memory is
        // named.
        match unsafe { self.vm.set_user_memory_region(region) } {
            Ok(()) => self
                .leases
                .release((lease.addr - LEASE_WINDOW_BASE) / PAGE_SIZE),
            Err(e) => log::error!(
                "[{}] deleting lease slot {} failed: {e}; its window pages stay claimed",
                self.name,
                lease.slot
            ),
        }
    }

    /// The pages `[addr, addr + len)` of this domain's own memory, if they
    /// are whole pages and all of them are there.
    pub(crate) fn pages(&self, addr: u64, len: u64) -> Option<Pages> {
        use vm_memory::{GuestAddress, GuestMemoryBackend};
        if !crate::region::whole_pages(addr, len) {
            return None;
        }
        let n = usize::try_from(len).ok()?;
        let slice = self.mem.get_slice(GuestAddress(addr), n).ok()?;
        (slice.len() == n).then(|| Pages {
            host: slice.ptr_guard().as_ptr() as u64,
            len,
        })
    }

    /// KVM memory slots this domain's VM has right now: its guest memory
    /// and one per live lease (tests check that a call leaves none behind).
    pub fn memory_slots(&self) -> usize {
        1 + self.leases.live()
    }
}

// Lease slots lie above every window slot a manifest can ask for (the
// smallest window stack is twice a mapped callee's minimum stack).
const _: () = assert!(
    crate::window::WINDOW_MEMSLOT_BASE as u64
        + shared_abi::layout::STACK_WINDOW_SIZE
            / (2 * shared_abi::layout::MAPPED_MIN_STACK + PAGE_SIZE)
        <= LEASE_SLOT_BASE as u64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_claimed_first_fit_and_given_back() {
        let w = LeaseWindow::default();
        assert_eq!(w.claim(2), Some(0));
        assert_eq!(w.claim(3), Some(2));
        assert_eq!(w.claim(1), Some(5));
        w.release(2);
        assert_eq!(w.live(), 2);
        assert_eq!(w.claim(4), Some(6), "the 3-page hole is too small");
        assert_eq!(w.claim(3), Some(2), "the hole is reused");
        assert_eq!(w.claim(WINDOW_PAGES), None);
        for f in [0, 2, 5, 6] {
            w.release(f);
        }
        assert_eq!(w.live(), 0);
        assert_eq!(w.claim(WINDOW_PAGES), Some(0));
    }
}
