//! x86-64 state every domain starts from: page tables, GDT, IDT, per-vCPU
//! TSS with an I/O bitmap, the CPL0 exception stubs, and the segment and
//! control registers of a CPL3 long-mode vCPU.
//!
//! The host KVM is PVM: CPL0 code is emulated and slow, CPL3 runs natively.
//! So the guest lives at CPL3, and the only CPL0 code is the VMM's own
//! exception stubs (one `out` each), which a guest cannot modify because
//! their page is supervisor-only.

// Descriptor and table encodings pack layout constants, all small and fixed
// at compile time, into their hardware field widths; `usize` is 64 bits.
#![expect(
    clippy::cast_possible_truncation,
    reason = "x86 encodings of compile-time layout constants; usize is 64 bits (asserted)"
)]

pub mod lease;

use kvm_bindings::{kvm_segment, kvm_sregs};
use shared_abi::layout::{
    self, selector, DomainLayout, EXC_STACK_OFFSET, EXC_STACK_SIZE, GDT_ADDR, IDT_ADDR, IMAGE_BASE,
    IST_STACK_OFFSET, MAX_VCPUS, PAGE_SIZE, PAGE_TABLES_ADDR, PAGE_TABLES_END, STUBS_ADDR,
    STUB_SIZE, TSS_IOMAP_OFFSET, TSS_OFFSET, TSS_SIZE,
};
use shared_abi::{FAULT_PORT_BASE, HYPERCALL_PORT};
use x86::bits64::paging::{PDFlags, PDPTFlags, PML4Flags, PTFlags};
use x86::controlregs::{Cr0, Cr4};

/// Exceptions that push an error code (the VMM must skip it when reading
/// the frame the CPU pushed).
pub const fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// Number of exception vectors with a stub.
pub const STUB_VECTORS: u64 = 32;
/// The same count as a port range (the stubs' ports are `FAULT_PORT_BASE..+32`).
pub const STUB_PORTS: u16 = 32;
const _: () = assert!(STUB_PORTS as u64 == STUB_VECTORS);
const _: () = assert!(usize::BITS == 64);

/// EFER.LME | EFER.LMA: long mode active. No SCE, so `syscall` raises #UD
/// and is reported like any other fault.
const EFER_LONG_MODE: u64 = (1 << 8) | (1 << 10);

