//! Bringing a domain's guest to life — at creation and again after a fault:
//! lay out memory, load the image, run `_start` until `Ready`, check `Hello`.

use super::{loader, Domain, SampleRing};
use crate::arch;
use crate::fault::{self, FaultReport};
use crate::guest_io::{self, GuestMemError};
use crate::hypercall::GuestRequest;
use crate::ids::StackIndex;
use crate::region::{DataRegion, GuestRange, RangeError};
use crate::vcpu::{Exit, Vcpu};
use crate::watch::Meter;
use shared_abi::layout::{DomainLayout, WindowLayout, IMAGE_BASE};
use shared_abi::{BootInfo, CapDecl, EntryDecl, Hello, Name, Sample, ABI_VERSION, RAW_METHOD};
use vm_memory::GuestMemoryMmap;
use zerocopy::IntoBytes;

/// Most entries a guest may declare.
pub const MAX_ENTRIES: u32 = 256;
/// Most interface methods a guest may declare it calls (`Hello::imports`).
pub const MAX_IMPORTS: u32 = 1024;
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
    #[error("entry {0} has no valid name, interface or method id")]
    EntryName(u64),
    #[error("entry `{0}` is declared twice")]
    DuplicateEntry(String),
    #[error("{0} imports (at most {MAX_IMPORTS})")]
    TooManyImports(u32),
    #[error("the import table is not readable")]
    ImportTable(#[source] RangeError),
    #[error("import {0} has no valid entry name, interface or method id")]
    ImportName(u64),
    #[error(
        "the capability buffer holds {capacity} entries, the domain has {needed} capabilities"
    )]
    CapsTooSmall {
        /// `Hello::cap_capacity`.
        capacity: u32,
        /// `BootInfo::cap_count`.
        needed: u32,
    },
    #[error("the capability buffer is outside the data region")]
    CapsBuffer(#[source] RangeError),
    #[error("the capability table could not be written")]
    CapsUnwritable,
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

/// One entry (or import) of a guest's tables, decoded and checked: what
/// the manifest matches (`name`) and what the boot's compatibility check
/// compares (`interface`, `method_id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry's name.
    pub name: String,
    /// Its interface (empty for a raw entry).
    pub interface: String,
    /// Its method id (`RAW_METHOD` for a raw entry).
    pub method_id: u64,
}

impl EntryInfo {
    /// A raw entry called `name` (tests).
    pub fn raw(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            interface: String::new(),
            method_id: RAW_METHOD,
        }
    }

    /// Whether it belongs to no interface.
    pub fn is_raw(&self) -> bool {
        self.interface.is_empty()
    }
}

/// What a guest said in its hello, checked against its memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloInfo {
    /// The entry table, by index.
    pub entries: Vec<EntryInfo>,
    /// The interface methods the image calls.
    pub imports: Vec<EntryInfo>,
    /// The dispatcher's address.
    pub dispatcher: u64,
    /// The sample ring.
    pub samples: SampleRing,
    /// Where the capability table goes (exactly `BootInfo::cap_count`
    /// [`CapDecl`]s, checked to lie in the data region), if the guest
    /// wants it.
    pub caps: Option<GuestRange>,
}

impl HelloInfo {
    /// Whether a restarted guest introduced itself as it did at its first
    /// boot: the same entry table, imports, dispatcher and sample ring (the
    /// capability buffer may move: it is rewritten at every boot).
    pub fn same_introduction(&self, first: &Self) -> bool {
        self.entries == first.entries
            && self.imports == first.imports
            && self.dispatcher == first.dispatcher
            && self.samples == first.samples
    }
}

