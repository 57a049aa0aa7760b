//! Internals the integration tests need and users never do: hooks that make
//! KVM failures happen on demand. Compiled only with the `test-util`
//! feature, so they are not part of the public API.

use crate::domain::Domain;

/// Make `domain`'s next `n` vCPU creations fail as if KVM were out of
/// memory (a failed creation must not leave its slot counted as live).
pub fn fail_next_vcpu_creations(domain: &Domain, n: u32) {
    domain.fail_next_vcpu_creations(n);
}

/// `KVM_RUN`s and other vCPU ioctls made so far, process-wide (the hot-path
/// test asserts a warm call makes no ioctl but `KVM_RUN`).
pub fn vcpu_ioctl_counts() -> (u64, u64) {
    crate::vcpu::ioctl_counts()
}

/// Budget publications (frame pushes and pops on meters) of every chain
/// that has ended, and kicks sent, process-wide.
pub fn budget_counts() -> (u64, u64) {
    (crate::watch::publications(), crate::watch::kick::sent())
}

/// Write `bytes` into `domain`'s memory at `addr`, as a test standing in
/// for another party that shares the page would.
pub fn write_guest(domain: &Domain, addr: u64, bytes: &[u8]) -> Result<(), String> {
    crate::guest_io::write(domain.mem(), addr, bytes).map_err(|e| e.to_string())
}

/// Read `len` bytes of `domain`'s memory at `addr`, as a test checking
/// what a reset left there.
pub fn read_guest(domain: &Domain, addr: u64, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0; len];
    crate::guest_io::read(domain.mem(), addr, &mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Guest addresses of `domain`'s resident pages, as a test picks a page
/// the guest has touched.
pub fn resident_pages(domain: &Domain) -> Result<Vec<u64>, String> {
    domain.resident_page_addrs().map_err(|e| e.to_string())
}

/// Entry points for the cargo-fuzz targets in `fuzz/`: each feeds a
/// fuzzer's raw bytes to one decoder of guest input, laid out as a guest
/// would present them in the memory of a small real domain, and panics if
/// a property the property tests (`props/`) check fails. Never called by
/// the VMM.
pub mod fuzz {
    use crate::region::DataRegion;
    use shared_abi::layout::{DomainLayout, IMAGE_BASE};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    /// The domain the targets use: a 64 KiB image, four 16 KiB stacks, heap.
    fn layout() -> DomainLayout {
        DomainLayout {
            image_end: IMAGE_BASE + 0x1_0000,
            memory_size: 4 << 20,
            stack_count: 4,
            stack_size: 16 << 10,
        }
    }

    /// The first 8 bytes of `data` as a number (zero-padded), and the rest.
    fn word(data: &[u8]) -> (u64, &[u8]) {
        let (head, rest) = data.split_at(data.len().min(8));
        let mut w = [0u8; 8];
        w.iter_mut().zip(head).for_each(|(d, s)| *d = *s);
        (u64::from_le_bytes(w), rest)
    }

    /// Memory of [`layout`] with `bytes` written at `at` (what fits).
    fn memory_with(at: u64, bytes: &[u8]) -> Option<GuestMemoryMmap> {
        let size = usize::try_from(layout().memory_size).ok()?;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).ok()?;
        let room = usize::try_from(layout().memory_size.saturating_sub(at)).unwrap_or(0);
        let fits = bytes.get(..bytes.len().min(room)).unwrap_or_default();
        let _ = crate::guest_io::write(&mem, at, fits);
        Some(mem)
    }

    /// Registers (18 words, in `kvm_regs` order) as a hypercall.
    pub fn hypercall(data: &[u8]) {
        let mut w = [0u64; 18];
        let mut rest = data;
        for slot in &mut w {
            (*slot, rest) = word(rest);
        }
        let [rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] =
            w;
        let r = kvm_bindings::kvm_regs {
            rax,
            rbx,
            rcx,
            rdx,
            rsi,
            rdi,
            rsp,
            rbp,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            rip,
            rflags,
        };
        let got = crate::hypercall::GuestRequest::decode(&r);
        assert_eq!(got, crate::hypercall::GuestRequest::decode(&r));
    }

    /// A `Call` request: an address, a stack budget, then bytes written at
    /// the address (modulo memory, near the heap): read, then validated.
    pub fn call_request(data: &[u8]) {
        let l = layout();
        let region = DataRegion::of(&l);
        let (addr, rest) = word(data);
        let (budget, bytes) = word(rest);
        let at = l
            .heap_base()
            .wrapping_add(addr % 0x1_0000)
            .wrapping_sub(0x100);
        let Some(mem) = memory_with(at, bytes) else {
            return;
        };
        let inside = |a: u64, n: u64| region.check(a, n).is_ok();
        let Ok(req) = crate::guest_io::read_call_request(&mem, at, inside) else {
            return;
        };
        if let Ok(plan) = crate::thread::arglist::validate(&req, &region, budget % 0x2_0000) {
            for p in plan.objects().iter().filter(|p| !p.is_empty()) {
                assert!(inside(p.caller.addr(), p.len()));
                assert!(p.caller.read(&mem).is_ok());
            }
        }
    }

    /// A hello: an address, then bytes written from the image base.
    pub fn hello(data: &[u8]) {
        let l = layout();
        let region = DataRegion::of(&l);
        let (addr, bytes) = word(data);
        let Some(mem) = memory_with(IMAGE_BASE, bytes) else {
            return;
        };
        let at = IMAGE_BASE.wrapping_add(addr % 0x1_0000);
        if let Ok(info) = crate::domain::boot::decode_hello(&mem, &region, l.image_end, at, 3) {
            assert!((IMAGE_BASE..l.image_end).contains(&info.dispatcher));
            assert!(info.entries.len() <= crate::domain::boot::MAX_ENTRIES as usize);
        }
    }

    /// A print: an address, a length, then bytes written near the heap.
    pub fn print(data: &[u8]) {
        let l = layout();
        let region = DataRegion::of(&l);
        let (addr, rest) = word(data);
        let (len, bytes) = word(rest);
        let at = l.heap_base().wrapping_sub(0x100);
        let Some(mem) = memory_with(at, bytes) else {
            return;
        };
        let text = region.read_text(&mem, at.wrapping_add(addr % 0x2000), len, 4096);
        let line = crate::guest_text::print_line(&text);
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
}
