//! The guest memory map: identity-mapped, guest-physical = guest-virtual.
//!
//! ```text
//! 0x0000_0000  null page                     unmapped
//! 0x0000_1000  GDT                           supervisor
//! 0x0000_2000  IDT                           supervisor
//! 0x0000_3000  exception stubs (VMM code)    supervisor
//! 0x0001_0000  page tables                   supervisor
//! 0x0010_0000  per-vCPU slots (MAX_VCPUS ×): supervisor
//!              TSS (3 pages) | guard | RSP0 stack | guard | IST stack | guard
//! 0x0020_0000  image (.text first)           user  ─┐
//!              guard | stack 0 | guard | stack 1 …  user   │ the data region:
//!              heap up to the end of memory  user  ─┘ what descriptors may name
//! 0x1000_0000  stack window (v6, mapped-mode  user: one slot per live thread,
//!              domains only): guard | slot 0 |      each its own memory slot,
//!              guard | slot 1 …                     present only where mapped
//! 0x2000_0000  lease window (64 MiB)          user, only while lent (ARG_LEND)
//! ```
//! Only the image, the stacks (not their guard pages) and the heap may be
//! named by an argument descriptor; everything below [`IMAGE_BASE`] is the
//! VMM's and never is.

/// Page size of every mapping.
pub const PAGE_SIZE: u64 = 0x1000;
/// The Global Descriptor Table.
pub const GDT_ADDR: u64 = 0x1000;
/// The Interrupt Descriptor Table (256 gates × 16 bytes).
pub const IDT_ADDR: u64 = 0x2000;
/// Exception stubs: vector `v` starts at `STUBS_ADDR + v * STUB_SIZE`.
pub const STUBS_ADDR: u64 = 0x3000;
/// Bytes per exception stub.
pub const STUB_SIZE: u64 = 16;
/// First page-table page (the PML4); the rest follow.
pub const PAGE_TABLES_ADDR: u64 = 0x1_0000;
/// End of the page-table area.
pub const PAGE_TABLES_END: u64 = 0x10_0000;
/// Start of the per-vCPU slots.
pub const VCPU_AREA_ADDR: u64 = 0x10_0000;
/// Bytes per vCPU slot.
pub const VCPU_SLOT_SIZE: u64 = 0x8000;
/// Most vCPUs one domain can have (slots in the vCPU area).
pub const MAX_VCPUS: u32 = 32;
/// Offset of the TSS in a vCPU slot (104 bytes + 8 KiB I/O bitmap + 1).
pub const TSS_OFFSET: u64 = 0;
/// Size of a TSS including its I/O-permission bitmap and the trailing 0xff.
pub const TSS_SIZE: u64 = 104 + 8192 + 1;
/// Offset of the I/O bitmap inside the TSS.
pub const TSS_IOMAP_OFFSET: u64 = 104;
/// Offset of the bottom of the RSP0 exception stack in a slot.
pub const EXC_STACK_OFFSET: u64 = 0x4000;
/// Offset of the bottom of the IST1 stack (double fault, NMI, machine check).
pub const IST_STACK_OFFSET: u64 = 0x6000;
/// Size of each exception stack.
pub const EXC_STACK_SIZE: u64 = PAGE_SIZE;
/// Where every image is linked (`.text` of the entry first).
pub const IMAGE_BASE: u64 = 0x20_0000;
/// Most memory a domain may have (bounded by the page-table area).
pub const MAX_MEMORY: u64 = 256 << 20;

/// The lease window: where the VMM maps objects lent to a callee
/// (`ARG_LEND`) for the duration of a call. Guest-physical = guest-virtual,
/// above [`MAX_MEMORY`] and inside the first GiB, so the one page directory
/// covers it; its page tables are [`LEASE_PAGE_TABLES_ADDR`]`..`
/// [`LEASE_PAGE_TABLES_END`]. Nothing is mapped there outside a call.
pub const LEASE_WINDOW_BASE: u64 = 0x2000_0000;
/// Bytes of the lease window: what its page-table pages can map (each maps
/// 2 MiB with 4 KiB pages). Shared by every frame inside the domain.
pub const LEASE_WINDOW_SIZE: u64 = (LEASE_PAGE_TABLES_END - LEASE_PAGE_TABLES_ADDR) / 8 * PAGE_SIZE;
/// First page-table page (a PT) of the lease window, in the page-table area.
pub const LEASE_PAGE_TABLES_ADDR: u64 = 0xC_0000;
/// End of the lease window's page-table pages.
pub const LEASE_PAGE_TABLES_END: u64 = 0xE_0000;
/// Base of the stack window (v6): the thread stacks of `mapped` stack mode,
/// one slot per concurrently live thread, each at the same guest address
/// in every domain that maps it. Above [`MAX_MEMORY`], inside the first GiB
/// (the one page directory every domain has).
pub const STACK_WINDOW_BASE: u64 = 0x1000_0000;
/// Bytes of the stack window. The page tables that map it have 32 pages
/// ([`STACK_WINDOW_PT_ADDR`]..[`STACK_WINDOW_PT_END`]), one per 2 MiB: 64 MiB.
pub const STACK_WINDOW_SIZE: u64 = 64 << 20;
/// First page-table page of the stack window (one PT per 2 MiB of window).
pub const STACK_WINDOW_PT_ADDR: u64 = 0xA_0000;
/// End of the stack window's page-table pages.
pub const STACK_WINDOW_PT_END: u64 = 0xC_0000;
/// Bytes a mapped-mode callee gets at least below its invocation frame:
/// a call whose caller stack pointer leaves less is refused (`BadStack`).
pub const MAPPED_MIN_STACK: u64 = 16 << 10;
/// The System V red zone below a caller's stack pointer, which a mapped-mode
/// callee's frame never overlaps.
pub const RED_ZONE: u64 = 128;

