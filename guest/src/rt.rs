//! Boot (`_start`), boot information, heap and panic handler.

use crate::entry::dispatch;
use crate::hypercall::{hypercall, hypercall_scalar};
use crate::image::{declaration, publish, Tables};
use crate::samples::{SAMPLES, SAMPLE_CAPACITY, SAMPLE_COUNT};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use linked_list_allocator::LockedHeap;
use shared_abi::{BootInfo, Hello, Hypercall, ABI_VERSION};

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static DOMAIN_ID: AtomicU32 = AtomicU32::new(0);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static HEAP_BASE: AtomicU64 = AtomicU64::new(0);
static HEAP_SIZE: AtomicU64 = AtomicU64::new(0);
static STACK_SIZE: AtomicU64 = AtomicU64::new(0);
static CAP_COUNT: AtomicU32 = AtomicU32::new(0);

/// This domain's id (its index in the manifest), from `BootInfo`.
pub fn domain_id() -> u32 {
    DOMAIN_ID.load(Ordering::Relaxed)
}

/// How often this domain has been (re)started (0 at first boot).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// A copy of the `BootInfo` this domain booted with (the original lived on
/// the boot stack, which goes back to the pool after `Ready`).
pub fn boot_info() -> BootInfo {
    BootInfo {
        abi_version: ABI_VERSION,
        domain_id: domain_id(),
        heap_base: HEAP_BASE.load(Ordering::Relaxed),
        heap_size: HEAP_SIZE.load(Ordering::Relaxed),
        stack_size: STACK_SIZE.load(Ordering::Relaxed),
        generation: generation(),
        cap_count: CAP_COUNT.load(Ordering::Relaxed),
        reserved: 0,
    }
}

/// The guest's entry point: the VMM starts it once per (re)start with RDI →
/// `BootInfo` on the boot stack. Sets up the heap, says `Hello`, runs the
/// image's init function and says `Ready`. Never returns.
///
/// # Safety
/// Only the VMM calls this, with a valid `BootInfo` whose heap range is
/// memory this domain owns and nothing else uses.
#[no_mangle]
#[link_section = ".text._start"]
pub unsafe extern "C" fn _start(boot: *const BootInfo) -> ! {
    // SAFETY: forwarded from our own contract.
    unsafe { boot_with(boot, ABI_VERSION) }
}

/// Smallest heap handed to the allocator (smaller: no heap at all).
const MIN_HEAP: u64 = 4096;

/// Bytes of a panic message (longer ones are truncated).
const PANIC_MSG_MAX: usize = 512;

/// A truncating formatting buffer.
struct FixedBuf {
    buf: [u8; PANIC_MSG_MAX],
    len: usize,
}

impl FixedBuf {
    fn new() -> Self {
        Self {
            buf: [0; PANIC_MSG_MAX],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // SAFETY: `write_str` appends only whole strs or prefixes cut at a
        // character boundary.
        unsafe { core::str::from_utf8_unchecked(&self.buf[..self.len]) }
    }
}

impl Write for FixedBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut n = s.len().min(PANIC_MSG_MAX - self.len);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn report_panic(msg: &str) {
    // SAFETY: Panic only reads `msg`.
    unsafe {
        hypercall(
            Hypercall::Panic as u32,
            [msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0, 0],
        )
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut msg = FixedBuf::new();
    let _ = write!(msg, "{info}");
    report_panic(msg.as_str());
    loop {
        // SAFETY: ud2 only raises #UD; the VMM stops the domain anyway.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
}

/// TEST-ONLY — never call this from a real image. Boots exactly like
/// [`_start`] but says `Hello` with `abi_version` instead of
/// [`ABI_VERSION`], so the VMM's tests can check that it refuses a guest
/// built against another ABI version (image `badabi` enters here through
/// its own entry symbol).
///
/// Hidden rather than behind a cargo feature on purpose: cargo unifies
/// features across the guest workspace, so a feature would reach every image
/// anyway and isolate nothing. Images that do not call this link none of it,
/// and `_start` compiles to the same code as before.
///
/// # Safety
/// As for [`_start`]: call it only as the image's entry point, once per
/// boot, with the `BootInfo` the VMM passed.
#[doc(hidden)]
#[inline] // codegen only in the image that calls it
pub unsafe fn __test_only_start_with_abi_version(boot: *const BootInfo, abi_version: u32) -> ! {
    // SAFETY: forwarded from our own contract.
    unsafe { boot_with(boot, abi_version) }
}

/// The body of [`_start`], saying `Hello` with `abi_version` (always
/// [`ABI_VERSION`] except in the test-only
/// `__test_only_start_with_abi_version`).
///
/// # Safety
/// As for [`_start`].
#[inline(always)]
unsafe fn boot_with(boot: *const BootInfo, abi_version: u32) -> ! {
    // SAFETY: the VMM passes a valid BootInfo (see `_start`).
    let boot = unsafe { boot.read() };
    DOMAIN_ID.store(boot.domain_id, Ordering::Relaxed);
    GENERATION.store(boot.generation, Ordering::Relaxed);
    HEAP_BASE.store(boot.heap_base, Ordering::Relaxed);
    HEAP_SIZE.store(boot.heap_size, Ordering::Relaxed);
    STACK_SIZE.store(boot.stack_size, Ordering::Relaxed);
    CAP_COUNT.store(boot.cap_count, Ordering::Relaxed);
    // The allocator needs a few words of bookkeeping; a tinier heap would
    // make `init` panic before we could even say Hello.
    if boot.heap_size >= MIN_HEAP {
        // SAFETY: the heap range is ours alone (VMM contract); this runs once
        // per boot, before any allocation.
        unsafe {
            HEAP.lock()
                .init(boot.heap_base as *mut u8, boot.heap_size as usize)
        };
    }

    // The tables live on the heap for the rest of this boot; the VMM
    // writes the capability table into `t.caps` when it accepts the Hello.
    let decl = declaration();
    let t = Tables::build(decl, boot.cap_count);
    let addr_or_0 = |n: usize, p: u64| if n == 0 { 0 } else { p };
    let hello = Hello {
        abi_version,
        entry_count: t.entries.len() as u32,
        entries: t.entries.as_ptr() as u64,
        dispatcher: dispatch as extern "C" fn(_, _) -> ! as usize as u64,
        samples: SAMPLES.addr(),
        sample_capacity: SAMPLE_CAPACITY as u64,
        sample_count: SAMPLE_COUNT.as_ptr() as u64,
        imports: addr_or_0(t.imports.len(), t.imports.as_ptr() as u64),
        import_count: t.imports.len() as u32,
        cap_capacity: t.caps.len() as u32,
        caps: addr_or_0(t.caps.len(), t.caps.as_mut_ptr() as u64),
    };
    // SAFETY: Hello reads the struct and the tables it names, all live, and
    // writes only the capability buffer (`t.caps`, ours, no reference to
    // its contents held across the hypercall).
    let (status, _) = unsafe {
        hypercall(
            Hypercall::Hello as u32,
            [&hello as *const Hello as u64, 0, 0, 0, 0, 0],
        )
    };
    publish(t);
    if status != 0 {
        let mut msg = FixedBuf::new();
        let _ = write!(msg, "ferry-guest: Hello refused with status {status:#x}");
        loop {
            report_panic(msg.as_str());
        }
    }

    if let Some(init) = decl.init {
        init();
    }
    loop {
        hypercall_scalar(Hypercall::Ready, [0; 6]);
    }
}
