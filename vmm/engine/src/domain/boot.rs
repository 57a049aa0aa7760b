//! Bringing a domain's guest to life — at creation and again after a fault:
//! lay out memory, load the image, run `_start` until `Ready`, check `Hello`.

use super::{arch, loader, Domain, SampleRing};
use crate::fault::{self, FaultReport};
use crate::guest_io;
use crate::vcpu::{Exit, Vcpu};
use shared_abi::layout::{DomainLayout, IMAGE_BASE, MAX_VCPUS};
use shared_abi::{BootInfo, EntryName, Hello, Hypercall, Sample, ABI_VERSION};
use vm_memory::GuestMemoryMmap;

/// Most entries a guest may declare.
pub const MAX_ENTRIES: u32 = 256;
/// Least heap a domain must have after its image and stacks.
pub const MIN_HEAP: u64 = 64 * 1024;
/// Most hypercalls a guest may make while booting (a loop guard).
const MAX_BOOT_EXITS: u32 = 100_000;

/// Why a domain could not be started (or restarted).
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A KVM operation failed.
    #[error("domain `{domain}`: KVM {what} failed")]
    Kvm {
        /// The domain.
        domain: String,
        /// Which operation.
        what: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up.
    #[error("domain `{domain}`: {what}")]
    Memory {
        /// The domain.
        domain: String,
        /// What went wrong.
        what: String,
    },
    /// The image could not be loaded.
    #[error("domain `{domain}`: image {image}")]
    Image {
        /// The domain.
        domain: String,
        /// The image.
        image: String,
        /// Why.
        source: loader::LoadError,
    },
    /// The guest was built against another ABI.
    #[error("domain `{domain}`: guest speaks ABI version {guest}, this VMM speaks {vmm}")]
    AbiVersion {
        /// The domain.
        domain: String,
        /// The guest's version.
        guest: u32,
        /// Ours.
        vmm: u32,
    },
    /// The manifest exports an entry the image does not declare.
    #[error("domain `{domain}`: the manifest exports [{manifest}] but image `{image}` declares [{image_entries}]")]
    EntryMismatch {
        /// The domain.
        domain: String,
        /// The image.
        image: String,
        /// What the manifest exports.
        manifest: String,
        /// What the image declares.
        image_entries: String,
    },
    /// The guest's hello was malformed (or changed across a restart).
    #[error("domain `{domain}`: bad hello: {why}")]
    BadHello {
        /// The domain.
        domain: String,
        /// Why.
        why: String,
    },
    /// The guest faulted while booting.
    #[error("faulted while booting: {0}")]
    Fault(FaultReport),
    /// The guest did something else than booting.
    #[error("domain `{domain}`: {why} while booting")]
    Protocol {
        /// The domain.
        domain: String,
        /// What it did.
        why: String,
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
    loader::load(mem, memory_size, image).map_err(|source| BootError::Image {
        domain: domain.to_owned(),
        image: image_name.to_owned(),
        source,
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
        guest_io::write(mem, b.addr, &b.bytes).map_err(|e| BootError::Memory {
            domain: domain.to_owned(),
            what: e.to_string(),
        })?;
    }
    Ok(())
}

/// The layout of a domain whose image ends at `image_end`, if it fits.
pub(super) fn layout_for(
    image_end: u64,
    spec: &crate::manifest::DomainSpec,
) -> Result<DomainLayout, String> {
    let layout = DomainLayout {
        image_end,
        memory_size: spec.memory,
        stack_count: spec.stacks,
        stack_size: spec.stack_size,
    };
    match layout.heap_size() {
        Some(h) if h >= MIN_HEAP => Ok(layout),
        _ => Err(format!(
            "{} MiB of memory do not hold the image ({} KiB), {} stacks of {} KiB and a heap of at least {} KiB",
            spec.memory >> 20,
            image_end.saturating_sub(IMAGE_BASE) >> 10,
            spec.stacks,
            spec.stack_size >> 10,
            MIN_HEAP >> 10
        )),
    }
}

impl Domain {
    /// Run the guest's `_start` on `vcpu` until `Ready`; returns its hello.
    pub(super) fn run_boot(
        &self,
        vcpu: &mut Vcpu,
        entry: u64,
        generation: u64,
    ) -> Result<HelloInfo, BootError> {
        let name = self.name.clone();
        let proto = |why: String| BootError::Protocol {
            domain: name.clone(),
            why,
        };
        let stack = self
            .stacks
            .take()
            .ok_or_else(|| proto("no stack to boot on".into()))?;
        let result = self.boot_on_stack(vcpu, entry, generation, stack);
        self.stacks.give_back(stack);
        result
    }

    fn boot_on_stack(
        &self,
        vcpu: &mut Vcpu,
        entry: u64,
        generation: u64,
        stack: u32,
    ) -> Result<HelloInfo, BootError> {
        let proto = |why: String| BootError::Protocol {
            domain: self.name.clone(),
            why,
        };
        let top = self.layout.stack_top(stack);
        let info_addr = top - 64;
        let info = BootInfo {
            abi_version: ABI_VERSION,
            domain_id: self.id,
            heap_base: self.layout.heap_base(),
            heap_size: self.layout.heap_size().unwrap_or(0),
            stack_size: self.layout.stack_size,
            generation,
        };
        guest_io::write(self.mem(), info_addr, &guest_io::encode_boot_info(&info))
            .map_err(|e| proto(e.to_string()))?;
        vcpu.set_regs(|r| {
            *r = kvm_bindings::kvm_regs {
                rip: entry,
                rsp: info_addr - 8,
                rdi: info_addr,
                rflags: 2,
                ..Default::default()
            };
        });
        let mut hello = None;
        for _ in 0..MAX_BOOT_EXITS {
            let exit = vcpu.run().map_err(|source| BootError::Kvm {
                domain: self.name.clone(),
                what: "run",
                source,
            })?;
            match exit {
                Exit::Hypercall => {}
                Exit::Interrupted => continue,
                other => {
                    return Err(BootError::Fault(fault::decode(
                        vcpu,
                        other,
                        self.mem(),
                        &self.name,
                    )))
                }
            }
            let regs = *vcpu.regs();
            match Hypercall::try_from(regs.rax as u32) {
                Ok(Hypercall::Hello) if hello.is_none() => {
                    hello = Some(self.read_hello(regs.rdi)?);
                    vcpu.set_regs(|r| r.rax = 0);
                }
                Ok(Hypercall::Ready) => {
                    return hello.ok_or_else(|| proto("`Ready` before `Hello`".into()));
                }
                Ok(Hypercall::Print) => {
                    self.print(regs.rdi, regs.rsi);
                    vcpu.set_regs(|r| r.rax = 0);
                }
                Ok(Hypercall::Nop) => vcpu.set_regs(|r| r.rax = 0),
                Ok(Hypercall::Panic) => {
                    return Err(BootError::Fault(fault::panic_report(vcpu, self)));
                }
                Ok(h) => return Err(proto(format!("hypercall {h:?}"))),
                Err(e) => return Err(proto(format!("unknown hypercall {}", e.0))),
            }
        }
        Err(proto(format!(
            "no `Ready` after {MAX_BOOT_EXITS} hypercalls"
        )))
    }

    fn read_hello(&self, addr: u64) -> Result<HelloInfo, BootError> {
        let bad = |why: String| BootError::BadHello {
            domain: self.name.clone(),
            why,
        };
        self.region
            .check(addr, size_of::<Hello>() as u64)
            .map_err(|e| bad(e.to_string()))?;
        let hello = guest_io::read_hello(self.mem(), addr).map_err(|e| bad(e.to_string()))?;
        if hello.abi_version != ABI_VERSION {
            return Err(BootError::AbiVersion {
                domain: self.name.clone(),
                guest: hello.abi_version,
                vmm: ABI_VERSION,
            });
        }
        if hello.entry_count > MAX_ENTRIES {
            return Err(bad(format!(
                "{} entries (at most {MAX_ENTRIES})",
                hello.entry_count
            )));
        }
        let table_len = u64::from(hello.entry_count) * size_of::<EntryName>() as u64;
        self.region
            .check(hello.entries, table_len)
            .map_err(|e| bad(format!("entry table: {e}")))?;
        let mut entries = Vec::with_capacity(hello.entry_count as usize);
        for i in 0..u64::from(hello.entry_count) {
            let e = guest_io::read_entry_name(self.mem(), hello.entries, i)
                .map_err(|e| bad(e.to_string()))?;
            let name = e
                .as_bytes()
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| bad(format!("entry {i} has no valid name")))?;
            entries.push(name.to_owned());
        }
        if !(IMAGE_BASE..self.layout.image_end).contains(&hello.dispatcher) {
            return Err(bad(format!(
                "dispatcher {:#x} is outside the image",
                hello.dispatcher
            )));
        }
        let mut samples = SampleRing::default();
        if hello.samples != 0 {
            let ring = hello
                .sample_capacity
                .checked_mul(size_of::<Sample>() as u64);
            let ok = ring.is_some_and(|len| self.region.check(hello.samples, len).is_ok())
                && self.region.check(hello.sample_count, 8).is_ok();
            if !ok {
                return Err(bad("sample ring is outside the data region".into()));
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
}