/// One contiguous write the VMM makes into a fresh domain's memory.
pub struct Blob {
    /// Guest-physical address.
    pub addr: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Whether a page of the domain is mapped, and for whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageAccess {
    Unmapped,
    Supervisor,
    User,
}

fn page_access(addr: u64, dl: &DomainLayout) -> PageAccess {
    use PageAccess::*;
    if addr < GDT_ADDR {
        return Unmapped;
    }
    if addr < STUBS_ADDR + PAGE_SIZE {
        return Supervisor;
    }
    if addr < layout::VCPU_AREA_ADDR {
        return Unmapped; // page tables are walked physically, never mapped
    }
    if addr < IMAGE_BASE {
        let off = (addr - layout::VCPU_AREA_ADDR) % layout::VCPU_SLOT_SIZE;
        let tss_pages = layout::page_up(TSS_SIZE).unwrap_or(0);
        let in_tss = (TSS_OFFSET..TSS_OFFSET + tss_pages).contains(&off);
        let in_exc = (EXC_STACK_OFFSET..EXC_STACK_OFFSET + EXC_STACK_SIZE).contains(&off);
        let in_ist = (IST_STACK_OFFSET..IST_STACK_OFFSET + EXC_STACK_SIZE).contains(&off);
        return if in_tss || in_exc || in_ist {
            Supervisor
        } else {
            Unmapped
        };
    }
    if addr < dl.image_end || addr >= dl.heap_base() {
        return User;
    }
    // Stack area: the first page of every stride is a guard page.
    let off = (addr - dl.image_end) % dl.stack_stride();
    if off < PAGE_SIZE {
        Unmapped
    } else {
        User
    }
}

/// Build the 4-level page tables identity-mapping `[0, memory_size)` with 4 KiB
/// pages, so guard pages and the null page can be left out.
pub fn page_tables(dl: &DomainLayout) -> Blob {
    let mem = dl.memory_size;
    let n_pt = mem.div_ceil(2 << 20); // one PT per 2 MiB
    let n_pd = mem.div_ceil(1 << 30); // one PD per 1 GiB
    let pml4 = PAGE_TABLES_ADDR;
    let pdpt = pml4 + PAGE_SIZE;
    let pd0 = pdpt + PAGE_SIZE;
    let pt0 = pd0 + n_pd * PAGE_SIZE;
    let total = (2 + n_pd + n_pt) * PAGE_SIZE;
    debug_assert!(PAGE_TABLES_ADDR + total <= PAGE_TABLES_END);
    let mut bytes = vec![0u8; total as usize];
    let mut put = |addr: u64, value: u64| {
        let off = (addr - PAGE_TABLES_ADDR) as usize;
        if let Some(slot) = bytes.get_mut(off..off + 8) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
    };
    // PVM needs U/S at every level; the leaf decides who may access.
    let upper = (PML4Flags::P | PML4Flags::RW | PML4Flags::US).bits();
    put(pml4, pdpt | upper);
    for i in 0..n_pd {
        put(
            pdpt + 8 * i,
            (pd0 + i * PAGE_SIZE) | (PDPTFlags::P | PDPTFlags::RW | PDPTFlags::US).bits(),
        );
    }
    for i in 0..n_pt {
        put(
            pd0 + 8 * i,
            (pt0 + i * PAGE_SIZE) | (PDFlags::P | PDFlags::RW | PDFlags::US).bits(),
        );
    }
    let mut addr = 0;
    while addr < mem {
        let flags = match page_access(addr, dl) {
            PageAccess::Unmapped => None,
            PageAccess::Supervisor => Some(PTFlags::P | PTFlags::RW),
            PageAccess::User => Some(PTFlags::P | PTFlags::RW | PTFlags::US),
        };
        if let Some(f) = flags {
            put(pt0 + 8 * (addr / PAGE_SIZE), addr | f.bits());
        }
        addr += PAGE_SIZE;
    }
    Blob {
        addr: PAGE_TABLES_ADDR,
        bytes,
    }
}

/// The stack window's part of a `mapped` domain's page tables: the page
/// directory entries that cover the window (written into the PD of
/// [`page_tables`], which they extend) and one page table per 2 MiB of
/// window, from [`layout::STACK_WINDOW_PT_ADDR`]. Every slot page is a
/// present user page; guard pages are not present (a stack overflow is a
/// clean #PF with CR2 in the guard). Whether a slot page is backed is the
/// memory slots' business: a present page of an unmapped slot is an access
/// to unbacked memory, which the VMM reports as a fault of the accessing
/// domain (`pseudo_vector::UNBACKED_ACCESS`).
pub fn window_page_tables(w: &layout::WindowLayout) -> [Blob; 2] {
    use layout::{STACK_WINDOW_BASE, STACK_WINDOW_PT_ADDR, STACK_WINDOW_SIZE};
    let n_pt = STACK_WINDOW_SIZE / (2 << 20);
    let first = STACK_WINDOW_BASE / (2 << 20);
    let pd0 = PAGE_TABLES_ADDR + 2 * PAGE_SIZE;
    let mut pd = Vec::with_capacity(8 * n_pt as usize);
    for i in 0..n_pt {
        let e = (STACK_WINDOW_PT_ADDR + i * PAGE_SIZE)
            | (PDFlags::P | PDFlags::RW | PDFlags::US).bits();
        pd.extend_from_slice(&e.to_le_bytes());
    }
    let mut pts = vec![0u8; (n_pt * PAGE_SIZE) as usize];
    let user = (PTFlags::P | PTFlags::RW | PTFlags::US).bits();
    for (i, slot) in pts.chunks_exact_mut(8).enumerate() {
        let addr = STACK_WINDOW_BASE + i as u64 * PAGE_SIZE;
        if w.is_stack_page(addr) {
            slot.copy_from_slice(&(addr | user).to_le_bytes());
        }
    }
    [
        Blob {
            addr: pd0 + 8 * first,
            bytes: pd,
        },
        Blob {
            addr: STACK_WINDOW_PT_ADDR,
            bytes: pts,
        },
    ]
}

/// GDT: null, kernel code/data, user data/code, then one 16-byte TSS
/// descriptor per vCPU slot (each vCPU has its own TSS, so two vCPUs never
/// share an exception stack).
pub fn gdt() -> Blob {
    let mut bytes = Vec::with_capacity(gdt_limit() as usize + 1);
    for entry in [
        0u64,
        0x00af_9b00_0000_ffff, // 0x08 kernel code: P, DPL0, L
        0x00cf_9300_0000_ffff, // 0x10 kernel data: P, DPL0
        0x00cf_f300_0000_ffff, // 0x18 user data: P, DPL3
        0x00af_fb00_0000_ffff, // 0x20 user code: P, DPL3, L
    ] {
        bytes.extend_from_slice(&entry.to_le_bytes());
    }
    for slot in 0..MAX_VCPUS {
        let base = layout::vcpu_slot(slot) + TSS_OFFSET;
        let limit = TSS_SIZE - 1;
        let low = (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x9 << 40) // 64-bit TSS, available
            | (1 << 47) // present
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        bytes.extend_from_slice(&low.to_le_bytes());
        bytes.extend_from_slice(&(base >> 32).to_le_bytes());
    }
    Blob {
        addr: GDT_ADDR,
        bytes,
    }
}

fn gdt_limit() -> u16 {
    (selector::TSS_BASE as u32 + 16 * MAX_VCPUS - 1) as u16
}

/// Vectors delivered on the IST1 stack: those that may arrive with a broken RSP.
fn uses_ist(vector: u64) -> bool {
    matches!(vector, 2 | 8 | 18)
}

/// IDT: an interrupt gate per exception vector, pointing at its stub. Gates
/// are DPL0 so a CPL3 `int n` is itself a #GP, not a way in.
pub fn idt() -> Blob {
    let mut bytes = vec![0u8; 256 * 16];
    for v in 0..STUB_VECTORS {
        let off = STUBS_ADDR + v * STUB_SIZE;
        let ist = u64::from(uses_ist(v));
        let low = (off & 0xffff)
            | ((selector::KERNEL_CODE as u64) << 16)
            | (ist << 32)
            | (0x8e << 40) // present, DPL0, 64-bit interrupt gate
            | (((off >> 16) & 0xffff) << 48);
        let high = off >> 32;
        let at = (v * 16) as usize;
        let gate = (u128::from(high) << 64) | u128::from(low);
        if let Some(s) = bytes.get_mut(at..at + 16) {
            s.copy_from_slice(&gate.to_le_bytes());
        }
    }
    Blob {
        addr: IDT_ADDR,
        bytes,
    }
}

/// One stub per vector: `mov dx, FAULT_PORT_BASE + v; out dx, al; jmp $`.
/// The VMM reads the CPU's exception frame at the stub's RSP, so the stub
/// itself needs no stack and no error-code handling.
pub fn stubs() -> Blob {
    let mut bytes = vec![0xccu8; (STUB_VECTORS * STUB_SIZE) as usize];
    for v in 0..STUB_VECTORS {
        let port = FAULT_PORT_BASE + v as u16;
        let [lo, hi] = port.to_le_bytes();
        let code = [0x66, 0xba, lo, hi, 0xee, 0xeb, 0xfe];
        let at = (v * STUB_SIZE) as usize;
        if let Some(s) = bytes.get_mut(at..at + code.len()) {
            s.copy_from_slice(&code);
        }
    }
    Blob {
        addr: STUBS_ADDR,
        bytes,
    }
}

/// The TSS of vCPU slot `slot`: RSP0 and IST1 stacks, and an I/O bitmap that
/// grants exactly the hypercall port (all four bytes an `out eax` touches).
pub fn tss(slot: u32) -> Blob {
    let base = layout::vcpu_slot(slot);
    let mut bytes = vec![0u8; TSS_SIZE as usize];
    let rsp0 = base + EXC_STACK_OFFSET + EXC_STACK_SIZE;
    let ist1 = base + IST_STACK_OFFSET + EXC_STACK_SIZE;
    let iomap = TSS_IOMAP_OFFSET as usize;
    if let Some(s) = bytes.get_mut(4..12) {
        s.copy_from_slice(&rsp0.to_le_bytes());
    }
    if let Some(s) = bytes.get_mut(0x24..0x2c) {
        s.copy_from_slice(&ist1.to_le_bytes());
    }
    if let Some(s) = bytes.get_mut(102..104) {
        s.copy_from_slice(&(TSS_IOMAP_OFFSET as u16).to_le_bytes());
    }
    if let Some(map) = bytes.get_mut(iomap..) {
        map.fill(0xff);
        for port in HYPERCALL_PORT..HYPERCALL_PORT + 4 {
            if let Some(b) = map.get_mut(port as usize / 8) {
                *b &= !(1 << (port % 8));
            }
        }
    }
    Blob {
        addr: base + TSS_OFFSET,
        bytes,
    }
}

/// Range of the exception stacks of vCPU slot `slot` (RSP0 and IST1), for
/// checking a reported exception frame lies where the CPU would put it.
pub fn exception_stacks(slot: u32) -> [(u64, u64); 2] {
    let base = layout::vcpu_slot(slot);
    [
        (
            base + EXC_STACK_OFFSET,
            base + EXC_STACK_OFFSET + EXC_STACK_SIZE,
        ),
        (
            base + IST_STACK_OFFSET,
            base + IST_STACK_OFFSET + EXC_STACK_SIZE,
        ),
    ]
}

fn segment(selector: u16, type_: u8, l: u8, db: u8, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Special registers of a vCPU in slot `slot`: 64-bit CPL3 segments, its own
/// TR, paging on. Starts from KVM's reset state `base` for anything else.
pub fn sregs(base: &kvm_sregs, slot: u32) -> kvm_sregs {
    let mut s = *base;
    s.cs = segment(selector::USER_CODE, 0xb, 1, 0, 3);
    let data = segment(selector::USER_DATA, 0x3, 0, 1, 3);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = kvm_segment {
        base: layout::vcpu_slot(slot) + TSS_OFFSET,
        limit: (TSS_SIZE - 1) as u32,
        selector: selector::TSS_BASE + 16 * slot as u16,
        type_: 0xb, // 64-bit TSS, busy
        present: 1,
        dpl: 0,
        db: 0,
        s: 0,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    s.gdt.base = GDT_ADDR;
    s.gdt.limit = gdt_limit();
    s.idt.base = IDT_ADDR;
    s.idt.limit = 256 * 16 - 1;
    s.cr0 = (Cr0::CR0_PROTECTED_MODE
        | Cr0::CR0_MONITOR_COPROCESSOR
        | Cr0::CR0_EXTENSION_TYPE
        | Cr0::CR0_NUMERIC_ERROR
        | Cr0::CR0_WRITE_PROTECT
        | Cr0::CR0_ENABLE_PAGING)
        .bits() as u64;
    s.cr3 = PAGE_TABLES_ADDR;
    s.cr4 = (Cr4::CR4_ENABLE_PAE | Cr4::CR4_ENABLE_SSE | Cr4::CR4_UNMASKED_SSE).bits() as u64;
    s.efer = EFER_LONG_MODE;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u64(b: &Blob, addr: u64) -> u64 {
        let off = (addr - b.addr) as usize;
        u64::from_le_bytes(b.bytes[off..off + 8].try_into().unwrap())
    }

    fn layout() -> DomainLayout {
        DomainLayout {
            image_end: 0x30_0000,
            memory_size: 8 << 20,
            stack_count: 2,
            stack_size: 0x4000,
        }
    }

    fn pte(pt: &Blob, dl: &DomainLayout, addr: u64) -> u64 {
        let n_pd = dl.memory_size.div_ceil(1 << 30);
        let pt0 = PAGE_TABLES_ADDR + (2 + n_pd) * PAGE_SIZE;
        read_u64(pt, pt0 + 8 * (addr / PAGE_SIZE))
    }

    #[test]
    fn window_page_tables_map_slots_not_guards() {
        let w = layout::WindowLayout {
            stack_size: 0x4_0000,
        };
        let [pd, pts] = window_page_tables(&w);
        let pd0 = PAGE_TABLES_ADDR + 2 * PAGE_SIZE;
        let first = layout::STACK_WINDOW_BASE >> 21;
        assert_eq!(pd.addr, pd0 + 8 * first);
        assert_eq!(
            read_u64(&pd, pd.addr) & !0xfff,
            layout::STACK_WINDOW_PT_ADDR
        );
        assert!(pts.addr + pts.bytes.len() as u64 <= layout::STACK_WINDOW_PT_END);
        let pte = |addr: u64| {
            let i = (addr - layout::STACK_WINDOW_BASE) / PAGE_SIZE;
            read_u64(&pts, pts.addr + 8 * i)
        };
        assert_eq!(pte(layout::STACK_WINDOW_BASE), 0, "the first guard page");
        assert_eq!(pte(w.bottom(0)), w.bottom(0) | 0x7);
        assert_eq!(pte(w.top(0) - PAGE_SIZE), (w.top(0) - PAGE_SIZE) | 0x7);
        assert_eq!(pte(w.top(0)), 0, "the guard page of slot 1");
        assert_eq!(pte(w.bottom(1)), w.bottom(1) | 0x7);
    }

    #[test]
    fn page_tables_hide_system_pages_and_guards() {
        let dl = layout();
        let pt = page_tables(&dl);
        let user = (PTFlags::P | PTFlags::US).bits();
        assert_eq!(pte(&pt, &dl, 0), 0, "null page unmapped");
        assert_eq!(
            pte(&pt, &dl, GDT_ADDR) & user,
            PTFlags::P.bits(),
            "GDT supervisor-only"
        );
        assert_eq!(pte(&pt, &dl, PAGE_TABLES_ADDR), 0, "page tables unmapped");
        assert_eq!(pte(&pt, &dl, IMAGE_BASE) & user, user);
        assert_eq!(
            pte(&pt, &dl, dl.stack_bottom(0) - PAGE_SIZE),
            0,
            "guard page"
        );
        assert_eq!(pte(&pt, &dl, dl.stack_bottom(1)) & user, user);
        assert_eq!(pte(&pt, &dl, dl.heap_base()) & user, user);
        assert_eq!(pte(&pt, &dl, dl.memory_size - PAGE_SIZE) & user, user);
    }

    #[test]
    fn tss_grants_only_the_hypercall_port() {
        let t = tss(3);
        let map = &t.bytes[TSS_IOMAP_OFFSET as usize..];
        let allowed = |p: u16| map[p as usize / 8] & (1 << (p % 8)) == 0;
        assert!((HYPERCALL_PORT..HYPERCALL_PORT + 4).all(allowed));
        assert!(!allowed(HYPERCALL_PORT - 1));
        assert!(!allowed(HYPERCALL_PORT + 4));
        assert!(!allowed(FAULT_PORT_BASE));
        assert_eq!(*t.bytes.last().unwrap(), 0xff);
    }

    #[test]
    fn stubs_report_their_vector() {
        let s = stubs();
        let at = (14 * STUB_SIZE) as usize;
        assert_eq!(&s.bytes[at..at + 5], &[0x66, 0xba, 0x0e, 0x01, 0xee]);
    }
}