/// GDT selectors.
pub mod selector {
    /// Kernel (CPL0) code: the exception stubs.
    pub const KERNEL_CODE: u16 = 0x08;
    /// Kernel data.
    pub const KERNEL_DATA: u16 = 0x10;
    /// User data (RPL 3).
    pub const USER_DATA: u16 = 0x18 | 3;
    /// User 64-bit code (RPL 3).
    pub const USER_CODE: u16 = 0x20 | 3;
    /// TSS of vCPU slot `i` is at `TSS_BASE + 16 * i`.
    pub const TSS_BASE: u16 = 0x28;
}

// The fixed regions do not overlap, and each vCPU slot keeps a guard page
// between its TSS, its RSP0 stack and its IST stack.
const _: () = assert!(STUBS_ADDR + 32 * STUB_SIZE <= PAGE_TABLES_ADDR);
const _: () = assert!(VCPU_AREA_ADDR + MAX_VCPUS as u64 * VCPU_SLOT_SIZE <= IMAGE_BASE);
const _: () = assert!(TSS_OFFSET + TSS_SIZE <= EXC_STACK_OFFSET - PAGE_SIZE);
const _: () = assert!(EXC_STACK_OFFSET + EXC_STACK_SIZE <= IST_STACK_OFFSET - PAGE_SIZE);
const _: () = assert!(IST_STACK_OFFSET + EXC_STACK_SIZE < VCPU_SLOT_SIZE);
// The lease window: above all guest memory, 2 MiB-aligned (one PT per 2
// MiB), inside the first GiB (the PD that maps memory maps it too), and its
// PTs in the page-table area past those of the largest data region (PML4,
// PDPT, one PD, one PT per 2 MiB of MAX_MEMORY).
const _: () = assert!(LEASE_WINDOW_BASE >= MAX_MEMORY);
const _: () = assert!(LEASE_WINDOW_BASE.is_multiple_of(2 << 20));
const _: () = assert!(LEASE_WINDOW_BASE + LEASE_WINDOW_SIZE <= 1 << 30);
const _: () = assert!(LEASE_WINDOW_SIZE == 64 << 20);
const _: () =
    assert!(PAGE_TABLES_ADDR + (3 + MAX_MEMORY / (2 << 20)) * PAGE_SIZE <= LEASE_PAGE_TABLES_ADDR);
const _: () = assert!(LEASE_PAGE_TABLES_END <= PAGE_TABLES_END);
const _: () = assert!(LEASE_PAGE_TABLES_ADDR.is_multiple_of(PAGE_SIZE));
// The data region's page tables (PML4, PDPT, one PD, a PT per 2 MiB of
// MAX_MEMORY) end below the stack window's; those fit the page-table area,
// and the window lies above all domain memory, inside the first GiB.
const _: () =
    assert!(PAGE_TABLES_ADDR + (3 + MAX_MEMORY / (2 << 20)) * PAGE_SIZE <= STACK_WINDOW_PT_ADDR);
const _: () = assert!(
    STACK_WINDOW_PT_ADDR + STACK_WINDOW_SIZE / (2 << 20) * PAGE_SIZE <= STACK_WINDOW_PT_END
);
const _: () = assert!(STACK_WINDOW_PT_END <= PAGE_TABLES_END);
const _: () = assert!(STACK_WINDOW_BASE >= MAX_MEMORY);
const _: () =
    assert!(STACK_WINDOW_BASE.is_multiple_of(2 << 20) && STACK_WINDOW_SIZE.is_multiple_of(2 << 20));
const _: () = assert!(STACK_WINDOW_BASE + STACK_WINDOW_SIZE <= 1 << 30);

/// Round `v` up to a page boundary (`None` on overflow).
pub const fn page_up(v: u64) -> Option<u64> {
    match v.checked_add(PAGE_SIZE - 1) {
        Some(x) => Some(x & !(PAGE_SIZE - 1)),
        None => None,
    }
}

