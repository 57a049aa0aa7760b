//! A domain: one KVM VM running one guest image at CPL3, with its memory,
//! its stack pool, its vCPUs and the entry table it declared at hello.

pub mod arch;
pub mod loader;
pub mod region;
pub mod stack_pool;

use crate::fault::{self, FaultReport};
use crate::guest_io::{self, GuestMemError};
use crate::manifest::DomainSpec;
use crate::vcpu::{Exit, Vcpu};
use kvm_bindings::{kvm_userspace_memory_region, CpuId};
use kvm_ioctls::{Kvm, VmFd};
use region::DataRegion;
use shared_abi::layout::{DomainLayout, PAGE_SIZE};
use shared_abi::{BootInfo, Hypercall, Sample, ABI_VERSION};
use stack_pool::StackPool;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Most entries a guest may declare.
pub const MAX_ENTRIES: u32 = 256;
/// Least heap a domain must have after its image and stacks.
pub const MIN_HEAP: u64 = 64 * 1024;
/// Most hypercalls a guest may make while booting (a loop guard).
const MAX_BOOT_EXITS: u32 = 100_000;

/// Why a domain could not be started.
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
    /// The guest's hello was malformed.
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

/// Where a guest keeps its latency samples (from its hello; untrusted).
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleRing {
    /// Address of `[Sample; capacity]`.
    pub addr: u64,
    /// Capacity.
    pub capacity: u64,
    /// Address of the `u64` count.
    pub count_addr: u64,
}

/// One running domain.
#[derive(Debug)]
pub struct Domain {
    /// Its id: index in the manifest.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Where its pieces lie.
    pub layout: DomainLayout,
    /// What descriptors and hypercall pointers may name.
    pub region: DataRegion,
    /// Entry names by index, as the image declared them.
    pub entries: Vec<String>,
    /// The runtime's dispatcher (every invocation starts there).
    pub dispatcher: u64,
    /// Free stacks.
    pub stacks: StackPool,
    /// Where its latency samples are.
    pub samples: SampleRing,
    /// Guest TSC frequency in kHz (0 if KVM does not say).
    pub tsc_khz: u32,
    vm: VmFd,
    mem: GuestMemoryMmap,
    cpuid: CpuId,
    vcpus: Mutex<Vec<Vcpu>>,
    next_slot: AtomicU32,
    dead: AtomicBool,
    fault: Mutex<Option<FaultReport>>,
}