/// A boot stopped at the guest's `Hello`, not yet answered: the system
/// boots every domain this far, checks that clients and servers agree on
/// their interfaces, and only then writes each domain's capability table
/// and lets it run its init ([`Domain::finish_boot`]).
#[derive(Debug)]
pub(crate) struct PendingBoot {
    vcpu: Vcpu,
    stack: u32,
    /// What the guest said.
    pub(crate) hello: HelloInfo,
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

/// Write the VMM's own shared pages: page tables, GDT, IDT, exception
/// stubs. Each vCPU slot's TSS is written when its vCPU is created
/// ([`write_tss`]), not here: 32 of them would be most of an idle small
/// domain's resident memory.
pub(super) fn write_system_pages(
    mem: &GuestMemoryMmap,
    layout: &DomainLayout,
    window: Option<&WindowLayout>,
    domain: &str,
) -> Result<(), BootError> {
    let blobs = [
        arch::page_tables(layout),
        arch::lease::pd_entries(),
        arch::gdt(),
        arch::idt(),
        arch::stubs(),
    ];
    // The window's page-directory entries go into the PD written above.
    let window = window.map(arch::window_page_tables);
    for b in blobs.iter().chain(window.iter().flatten()) {
        guest_io::write(mem, b.addr, &b.bytes)
            .map_err(|e| BootError::new(domain, BootFailure::SystemPages(e)))?;
    }
    Ok(())
}

/// Where vCPU slot `slot`'s TSS and I/O bitmap lie and what the VMM
/// writes there when the slot's vCPU is created (before that, the pages
/// are zero and untouched): what an oracle of the system pages expects.
pub fn tss_image(slot: u32) -> (u64, Vec<u8>) {
    let b = arch::tss(slot);
    (b.addr, b.bytes)
}

/// Write vCPU slot `slot`'s TSS and I/O bitmap (three pages), before its
/// vCPU is first created and again after a reset zeroed memory.
pub(super) fn write_tss(mem: &GuestMemoryMmap, slot: u32) -> Result<(), GuestMemError> {
    let b = arch::tss(slot);
    guest_io::write(mem, b.addr, &b.bytes)
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
        // Room for a growing pool's maximum: the heap never moves.
        stack_count: spec.stack_max.max(spec.stacks),
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
            stacks: layout.stack_count,
            stack_size: spec.stack_size,
        }),
    }
}

/// Where a boot run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Until {
    /// At the guest's `Hello`, decoded and not yet answered.
    Hello,
    /// At `Ready`.
    Ready,
}

/// What stopped a boot run.
enum Stop {
    Hello(HelloInfo),
    Ready,
}

impl Domain {
    /// Run `f` (a piece of the first boot) under `meter`'s budget: the
    /// domain's `restart_ms` of CPU time, after which the guest is kicked
    /// and the boot fails.
    pub(super) fn under_boot_meter<R>(&self, meter: Option<&Meter>, f: impl FnOnce() -> R) -> R {
        if let Some(m) = meter {
            let _ = m.take_expiry();
            m.push(
                0,
                m.fresh_id(),
                crate::watch::meter::budget_word(Some(self.limits.restart)),
                self.id.raw(),
            );
        }
        let r = f();
        if let Some(m) = meter {
            m.pop_to(0);
            let _ = m.take_expiry();
        }
        r
    }

    /// Start the guest's `_start` on `vcpu` and run it to its `Hello`,
    /// decoded but not answered: the first boot's first half.
    pub(super) fn boot_to_hello(
        &self,
        mut vcpu: Vcpu,
        entry: u64,
        meter: Option<&Meter>,
    ) -> Result<PendingBoot, BootError> {
        let stack = self.stacks.take().ok_or_else(|| {
            BootError::new(&self.name, BootFailure::Protocol(BootProtocol::NoBootStack))
        })?;
        let hello = self
            .start(&mut vcpu, entry, 0, StackIndex::new(stack))
            .and_then(|()| self.run_to_hello(&mut vcpu, meter));
        match hello {
            Ok(hello) => Ok(PendingBoot { vcpu, stack, hello }),
            Err(failure) => {
                self.stacks.give_back(stack);
                Err(BootError::new(&self.name, failure))
            }
        }
    }

    /// The first boot's second half: write `caps` into the guest's buffer,
    /// answer its `Hello` and run it to `Ready`. The boot stack goes back
    /// to the pool whatever happens; the vCPU too if it succeeds.
    pub(super) fn answer_hello(
        &self,
        pending: PendingBoot,
        caps: &[CapDecl],
        meter: Option<&Meter>,
    ) -> Result<(), BootError> {
        let PendingBoot {
            mut vcpu,
            stack,
            hello,
        } = pending;
        let result = self.answer_and_run(&mut vcpu, &hello, caps, meter);
        self.stacks.give_back(stack);
        result.map_err(|failure| BootError::new(&self.name, failure))?;
        self.give_vcpu(vcpu);
        Ok(())
    }

