//! Bringing a domain's guest to life — at creation and again after a fault:
//! lay out memory, load the image, run `_start` until `Ready`, check `Hello`.

use super::{loader, Domain, SampleRing};
use crate::arch;
use crate::fault::{self, FaultReport};
use crate::guest_io::{self, GuestMemError};
use crate::hypercall::GuestRequest;
use crate::ids::StackIndex;
use crate::region::{DataRegion, RangeError};
use crate::vcpu::{Exit, Vcpu};
use crate::watch::Meter;
use shared_abi::layout::{DomainLayout, IMAGE_BASE, MAX_VCPUS};
use shared_abi::{BootInfo, EntryDecl, Hello, Sample, ABI_VERSION};
use vm_memory::GuestMemoryMmap;

/// Most entries a guest may declare.
pub const MAX_ENTRIES: u32 = 256;
/// Least heap a domain must have after its image and stacks.
pub const MIN_HEAP: u64 = 64 * 1024;
/// Most hypercalls a guest may make while booting (a loop guard).
const MAX_BOOT_EXITS: u32 = 100_000;
/// Bytes the boot information takes at the top of the boot stack, rounded
/// up to the 16-byte alignment the x86-64 ABI wants below it.
const BOOT_INFO_FOOTPRINT: u64 = (size_of::<BootInfo>() as u64).next_multiple_of(16);

/// A domain could not be started (or restarted); the cause is the source.
#[derive(Debug, thiserror::Error)]
#[error("domain `{domain}`")]
pub struct BootError {
    /// The domain.
    pub domain: String,
    /// What went wrong (boxed: boot errors are rare, results are not).
    #[source]
    pub failure: Box<BootFailure>,
}

impl BootError {
    /// `failure` of domain `domain`.
    pub fn new(domain: &str, failure: BootFailure) -> Self {
        Self {
            domain: domain.to_owned(),
            failure: Box::new(failure),
        }
    }
}