impl Domain {
    /// Create the VM, load the image, boot the guest to `Ready` and check its
    /// hello against `spec`.
    pub fn boot(
        kvm: &Kvm,
        cpuid: &CpuId,
        id: u32,
        spec: &DomainSpec,
        image_name: &str,
        image: &[u8],
    ) -> Result<Self, BootError> {
        let name = spec.name.clone();
        let kvm_err = |what: &'static str| {
            let domain = name.clone();
            move |source| BootError::Kvm {
                domain,
                what,
                source,
            }
        };
        let mem_err = |what: String| BootError::Memory {
            domain: name.clone(),
            what,
        };
        let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
        let size =
            usize::try_from(spec.memory).map_err(|_| mem_err("memory size does not fit".into()))?;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)])
            .map_err(|e| mem_err(format!("cannot map guest memory: {e}")))?;
        let host = mem
            .iter()
            .next()
            .ok_or_else(|| mem_err("no memory region".into()))?;
        let host_addr = host.as_ptr() as u64;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: spec.memory,
            userspace_addr: host_addr,
        };
        // SAFETY: `host_addr` is the start of a live mmap of exactly
        // `spec.memory` bytes owned by `mem`, which this Domain keeps for as
        // long as the VM (`vm`) exists (both are fields, `vm` dropped first).
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("set memory region"))?;
        let loaded = loader::load(&mem, spec.memory, image).map_err(|source| BootError::Image {
            domain: name.clone(),
            image: image_name.to_owned(),
            source,
        })?;
        let layout = DomainLayout {
            image_end: loaded.end,
            memory_size: spec.memory,
            stack_count: spec.stacks,
            stack_size: spec.stack_size,
        };
        let heap = layout.heap_size().filter(|h| *h >= MIN_HEAP).ok_or_else(|| {
            mem_err(format!(
                "{} MiB of memory do not hold the image ({} KiB), {} stacks of {} KiB and a heap of at least {} KiB",
                spec.memory >> 20,
                (loaded.end - shared_abi::layout::IMAGE_BASE) >> 10,
                spec.stacks,
                spec.stack_size >> 10,
                MIN_HEAP >> 10
            ))
        })?;
        let mut blobs = vec![
            arch::page_tables(&layout),
            arch::gdt(),
            arch::idt(),
            arch::stubs(),
        ];
        blobs.extend((0..shared_abi::layout::MAX_VCPUS).map(arch::tss));
        for b in &blobs {
            guest_io::write(&mem, b.addr, &b.bytes).map_err(|e| mem_err(e.to_string()))?;
        }
        let mut d = Domain {
            id,
            name: name.clone(),
            layout,
            region: DataRegion::of(&layout),
            entries: Vec::new(),
            dispatcher: 0,
            stacks: StackPool::new(spec.stacks),
            samples: SampleRing::default(),
            tsc_khz: 0,
            vm,
            mem,
            cpuid: cpuid.clone(),
            vcpus: Mutex::new(Vec::new()),
            next_slot: AtomicU32::new(0),
            dead: AtomicBool::new(false),
            fault: Mutex::new(None),
        };
        let mut vcpu = d.new_vcpu().map_err(kvm_err("create vCPU"))?;
        d.tsc_khz = vcpu.tsc_khz().unwrap_or(0);
        d.run_boot(&mut vcpu, loaded.entry, heap, spec, image_name)?;
        d.give_vcpu(vcpu);
        Ok(d)
    }

    fn run_boot(
        &mut self,
        vcpu: &mut Vcpu,
        entry: u64,
        heap: u64,
        spec: &DomainSpec,
        image_name: &str,
    ) -> Result<(), BootError> {
        let name = self.name.clone();
        let proto = |why: String| BootError::Protocol {
            domain: name.clone(),
            why,
        };
        let stack = self
            .stacks
            .take()
            .ok_or_else(|| proto("no stack to boot on".into()))?;
        let top = self.layout.stack_top(stack);
        let info_addr = top - 64;
        let info = BootInfo {
            abi_version: ABI_VERSION,
            domain_id: self.id,
            heap_base: self.layout.heap_base(),
            heap_size: heap,
            stack_size: self.layout.stack_size,
            generation: 0,
        };
        guest_io::write(&self.mem, info_addr, &guest_io::encode_boot_info(&info))
            .map_err(|e| proto(e.to_string()))?;
        vcpu.set_regs(|r| {
            r.rip = entry;
            r.rsp = info_addr - 8;
            r.rdi = info_addr;
            r.rflags = 2;
        });
        let mut hello_done = false;
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
                        vcpu, other, &self.mem, &self.name,
                    )))
                }
            }
            let regs = *vcpu.regs();
            match Hypercall::try_from(regs.rax as u32) {
                Ok(Hypercall::Hello) if !hello_done => {
                    self.accept_hello(regs.rdi, spec, image_name)?;
                    hello_done = true;
                    vcpu.set_regs(|r| r.rax = 0);
                }
                Ok(Hypercall::Ready) if hello_done => {
                    self.stacks.give_back(stack);
                    return Ok(());
                }
                Ok(Hypercall::Print) => {
                    self.print(regs.rdi, regs.rsi);
                    vcpu.set_regs(|r| r.rax = 0);
                }
                Ok(Hypercall::Nop) => vcpu.set_regs(|r| r.rax = 0),
                Ok(Hypercall::Panic) => {
                    return Err(BootError::Fault(fault::panic_report(
                        vcpu,
                        &self.mem,
                        &self.region,
                        &self.name,
                    )));
                }
                Ok(h) => return Err(proto(format!("hypercall {h:?}"))),
                Err(e) => return Err(proto(format!("unknown hypercall {}", e.0))),
            }
        }
        Err(proto(format!(
            "no `Ready` after {MAX_BOOT_EXITS} hypercalls"
        )))
    }

    fn accept_hello(
        &mut self,
        addr: u64,
        spec: &DomainSpec,
        image_name: &str,
    ) -> Result<(), BootError> {
        let bad = |why: String| BootError::BadHello {
            domain: self.name.clone(),
            why,
        };
        let size = size_of::<shared_abi::Hello>() as u64;
        self.region
            .check(addr, size)
            .map_err(|e| bad(e.to_string()))?;
        let hello = guest_io::read_hello(&self.mem, addr).map_err(|e| bad(e.to_string()))?;
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
        let table_len = u64::from(hello.entry_count) * size_of::<shared_abi::EntryName>() as u64;
        self.region
            .check(hello.entries, table_len)
            .map_err(|e| bad(format!("entry table: {e}")))?;
        let mut entries = Vec::with_capacity(hello.entry_count as usize);
        for i in 0..u64::from(hello.entry_count) {
            let e = guest_io::read_entry_name(&self.mem, hello.entries, i)
                .map_err(|e| bad(e.to_string()))?;
            let name = e
                .as_bytes()
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| bad(format!("entry {i} has no valid name")))?;
            entries.push(name.to_owned());
        }
        let image = (shared_abi::layout::IMAGE_BASE, self.layout.image_end);
        if !(image.0..image.1).contains(&hello.dispatcher) {
            return Err(bad(format!(
                "dispatcher {:#x} is outside the image",
                hello.dispatcher
            )));
        }
        let missing = spec.exports.iter().any(|x| !entries.contains(x));
        if missing {
            return Err(BootError::EntryMismatch {
                domain: self.name.clone(),
                image: image_name.to_owned(),
                manifest: spec.exports.join(", "),
                image_entries: entries.join(", "),
            });
        }
        if hello.samples != 0 {
            let ring = hello
                .sample_capacity
                .checked_mul(size_of::<Sample>() as u64);
            let ok = ring.is_some_and(|len| self.region.check(hello.samples, len).is_ok())
                && self.region.check(hello.sample_count, 8).is_ok();
            if !ok {
                return Err(bad("sample ring is outside the data region".into()));
            }
            self.samples = SampleRing {
                addr: hello.samples,
                capacity: hello.sample_capacity,
                count_addr: hello.sample_count,
            };
        }
        self.entries = entries;
        self.dispatcher = hello.dispatcher;
        Ok(())
    }

    /// Log a guest's `Print` (bounded, checked against the data region).
    pub fn print(&self, addr: u64, len: u64) {
        let len = len.min(4096);
        let text = match self.region.check(addr, len) {
            Ok(()) => {
                let mut buf = vec![0u8; len as usize];
                match guest_io::read(&self.mem, addr, &mut buf) {
                    Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
                    Err(e) => format!("(unreadable: {e})"),
                }
            }
            Err(e) => format!("(print refused: {e})"),
        };
        log::info!(target: "guest", "[{}] {}", self.name, text.trim_end());
    }

    fn new_vcpu(&self) -> Result<Vcpu, kvm_ioctls::Error> {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        // One boot vCPU plus at most one per stack: every running invocation holds a stack.
        if slot > self.stacks.capacity() || slot >= shared_abi::layout::MAX_VCPUS {
            self.next_slot.fetch_sub(1, Ordering::Relaxed);
            return Err(kvm_ioctls::Error::new(libc::ENOSPC));
        }
        Vcpu::create(&self.vm, slot, &self.cpuid)
    }

    /// A vCPU to run an invocation on: an idle one, or a new one.
    pub fn take_vcpu(&self) -> Result<Vcpu, kvm_ioctls::Error> {
        let idle = self.vcpus.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut v = match idle {
            Some(v) => v,
            None => self.new_vcpu()?,
        };
        v.ensure_clean()?;
        Ok(v)
    }

    /// Give a vCPU back once its invocation is over.
    pub fn give_vcpu(&self, v: Vcpu) {
        if let Ok(mut idle) = self.vcpus.lock() {
            idle.push(v);
        }
    }

    /// The domain's memory.
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Bytes of a callee stack that objects and the invocation frame may use.
    pub fn arg_budget(&self) -> u64 {
        self.layout.stack_size / 2
    }

    /// Whether the domain has faulted and is stopped.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Stop the domain after `report` (the first fault is the one kept).
    pub fn kill(&self, report: &FaultReport) {
        if let Ok(mut f) = self.fault.lock() {
            if f.is_none() {
                log::error!("{report}");
                *f = Some(report.clone());
            }
        }
        self.dead.store(true, Ordering::Release);
    }

    /// The fault that stopped the domain, if any.
    pub fn fault(&self) -> Option<FaultReport> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }

    /// The latency samples the guest recorded (the newest `capacity` ones).
    pub fn read_samples(&self) -> Vec<Sample> {
        let s = self.samples;
        if s.addr == 0 || s.capacity == 0 {
            return Vec::new();
        }
        let count = guest_io::read_u64(&self.mem, s.count_addr).unwrap_or(0);
        let n = count.min(s.capacity);
        (count - n..count)
            .filter_map(|i| guest_io::read_sample(&self.mem, s.addr, i % s.capacity).ok())
            .collect()
    }

    /// Read a guest range the VMM already validated (used by observers).
    pub fn read_bytes(&self, addr: u64, len: u64) -> Result<Vec<u8>, GuestMemError> {
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        guest_io::read(&self.mem, addr, &mut buf)?;
        Ok(buf)
    }

    /// Bytes per guard page (for tests and reports).
    pub const GUARD: u64 = PAGE_SIZE;
}