    /// A whole boot (a restart): run the guest's `_start` on `vcpu` until
    /// `Ready`, answering its `Hello` with `caps`; returns its hello. With
    /// a `meter` (on the restarter), the boot is kicked when the meter's
    /// budget (the domain's `restart_ms`) runs out, and then fails.
    pub(super) fn run_boot(
        &self,
        vcpu: &mut Vcpu,
        entry: u64,
        generation: u64,
        meter: Option<&Meter>,
        caps: &[CapDecl],
    ) -> Result<HelloInfo, BootError> {
        let stack = self.stacks.take().ok_or_else(|| {
            BootError::new(&self.name, BootFailure::Protocol(BootProtocol::NoBootStack))
        })?;
        let result = self
            .start(vcpu, entry, generation, StackIndex::new(stack))
            .and_then(|()| self.run_to_hello(vcpu, meter))
            .and_then(|hello| {
                self.answer_and_run(vcpu, &hello, caps, meter)?;
                Ok(hello)
            });
        self.stacks.give_back(stack);
        result.map_err(|failure| BootError::new(&self.name, failure))
    }

    /// Write the boot information on `stack` and point `vcpu` at `_start`.
    fn start(
        &self,
        vcpu: &mut Vcpu,
        entry: u64,
        generation: u64,
        stack: StackIndex,
    ) -> Result<(), BootFailure> {
        let info_addr = self.stack_top(stack) - BOOT_INFO_FOOTPRINT;
        let info = BootInfo {
            abi_version: ABI_VERSION,
            domain_id: self.id.raw(),
            heap_base: self.layout.heap_base(),
            heap_size: self.layout.heap_size().unwrap_or(0),
            stack_size: self.layout.stack_size,
            generation,
            cap_count: self.cap_count,
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
        Ok(())
    }

    fn run_to_hello(
        &self,
        vcpu: &mut Vcpu,
        meter: Option<&Meter>,
    ) -> Result<HelloInfo, BootFailure> {
        match self.run_until(vcpu, meter, Until::Hello)? {
            Stop::Hello(hello) => Ok(hello),
            Stop::Ready => Err(BootFailure::Protocol(BootProtocol::ReadyBeforeHello)),
        }
    }

    /// Write the capability table where `hello` asked, answer the `Hello`
    /// (status 0) and run to `Ready`.
    fn answer_and_run(
        &self,
        vcpu: &mut Vcpu,
        hello: &HelloInfo,
        caps: &[CapDecl],
        meter: Option<&Meter>,
    ) -> Result<(), BootFailure> {
        if let Some(range) = hello.caps {
            write_cap_table(self.mem(), range, caps)?;
        }
        vcpu.set_regs(|r| r.rax = 0);
        match self.run_until(vcpu, meter, Until::Ready)? {
            Stop::Ready => Ok(()),
            // `run_until` stops at a `Hello` only when asked to.
            Stop::Hello(_) => Err(BootFailure::Protocol(BootProtocol::TooManyExits)),
        }
    }

    /// Run the booting guest until `until` (handling `Print`, `Nop` and
    /// `Panic` on the way); any other hypercall fails the boot.
    fn run_until(
        &self,
        vcpu: &mut Vcpu,
        meter: Option<&Meter>,
        until: Until,
    ) -> Result<Stop, BootFailure> {
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
                GuestRequest::Hello { addr } if until == Until::Hello => {
                    return self.read_hello(addr).map(Stop::Hello);
                }
                GuestRequest::Ready => {
                    return Ok(Stop::Ready);
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
        decode_hello(
            self.mem(),
            &self.region,
            self.layout.image_end,
            addr,
            self.cap_count,
        )
    }
}

/// Write `caps` (the domain's capability table, slot order) into the
/// buffer a hello named: exactly the checked range, which holds
/// `BootInfo::cap_count` records, and nothing else.
pub(crate) fn write_cap_table(
    mem: &GuestMemoryMmap,
    range: GuestRange,
    caps: &[CapDecl],
) -> Result<(), BootFailure> {
    let bytes = caps.as_bytes();
    let unwritable = || BootFailure::BadHello(HelloError::CapsUnwritable);
    if bytes.len() as u64 != range.len() {
        return Err(unwritable());
    }
    range.write(mem, bytes).map_err(|_| unwritable())
}

/// A name from a guest's table, if it is one: `len ≤ 32`, UTF-8, reserved
/// word 0 (kept for a later version to use).
fn decode_name(n: &Name) -> Option<&str> {
    if n.reserved != 0 {
        return None;
    }
    n.as_str()
}

/// An entry (or import) record, if it is one: a non-empty name, an
/// interface name, and a method id that is [`RAW_METHOD`] exactly when
/// the interface is empty.
fn decode_entry(e: &EntryDecl) -> Option<EntryInfo> {
    let name = decode_name(&e.name).filter(|n| !n.is_empty())?;
    let interface = decode_name(&e.interface)?;
    if interface.is_empty() != (e.method_id == RAW_METHOD) {
        return None;
    }
    Some(EntryInfo {
        name: name.to_owned(),
        interface: interface.to_owned(),
        method_id: e.method_id,
    })
}

/// Read `count` (already bounded) [`EntryDecl`]s of the table at `table`,
/// checked to lie in `region`.
fn read_table(
    mem: &GuestMemoryMmap,
    region: &DataRegion,
    table: u64,
    count: u32,
) -> Result<Vec<Option<EntryInfo>>, Result<RangeError, GuestMemError>> {
    let len = u64::from(count) * size_of::<EntryDecl>() as u64;
    let at = region.check(table, len).map_err(Ok)?;
    (0..u64::from(count))
        .map(|i| {
            guest_io::read_entry_decl(mem, at.addr(), i)
                .map(|e| decode_entry(&e))
                .map_err(Err)
        })
        .collect()
}

/// A guest's `Hello` at `addr`, with its entry table, imports, sample
/// ring and capability buffer (for `cap_count` records), decoded from
/// copies and checked against the domain's data `region` (the dispatcher
/// must lie in the image, below `image_end`). A pure function of guest
/// memory, so it is property-tested without a VM.
pub(crate) fn decode_hello(
    mem: &GuestMemoryMmap,
    region: &DataRegion,
    image_end: u64,
    addr: u64,
    cap_count: u32,
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
    let table = read_table(mem, region, hello.entries, hello.entry_count).map_err(|e| match e {
        Ok(range) => bad(HelloError::EntryTable(range)),
        Err(mem) => unreadable(mem),
    })?;
    let mut entries = Vec::with_capacity(table.len());
    let mut seen = std::collections::HashSet::new();
    for (i, e) in (0u64..).zip(table) {
        let e = e.ok_or(bad(HelloError::EntryName(i)))?;
        if !seen.insert(e.name.clone()) {
            return Err(bad(HelloError::DuplicateEntry(e.name)));
        }
        entries.push(e);
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
    let mut imports = Vec::new();
    if hello.import_count > 0 {
        if hello.import_count > MAX_IMPORTS {
            return Err(bad(HelloError::TooManyImports(hello.import_count)));
        }
        let table =
            read_table(mem, region, hello.imports, hello.import_count).map_err(|e| match e {
                Ok(range) => bad(HelloError::ImportTable(range)),
                Err(mem) => unreadable(mem),
            })?;
        for (i, e) in (0u64..).zip(table) {
            match e {
                Some(e) if !e.is_raw() => imports.push(e),
                _ => return Err(bad(HelloError::ImportName(i))),
            }
        }
    }
    // Nothing to write (no capabilities, or the guest does not want
    // them): the address is not looked at.
    let caps = if hello.caps == 0 || cap_count == 0 {
        None
    } else {
        if hello.cap_capacity < cap_count {
            return Err(bad(HelloError::CapsTooSmall {
                capacity: hello.cap_capacity,
                needed: cap_count,
            }));
        }
        let len = u64::from(cap_count) * size_of::<CapDecl>() as u64;
        let range = region
            .check(hello.caps, len)
            .map_err(|e| bad(HelloError::CapsBuffer(e)))?;
        Some(range)
    };
    Ok(HelloInfo {
        entries,
        imports,
        dispatcher: hello.dispatcher,
        samples,
        caps,
    })
}