/// What stopped a boot or a restart.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum BootFailure {
    #[error("KVM {what} failed")]
    Kvm {
        /// Which operation.
        what: &'static str,
        /// The error.
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("a memory size of {0} bytes does not fit this host")]
    MemorySize(u64),
    #[error("cannot map guest memory")]
    MapMemory(#[source] vm_memory::mmap::FromRangesError),
    #[error("cannot zero guest memory")]
    ZeroMemory(#[source] std::io::Error),
    #[error("cannot write the system pages")]
    SystemPages(#[source] GuestMemError),
    #[error("image {image}")]
    Image {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: loader::LoadError,
    },
    #[error("{} MiB of memory do not hold the image ({} KiB), {stacks} stacks of {} KiB and a heap of at least {} KiB: the smallest `memory_mib` that fits is {fits_mib}", memory >> 20, image >> 10, stack_size >> 10, MIN_HEAP >> 10)]
    TooSmall {
        /// The smallest whole number of MiB that would hold them.
        fits_mib: u64,
        /// Guest memory in bytes.
        memory: u64,
        /// Image size in bytes.
        image: u64,
        /// Stacks in the pool.
        stacks: u32,
        /// Bytes per stack.
        stack_size: u64,
    },
    #[error("guest speaks ABI version {guest}, this VMM speaks {vmm}")]
    AbiVersion {
        /// The guest's version.
        guest: u32,
        /// Ours.
        vmm: u32,
    },
    #[error("the manifest exports [{}] but image `{image}` declares [{}]", manifest.join(", "), image_entries.join(", "))]
    EntryMismatch {
        /// The image.
        image: String,
        /// What the manifest exports.
        manifest: Vec<String>,
        /// What the image declares.
        image_entries: Vec<String>,
    },
    #[error("bad hello")]
    BadHello(#[source] HelloError),
    #[error("faulted while booting: {0}")]
    Fault(FaultReport),
    #[error("broke the boot protocol")]
    Protocol(#[source] BootProtocol),
    #[error("the image changed its entry point or size")]
    ImageChanged,
    #[error("a stack is still out")]
    StackOut,
    #[error("a vCPU is still out")]
    VcpuOut,
}

/// What is wrong with a guest's hello.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("the hello is not readable")]
    Unreadable(#[source] RangeError),
    #[error("{0} entries (at most {MAX_ENTRIES})")]
    TooManyEntries(u32),
    #[error("the entry table is not readable")]
    EntryTable(#[source] RangeError),
    #[error("entry {0} has no valid name")]
    EntryName(u64),
    #[error("dispatcher {0:#x} is outside the image")]
    DispatcherOutside(u64),
    #[error("the sample ring is outside the data region")]
    SampleRing,
    #[error("the restarted guest introduced itself differently")]
    ChangedOnRestart,
}

/// How a booting guest broke the boot protocol.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum BootProtocol {
    #[error("no stack to boot on")]
    NoBootStack,
    #[error("cannot write the boot information")]
    BootInfo(#[source] GuestMemError),
    #[error("`Ready` before `Hello`")]
    ReadyBeforeHello,
    #[error("{0:?} while booting")]
    Unexpected(GuestRequest),
    #[error("no `Ready` after {MAX_BOOT_EXITS} hypercalls")]
    TooManyExits,
    /// The guest's boot used up its time limit (the domain's `restart_ms`,
    /// CPU time of the booting host thread) without `Ready`: at the first
    /// boot the system refuses to start; at a restart the domain is dead.
    #[error("no `Ready` within its boot time limit (`restart_ms` = {limit_ms} ms of CPU time)")]
    Overran {
        /// The limit that ran out, in ms.
        limit_ms: u128,
    },
}

/// What a guest said in its hello, checked against its memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloInfo {
    /// Entry names by index.
    pub entries: Vec<String>,
    /// The dispatcher's address.
    pub dispatcher: u64,
    /// The sample ring.
    pub samples: SampleRing,
}

/// Load `image` into `mem` (its segments checked to lie in the image area).
pub(super) fn load_image(
    mem: &GuestMemoryMmap,
    memory_size: u64,
    image: &[u8],
    domain: &str,
    image_name: &str,
) -> Result<loader::LoadedImage, BootError> {
    loader::load(mem, memory_size, image).map_err(|source| {
        BootError::new(
            domain,
            BootFailure::Image {
                image: image_name.to_owned(),
                source,
            },
        )
    })
}

/// Write the VMM's own pages: page tables, GDT, IDT, exception stubs, TSSs.
pub(super) fn write_system_pages(
    mem: &GuestMemoryMmap,
    layout: &DomainLayout,
    domain: &str,
) -> Result<(), BootError> {
    let mut blobs = vec![
        arch::page_tables(layout),
        arch::gdt(),
        arch::idt(),
        arch::stubs(),
    ];
    blobs.extend((0..MAX_VCPUS).map(arch::tss));
    for b in &blobs {
        guest_io::write(mem, b.addr, &b.bytes)
            .map_err(|e| BootError::new(domain, BootFailure::SystemPages(e)))?;
    }
    Ok(())
}

/// The layout of a domain whose image ends at `image_end`, if it fits
/// (else how much memory would: checked before boot from the image's
/// headers, and again once the image is loaded).
pub(crate) fn layout_for(
    image_end: u64,
    spec: &crate::manifest::DomainSpec,
) -> Result<DomainLayout, BootFailure> {
    let layout = DomainLayout {
        image_end,
        memory_size: spec.memory,
        stack_count: spec.stacks,
        stack_size: spec.stack_size,
    };
    match layout.heap_size() {
        Some(h) if h >= MIN_HEAP => Ok(layout),
        _ => Err(BootFailure::TooSmall {
            fits_mib: layout
                .heap_base()
                .saturating_add(MIN_HEAP)
                .div_ceil(1 << 20),
            memory: spec.memory,
            image: image_end.saturating_sub(IMAGE_BASE),
            stacks: spec.stacks,
            stack_size: spec.stack_size,
        }),
    }
}

impl Domain {
    /// Run the guest's `_start` on `vcpu` until `Ready`; returns its hello.
    /// With a `meter` (the first boot, under `System::boot`'s registration;
    /// a restart, on the restarter), the boot is kicked when the meter's
    /// budget (the domain's `restart_ms`) runs out, and then fails.
    pub(super) fn run_boot(
        &self,
        vcpu: &mut Vcpu,
        entry: u64,
        generation: u64,
        meter: Option<&Meter>,
    ) -> Result<HelloInfo, BootError> {
        let stack = self.stacks.take().ok_or_else(|| {
            BootError::new(&self.name, BootFailure::Protocol(BootProtocol::NoBootStack))
        })?;
        let result = self.boot_on_stack(vcpu, entry, generation, StackIndex::new(stack), meter);
        self.stacks.give_back(stack);
        result.map_err(|failure| BootError::new(&self.name, failure))
    }

    fn boot_on_stack(
        &self,
        vcpu: &mut Vcpu,
        entry: u64,
        generation: u64,
        stack: StackIndex,
        meter: Option<&Meter>,
    ) -> Result<HelloInfo, BootFailure> {
        let info_addr = self.stack_top(stack) - BOOT_INFO_FOOTPRINT;
        let info = BootInfo {
            abi_version: ABI_VERSION,
            domain_id: self.id.raw(),
            heap_base: self.layout.heap_base(),
            heap_size: self.layout.heap_size().unwrap_or(0),
            stack_size: self.layout.stack_size,
            generation,
            cap_count: 0,
            reserved: 0,
        };
        guest_io::write(self.mem(), info_addr, &guest_io::encode_boot_info(&info))
            .map_err(|e| BootFailure::Protocol(BootProtocol::BootInfo(e)))?;
        vcpu.set_regs(|r| {
            *r = kvm_bindings::kvm_regs {
                rip: entry,
                // As if `_start` had been called: the return slot below the info.
                rsp: info_addr - 8,
                rdi: info_addr,
                rflags: 2,
                ..Default::default()
            };
        });
        let mut hello = None;
        for _ in 0..MAX_BOOT_EXITS {
            let exit = match vcpu.run(meter) {
                Ok(e) => e,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    Exit::Interrupted
                }
                Err(source) => {
                    return Err(BootFailure::Kvm {
                        what: "run",
                        source,
                    })
                }
            };
            if meter.is_some_and(Meter::expired) {
                return Err(BootFailure::Protocol(BootProtocol::Overran {
                    limit_ms: self.limits.restart.as_millis(),
                }));
            }
            match exit {
                Exit::Hypercall => {}
                Exit::Interrupted => continue,
                other => {
                    return Err(BootFailure::Fault(fault::decode(
                        vcpu,
                        other,
                        self.mem(),
                        &self.name,
                    )))
                }
            }
            match GuestRequest::decode(vcpu.regs()) {
                GuestRequest::Hello { addr } if hello.is_none() => {
                    hello = Some(self.read_hello(addr)?);
                    vcpu.set_regs(|r| r.rax = 0);
                }
                GuestRequest::Ready => {
                    return hello.ok_or(BootFailure::Protocol(BootProtocol::ReadyBeforeHello));
                }
                GuestRequest::Print { addr, len } => {
                    self.print(addr, len);
                    vcpu.set_regs(|r| r.rax = 0);
                }
                GuestRequest::Nop => vcpu.set_regs(|r| r.rax = 0),
                GuestRequest::Panic { addr, len } => {
                    return Err(BootFailure::Fault(self.panic_report(vcpu, addr, len)));
                }
                other => return Err(BootFailure::Protocol(BootProtocol::Unexpected(other))),
            }
        }
        Err(BootFailure::Protocol(BootProtocol::TooManyExits))
    }

    fn read_hello(&self, addr: u64) -> Result<HelloInfo, BootFailure> {
        decode_hello(self.mem(), &self.region, self.layout.image_end, addr)
    }
}

/// A guest's `Hello` at `addr`, with its entry table and sample ring,
/// decoded from a copy and checked against the domain's data `region` (the
/// dispatcher must lie in the image, below `image_end`). A pure function of
/// guest memory, so it is property-tested without a VM.
pub(crate) fn decode_hello(
    mem: &GuestMemoryMmap,
    region: &DataRegion,
    image_end: u64,
    addr: u64,
) -> Result<HelloInfo, BootFailure> {
    let bad = BootFailure::BadHello;
    let unreadable = |e: GuestMemError| {
        bad(HelloError::Unreadable(RangeError::Outside {
            addr: e.addr,
            len: e.len as u64,
        }))
    };
    let at = region
        .check(addr, size_of::<Hello>() as u64)
        .map_err(|e| bad(HelloError::Unreadable(e)))?;
    let hello = guest_io::read_hello(mem, at.addr()).map_err(unreadable)?;
    if hello.abi_version != ABI_VERSION {
        return Err(BootFailure::AbiVersion {
            guest: hello.abi_version,
            vmm: ABI_VERSION,
        });
    }
    if hello.entry_count > MAX_ENTRIES {
        return Err(bad(HelloError::TooManyEntries(hello.entry_count)));
    }
    let table_len = u64::from(hello.entry_count) * size_of::<EntryDecl>() as u64;
    let table = region
        .check(hello.entries, table_len)
        .map_err(|e| bad(HelloError::EntryTable(e)))?;
    let mut entries = Vec::with_capacity(hello.entry_count as usize);
    for i in 0..u64::from(hello.entry_count) {
        let e = guest_io::read_entry_decl(mem, table.addr(), i).map_err(unreadable)?;
        let name = e
            .name
            .as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or(bad(HelloError::EntryName(i)))?;
        entries.push(name.to_owned());
    }
    if !(IMAGE_BASE..image_end).contains(&hello.dispatcher) {
        return Err(bad(HelloError::DispatcherOutside(hello.dispatcher)));
    }
    let mut samples = SampleRing::default();
    if hello.samples != 0 {
        let ring = hello
            .sample_capacity
            .checked_mul(size_of::<Sample>() as u64);
        let ok = ring.is_some_and(|len| region.check(hello.samples, len).is_ok())
            && region.check(hello.sample_count, 8).is_ok();
        if !ok {
            return Err(bad(HelloError::SampleRing));
        }
        samples = SampleRing {
            addr: hello.samples,
            capacity: hello.sample_capacity,
            count_addr: hello.sample_count,
        };
    }
    Ok(HelloInfo {
        entries,
        dispatcher: hello.dispatcher,
        samples,
    })
}