/// Base of vCPU slot `i`.
pub const fn vcpu_slot(i: u32) -> u64 {
    VCPU_AREA_ADDR + i as u64 * VCPU_SLOT_SIZE
}

/// The stack window cut into slots of `stack_size` bytes (a multiple of
/// the page size), each above a guard page: the same for every domain of a
/// system (the manifest's `[stacks] window_kib`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLayout {
    /// Bytes per thread stack.
    pub stack_size: u64,
}

impl WindowLayout {
    /// Bytes from one slot's guard page to the next one's.
    pub const fn stride(&self) -> u64 {
        self.stack_size + PAGE_SIZE
    }

    /// How many slots the window holds.
    pub const fn slots(&self) -> u32 {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "at most STACK_WINDOW_SIZE / PAGE_SIZE = 16384 slots"
        )]
        let n = (STACK_WINDOW_SIZE / self.stride()) as u32;
        n
    }

    /// Lowest usable byte of slot `i` (its guard page is just below).
    pub const fn bottom(&self, i: u32) -> u64 {
        STACK_WINDOW_BASE + i as u64 * self.stride() + PAGE_SIZE
    }

    /// One past the highest byte of slot `i`.
    pub const fn top(&self, i: u32) -> u64 {
        self.bottom(i) + self.stack_size
    }

    /// Whether the window page at `addr` belongs to a slot (not a guard
    /// page, not past the last slot).
    pub const fn is_stack_page(&self, addr: u64) -> bool {
        if addr < STACK_WINDOW_BASE {
            return false;
        }
        let off = addr - STACK_WINDOW_BASE;
        off / self.stride() < self.slots() as u64 && off % self.stride() >= PAGE_SIZE
    }
}

/// Where a domain's stacks and heap lie, computed from its image end and
/// manifest. Both the VMM and (through [`crate::BootInfo`]) the guest use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainLayout {
    /// End of the loaded image, page-aligned.
    pub image_end: u64,
    /// Bytes of guest memory.
    pub memory_size: u64,
    /// Stacks in the pool.
    pub stack_count: u32,
    /// Bytes per stack (a multiple of the page size).
    pub stack_size: u64,
}

impl DomainLayout {
    /// Bytes from one stack's guard page to the next one's.
    pub const fn stack_stride(&self) -> u64 {
        self.stack_size + PAGE_SIZE
    }

    /// Lowest usable byte of stack `i` (its guard page is just below).
    pub const fn stack_bottom(&self, i: u32) -> u64 {
        self.image_end + i as u64 * self.stack_stride() + PAGE_SIZE
    }

    /// One past the highest byte of stack `i`: the initial stack pointer.
    pub const fn stack_top(&self, i: u32) -> u64 {
        self.stack_bottom(i) + self.stack_size
    }

    /// First heap byte: just after the last stack.
    pub const fn heap_base(&self) -> u64 {
        self.image_end + self.stack_count as u64 * self.stack_stride()
    }

    /// Heap bytes, or `None` if image and stacks do not fit.
    pub const fn heap_size(&self) -> Option<u64> {
        self.memory_size.checked_sub(self.heap_base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tables_fit_max_memory() {
        // 4 KiB page tables for MAX_MEMORY: PML4 + PDPT + PDs + PTs.
        let pts = MAX_MEMORY / (2 << 20);
        let pds = MAX_MEMORY.div_ceil(1 << 30);
        assert!(PAGE_TABLES_ADDR + (2 + pds + pts) * PAGE_SIZE <= PAGE_TABLES_END);
    }

    #[test]
    fn window_slots_have_guards_and_fit() {
        let w = WindowLayout {
            stack_size: 0x4_0000,
        };
        assert_eq!(w.bottom(0), STACK_WINDOW_BASE + PAGE_SIZE);
        assert_eq!(w.top(0) + PAGE_SIZE, w.bottom(1));
        assert!(w.top(w.slots() - 1) <= STACK_WINDOW_BASE + STACK_WINDOW_SIZE);
        assert!(!w.is_stack_page(STACK_WINDOW_BASE));
        assert!(w.is_stack_page(w.bottom(0)));
        assert!(!w.is_stack_page(w.top(0)));
        assert!(!w.is_stack_page(w.top(w.slots() - 1) + PAGE_SIZE));
    }

    #[test]
    fn stacks_have_guards_and_heap_follows() {
        let l = DomainLayout {
            image_end: 0x30_0000,
            memory_size: 16 << 20,
            stack_count: 4,
            stack_size: 0x1_0000,
        };
        assert_eq!(l.stack_bottom(0), 0x30_1000);
        assert_eq!(l.stack_top(0), 0x31_1000);
        assert_eq!(l.stack_bottom(1), 0x31_2000);
        assert_eq!(l.heap_base(), l.stack_top(3));
        assert_eq!(l.heap_size(), Some((16 << 20) - l.heap_base()));
    }
}
