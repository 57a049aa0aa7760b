//! A domain: one KVM VM running one guest image at CPL3, with its memory,
//! its stack pool, its vCPUs, the entry table it declared at hello, and its
//! health (running, quarantined after a fault, being reset, dead). It knows
//! nothing of threads or of how calls reach it.

pub(crate) mod boot;
mod footprint;
pub mod free_list;
pub mod lease;
pub mod loader;
pub mod restarter;
pub mod stack_pool;
pub mod vcpu_pool;

pub mod compat;

pub(crate) use boot::PendingBoot;
pub use boot::{
    tss_image, BootError, BootFailure, BootProtocol, EntryInfo, HelloError, HelloInfo, MAX_ENTRIES,
    MAX_IMPORTS, MIN_HEAP,
};

use crate::fault::{self, FaultReport};
use crate::guest_io;
use crate::guest_text::{self, PrintLimiter, PrintVerdict, RefusalLog};
use crate::host_limits::{self, BootResource};
use crate::ids::{DomainId, EntryIndex, StackIndex};
use crate::manifest::{DomainSpec, GrowFallback, Ipc, Limits, StackMode, StackPolicy};
use crate::region::DataRegion;
use crate::vcpu::Vcpu;
use crate::watch::Meter;
use crate::window::WindowSlot;
use footprint::{BootFootprint, Cleared};
use kvm_bindings::{kvm_userspace_memory_region, CpuId};
use kvm_ioctls::{Kvm, VmFd};
use shared_abi::layout::{DomainLayout, WindowLayout};
use shared_abi::{CapDecl, ErrorCode, Sample};
use stack_pool::StackPool;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use vcpu_pool::VcpuPool;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Where a guest keeps its latency samples (from its hello; untrusted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleRing {
    /// Address of `[Sample; capacity]`.
    pub addr: u64,
    /// Capacity.
    pub capacity: u64,
    /// Address of the `u64` count.
    pub count_addr: u64,
}

/// A domain's state, as new calls see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Serving calls.
    Running = 0,
    /// Faulted: new calls get `Restarting`; frames still in it unwind with
    /// `Fault`; the last one out resets it.
    Quarantined = 1,
    /// Being reset in place, on the system's restarter thread: new calls
    /// wait for it (up to their wait limit).
    Resetting = 2,
    /// Its reset failed: new calls get `DomainDead` for good.
    Dead = 3,
}

impl Health {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Running,
            1 => Self::Quarantined,
            2 => Self::Resetting,
            _ => Self::Dead,
        }
    }

    /// What a new call into a domain in this state gets, if it is refused.
    pub fn refusal(self) -> Option<ErrorCode> {
        match self {
            Self::Running => None,
            Self::Quarantined | Self::Resetting => Some(ErrorCode::Restarting),
            Self::Dead => Some(ErrorCode::DomainDead),
        }
    }
}

/// How long a blocked caller sleeps before looking at the pool again (a
/// give-back also wakes it at once; this only bounds a missed wake-up).
const STACK_WAIT_SLICE: Duration = Duration::from_millis(5);

/// The most vCPUs a domain of `spec` will create: one per frame that can
/// be inside it at once (each stack, up to a growing pool's maximum), plus
/// one for its boot and resets.
pub fn vcpu_capacity(spec: &crate::manifest::DomainSpec) -> u32 {
    (spec.stack_max.max(spec.stacks) + 1).min(shared_abi::layout::MAX_VCPUS)
}

/// One running domain.
#[derive(Debug)]
pub struct Domain {
    /// Its id: index in the manifest.
    pub id: DomainId,
    /// Its name.
    pub name: String,
    /// Where its pieces lie.
    pub layout: DomainLayout,
    /// What descriptors and hypercall pointers may name.
    pub region: DataRegion,
    /// The entry table by index, as the image declared it.
    pub entries: Vec<EntryInfo>,
    /// The interface methods the image declared it calls.
    pub imports: Vec<EntryInfo>,
    /// Capabilities the manifest grants it (`BootInfo::cap_count`).
    pub cap_count: u32,
    /// Its capability table as written into the guest at every boot.
    cap_table: Vec<CapDecl>,
    /// The runtime's dispatcher (every invocation starts there).
    pub dispatcher: u64,
    /// Its stacks: reached only through [`Domain::take_stack`]'s policy.
    stacks: StackPool,
    /// What a call does when no stack is free.
    pub stack_policy: StackPolicy,
    /// What a growing pool does at its maximum.
    pub grow_fallback: GrowFallback,
    /// Growths refused because no vCPU could run the new stack.
    grow_refusals: AtomicU64,
    /// Where its latency samples are.
    pub samples: SampleRing,
    /// Guest TSC frequency in kHz (0 if KVM does not say).
    pub tsc_khz: u32,
    /// Most spawned threads not yet reclaimed (running, or ended and not
    /// yet joined) at once.
    pub max_spawned: u32,
    /// How calls into it are carried out (the manifest's choice; the IPC
    /// layer acts on it).
    pub ipc: Ipc,
    /// Its CPU budget, wait and restart limits (the manifest's).
    pub limits: Limits,
    /// Where calls into it run (the manifest's `stack`).
    pub stack_mode: StackMode,
    /// The stack window its page tables map (`mapped` domains only).
    pub window: Option<WindowLayout>,
    /// Window slots mapped into it right now (memory slots beyond its own).
    window_maps: AtomicU32,
    /// Where its resets go to run off the caller's path (set by the system;
    /// without it, the last frame out resets the domain itself).
    restarter: OnceLock<restarter::Jobs>,
    /// Shared with every domain of the same image (kept for restarts).
    image: Arc<[u8]>,
    image_name: String,
    entry_point: u64,
    health: AtomicU8,
    generation: AtomicU64,
    /// Frames (of any thread) currently in this domain.
    active: AtomicU32,
    spawned: AtomicU32,
    waiting: AtomicU32,
    waits: AtomicU64,
    resets: AtomicU64,
    /// Resets that zeroed guest memory in place (see [`BootFootprint`]).
    resets_in_place: AtomicU64,
    /// What the first boot left resident: what a reset may zero in place.
    boot_footprint: BootFootprint,
    /// Whether the manifest gave this domain huge pages.
    huge_pages: bool,
    stack_freed: Condvar,
    stack_lock: Mutex<()>,
    fault: Mutex<Option<FaultReport>>,
    /// Its print budget (guest text is rate-limited per domain).
    prints: PrintLimiter,
    /// Its refused hypercalls since their last summary.
    refusals: RefusalLog,
    vcpus: VcpuPool,
    /// Its lease window: which pages are lent to frames inside it now.
    leases: lease::LeaseWindow,
    cpuid: CpuId,
    // Declared before `mem`: the VM goes first, then the memory it mapped.
    vm: VmFd,
    mem: GuestMemoryMmap,
}

impl Domain {
    /// The VM a domain named `name` will boot in ([`Domain::boot`]).
    ///
    /// A system creates all of its VMs before any domain boots: KVM
    /// registers an MMU notifier for every VM, which locks every mapping of
    /// the process (`mm_take_all_locks`), and each booted domain adds a
    /// mapping per vCPU (its `kvm_run` page). Created last, the VMs of N
    /// domains would cost O(N) each; created first, each walks the few
    /// mappings of a process that has no vCPU yet.
    pub(crate) fn create_vm(kvm: &Kvm, name: &str) -> Result<VmFd, BootError> {
        let fail = |source| {
            BootError::new(
                name,
                BootFailure::Kvm {
                    what: "create VM",
                    source,
                },
            )
        };
        if let Some(errno) = host_limits::injected(BootResource::Vm, name) {
            return Err(fail(kvm_ioctls::Error::new(errno)));
        }
        kvm.create_vm().map_err(fail)
    }

    /// Load the image into `vm`, boot the guest to its `Hello` and
    /// check it against `spec`; the boot stops there, unanswered, until
    /// [`Domain::finish_boot`] (the system first needs every domain's
    /// tables). With `meter` (the booting thread's, listed with the
    /// watchdog) each half of the boot may use at most `restart_ms` of CPU
    /// time, like a restart: a guest whose init loops cannot hang the boot.
    pub(crate) fn boot(
        vm: VmFd,
        cpuid: &CpuId,
        id: DomainId,
        spec: &DomainSpec,
        image_name: &str,
        image: Arc<[u8]>,
        meter: Option<&Meter>,
    ) -> Result<(Self, PendingBoot), BootError> {
        let name = spec.name.clone();
        let fail = |kind: BootFailure| BootError::new(&name, kind);
        let kvm_err = |what: &'static str| move |source| fail(BootFailure::Kvm { what, source });
        let injected = |r: BootResource| match host_limits::injected(r, &name) {
            Some(errno) => Err(kvm_ioctls::Error::new(errno)),
            None => Ok(()),
        };
        lease::keep_slot_deletes_local(&vm);
        let size =
            usize::try_from(spec.memory).map_err(|_| fail(BootFailure::MemorySize(spec.memory)))?;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)])
            .map_err(|e| fail(BootFailure::MapMemory(e)))?;
        let host_addr = mem
            .iter()
            .next()
            .ok_or_else(|| fail(BootFailure::MemorySize(spec.memory)))?
            .as_ptr() as u64;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: spec.memory,
            userspace_addr: host_addr,
        };
        // Huge pages only where the manifest asks (fewer TLB misses when
        // the VMM copies large objects after an exit); elsewhere refused
        // outright, so a host with THP "always" does not make every domain
        // resident in full (a 2 MiB page is cleared on its first touch).
        // Advice only: a host without THP ignores it.
        let advice = if spec.huge_pages {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: the range is exactly the mapping owned by `mem`; the
        // advice changes no contents and no permissions.
        let _ = unsafe { libc::madvise(host_addr as *mut libc::c_void, size, advice) };
        injected(BootResource::MemorySlot).map_err(kvm_err("set memory region"))?;
        // SAFETY: `host_addr` is the start of a live mmap of exactly
        // `spec.memory` bytes owned by `mem`, which this Domain keeps for as
        // long as the VM exists (`vm` is declared, hence dropped, first).
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("set memory region"))?;
        let loaded = boot::load_image(&mem, spec.memory, &image, &name, image_name)?;
        let layout = boot::layout_for(loaded.end, spec).map_err(fail)?;
        let window = spec.window.map(|w| w.layout);
        boot::write_system_pages(&mem, &layout, window.as_ref(), &name)?;
        let entry_point = loaded.entry;
        let mut d = Domain {
            id,
            name: name.clone(),
            layout,
            region: DataRegion::of(&layout),
            entries: Vec::new(),
            imports: Vec::new(),
            // The manifest bounds capabilities far below u32::MAX.
            cap_count: u32::try_from(spec.capabilities.len()).unwrap_or(u32::MAX),
            cap_table: Vec::new(),
            dispatcher: 0,
            stacks: StackPool::new(spec.stacks, spec.stack_max),
            stack_policy: spec.stack_policy,
            grow_fallback: spec.grow_fallback,
            grow_refusals: AtomicU64::new(0),
            samples: SampleRing::default(),
            tsc_khz: 0,
            max_spawned: spec.max_spawned,
            ipc: spec.ipc,
            limits: spec.limits,
            stack_mode: spec.stack,
            window,
            window_maps: AtomicU32::new(0),
            restarter: OnceLock::new(),
            image,
            image_name: image_name.to_owned(),
            entry_point,
            health: AtomicU8::new(Health::Running as u8),
            generation: AtomicU64::new(0),
            active: AtomicU32::new(0),
            spawned: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            waits: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            resets_in_place: AtomicU64::new(0),
            boot_footprint: BootFootprint::default(),
            huge_pages: spec.huge_pages,
            stack_freed: Condvar::new(),
            stack_lock: Mutex::new(()),
            fault: Mutex::new(None),
            prints: PrintLimiter::default(),
            refusals: RefusalLog::default(),
            // One boot vCPU plus at most one per stack: every invocation holds a stack.
            vcpus: VcpuPool::new(vcpu_capacity(spec)),
            leases: lease::LeaseWindow::default(),
            cpuid: cpuid.clone(),
            vm,
            mem,
        };
        injected(BootResource::Vcpu).map_err(kvm_err("create vCPU"))?;
        let vcpu = d.new_vcpu().map_err(kvm_err("create vCPU"))?;
        d.tsc_khz = vcpu.tsc_khz().unwrap_or(0);
        let pending = d.under_boot_meter(meter, || d.boot_to_hello(vcpu, entry_point, meter))?;
        let hello = &pending.hello;
        let declared = |x: &String| hello.entries.iter().any(|e| &e.name == x);
        if let Some(missing) = spec.exports.iter().find(|x| !declared(x)) {
            log::debug!("domain `{name}`: export `{missing}` is not in the image");
            return Err(fail(BootFailure::EntryMismatch {
                image: image_name.to_owned(),
                manifest: spec.exports.clone(),
                image_entries: hello.entries.iter().map(|e| e.name.clone()).collect(),
            }));
        }
        d.entries = hello.entries.clone();
        d.imports = hello.imports.clone();
        d.dispatcher = hello.dispatcher;
        d.samples = hello.samples;
        Ok((d, pending))
    }

    /// The second half of the first boot: write `caps` (this domain's
    /// capability table, slot order, one per manifest capability) where the
    /// guest asked, answer its `Hello` and run its init to `Ready`, under
    /// `meter` as in [`Domain::boot`]. Restarts write the same table.
    pub(crate) fn finish_boot(
        &mut self,
        pending: PendingBoot,
        caps: Vec<CapDecl>,
        meter: Option<&Meter>,
    ) -> Result<(), BootError> {
        self.under_boot_meter(meter, || self.answer_hello(pending, &caps, meter))?;
        self.cap_table = caps;
        self.boot_footprint = BootFootprint::record(&self.mem, self.huge_pages);
        Ok(())
    }

    /// The image's name as the manifest gave it (built-in name or path).
    pub fn image_name(&self) -> &str {
        &self.image_name
    }

    /// Log a guest's `Print` (bounded, checked against the data region),
    /// escaped and within the domain's print rate; dropped lines are
    /// counted and reported before the next line logged.
    pub(crate) fn print(&self, addr: u64, len: u64) {
        self.print_via(&self.region, &self.mem, addr, len);
    }

    /// [`Domain::print`] from a frame that sees `region` of `mem` (the
    /// domain's own plus, in mapped stack mode, the thread's window slot).
    pub(crate) fn print_via(
        &self,
        region: &DataRegion,
        mem: &GuestMemoryMmap,
        addr: u64,
        len: u64,
    ) {
        let PrintVerdict::Log { dropped } = self.prints.admit(std::time::Instant::now()) else {
            return;
        };
        self.report_dropped_prints(dropped);
        let text = region.read_text(mem, addr, len, guest_text::MAX_PRINT);
        let text = guest_text::print_line(&text);
        log::info!(target: "guest", "[{}] {}", self.name, text);
    }

    fn report_dropped_prints(&self, dropped: u64) {
        if dropped > 0 {
            log::warn!(target: "guest", "… {dropped} lines from `{}` dropped (print rate limit)", self.name);
        }
    }

    /// A hypercall of this domain was refused with `code`: logged at debug
    /// level only, counted, and summarised at most once per period.
    pub(crate) fn refused(&self, code: ErrorCode, what: std::fmt::Arguments<'_>) {
        log::debug!("[{}] {what}: refused with {code:?}", self.name);
        if let Some(summary) = self.refusals.record(code, std::time::Instant::now()) {
            log::info!("domain `{}`: {summary}", self.name);
        }
    }

    /// Log what is pending of its guest-caused log summaries (dropped
    /// prints, refusals): at the end of a run.
    pub(crate) fn flush_log_summaries(&self) {
        self.report_dropped_prints(self.prints.take_dropped());
        if let Some(summary) = self.refusals.summary() {
            log::info!("domain `{}`: {summary}", self.name);
        }
    }

    /// The report for a guest panic on `vcpu`: its message read (bounded,
    /// checked) from this domain's memory.
    pub(crate) fn panic_report(&self, vcpu: &mut Vcpu, addr: u64, len: u64) -> FaultReport {
        self.panic_report_via(&self.region, &self.mem, vcpu, addr, len)
    }

    /// [`Domain::panic_report`] from a frame that sees `region` of `mem`.
    pub(crate) fn panic_report_via(
        &self,
        region: &DataRegion,
        mem: &GuestMemoryMmap,
        vcpu: &mut Vcpu,
        addr: u64,
        len: u64,
    ) -> FaultReport {
        let message = region.read_text(mem, addr, len, fault::MAX_PANIC_MESSAGE);
        fault::panic_report(vcpu, &self.name, message)
    }

    /// The index of entry `name` in the image's table.
    pub fn entry_index(&self, name: &str) -> Option<EntryIndex> {
        self.entries
            .iter()
            .position(|e| e.name == name)
            .and_then(EntryIndex::from_index)
    }

    /// The name of entry `entry` (`?` for an index the image lacks).
    pub fn entry_name(&self, entry: EntryIndex) -> &str {
        self.entries
            .get(entry.index())
            .map_or("?", |e| e.name.as_str())
    }

    /// Whether the image has entry `entry`.
    pub fn has_entry(&self, entry: EntryIndex) -> bool {
        entry.index() < self.entries.len()
    }

    /// An idle vCPU, or a new one: a new slot's TSS and I/O bitmap are
    /// written only now, so a domain's memory holds only the TSSs of the
    /// vCPUs it has (12 KiB each), not all [`shared_abi::layout::MAX_VCPUS`].
    fn new_vcpu(&self) -> Result<Vcpu, kvm_ioctls::Error> {
        self.vcpus.take(|slot| {
            // The vCPU area lies below the image, inside any memory the
            // manifest accepts: this fails only on a broken layout.
            boot::write_tss(&self.mem, slot).map_err(|_| kvm_ioctls::Error::new(libc::EFAULT))?;
            Vcpu::create(&self.vm, slot, &self.cpuid)
        })
    }

    /// A vCPU to run an invocation on: an idle one, or a new one. A vCPU
    /// that cannot be cleaned is destroyed and stops counting as live, so a
    /// later reset of the domain does not wait for it forever.
    pub(crate) fn take_vcpu(&self) -> Result<Vcpu, kvm_ioctls::Error> {
        let mut v = self.new_vcpu()?;
        if let Err(e) = v.ensure_clean() {
            self.vcpus.lose();
            return Err(e);
        }
        Ok(v)
    }

    /// Give a vCPU back once its invocation is over.
    pub(crate) fn give_vcpu(&self, v: Vcpu) {
        self.vcpus.give(v);
    }

    /// vCPUs this domain has (they live as long as the domain).
    pub fn vcpu_count(&self) -> u32 {
        self.vcpus.live()
    }

    /// The most vCPUs it will ever have (created lazily, one per concurrent
    /// frame): what bounds its file descriptors and `kvm_run` maps.
    pub fn vcpu_capacity(&self) -> usize {
        self.vcpus.capacity()
    }

    /// vCPUs parked in the pool right now: equal to [`Domain::vcpu_count`]
    /// whenever no frame is inside the domain (a soak's leak check).
    pub fn idle_vcpus(&self) -> usize {
        self.vcpus.idle_count()
    }

    /// The top of stack `stack` (frames grow down from here).
    pub(crate) fn stack_top(&self, stack: StackIndex) -> u64 {
        self.layout.stack_top(stack.raw())
    }

    /// Make this domain's next `n` vCPU creations fail (tests only).
    #[cfg(feature = "test-util")]
    pub fn fail_next_vcpu_creations(&self, n: u32) {
        self.vcpus.fail_next_creations(n);
    }

    /// Stacks in its pool now (a growing pool's current size).
    pub fn stack_capacity(&self) -> u32 {
        self.stacks.count()
    }

    /// The most stacks its pool may have (`stack_max`; the boot count for
    /// a fixed pool).
    pub fn stack_max(&self) -> u32 {
        self.stacks.max()
    }

    /// Stacks its pool has at boot and after every restart.
    pub fn boot_stacks(&self) -> u32 {
        self.stacks.boot()
    }

    /// Times its pool grew by a stack (since boot, across restarts).
    pub fn stacks_grown(&self) -> u64 {
        self.stacks.times_grown()
    }

    /// Times its pool could have grown but did not, because no vCPU was
    /// left to run the new stack on.
    pub fn grow_refusals(&self) -> u64 {
        self.grow_refusals.load(Ordering::Relaxed)
    }

    /// Stacks free right now.
    pub fn free_stacks(&self) -> usize {
        self.stacks.free_count()
    }

    /// The domain's memory.
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Bytes of a callee stack that objects and the invocation frame may use.
    pub(crate) fn arg_budget(&self) -> u64 {
        self.layout.stack_size / 2
    }

    /// Its current health.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// How often it has been reset (0 before the first fault).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Times a caller had to wait for one of its stacks.
    pub fn stack_waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Completed resets.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// Resets that found only the pages its boot left resident and zeroed
    /// them in place, without a call into every VM's MMU notifier: how
    /// tests and benchmarks tell a cheap restart from one that gave memory
    /// back.
    pub fn resets_in_place(&self) -> u64 {
        self.resets_in_place.load(Ordering::Relaxed)
    }

    /// The most recent fault, if any.
    pub fn fault(&self) -> Option<FaultReport> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }

    /// Why the domain is not running, for frames unwound out of it: its
    /// fault, or a plain "domain stopped" when none was recorded.
    pub(crate) fn fault_or_stopped(&self) -> FaultReport {
        self.fault().unwrap_or_else(|| FaultReport {
            domain: self.name.clone(),
            vector: shared_abi::pseudo_vector::VCPU_ERROR,
            rip: 0,
            error_code: 0,
            cr2: 0,
            message: Some("domain stopped".into()),
            thread: None,
            chain: Vec::new(),
        })
    }

    /// A frame is about to enter: count it, unless the domain is not
    /// serving calls. While it is being reset, wait for the reset up to
    /// `wait` (wall clock; `None` = no limit): `Timeout` if it runs out.
    pub(crate) fn enter(&self, wait: Option<Duration>) -> Result<(), ErrorCode> {
        let mut deadline = None;
        loop {
            self.active.fetch_add(1, Ordering::AcqRel);
            if self.health().refusal().is_none() {
                return Ok(());
            }
            self.leave();
            match self.health() {
                // Running again in between: count in again.
                Health::Running => {}
                Health::Resetting => {
                    let until = *deadline.get_or_insert_with(|| wait.map(|w| Instant::now() + w));
                    self.wait_for_reset(until)?;
                }
                other => return Err(other.refusal().unwrap_or(ErrorCode::Restarting)),
            }
        }
    }

    /// Sleep while the domain is being reset, until `until` (`Timeout`).
    fn wait_for_reset(&self, until: Option<Instant>) -> Result<(), ErrorCode> {
        let Ok(mut guard) = self.stack_lock.lock() else {
            return Err(ErrorCode::Internal);
        };
        while self.health() == Health::Resetting {
            let slice = match until {
                Some(u) => match u.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(STACK_WAIT_SLICE),
                    _ => return Err(ErrorCode::Timeout),
                },
                None => STACK_WAIT_SLICE,
            };
            guard = match self.stack_freed.wait_timeout(guard, slice) {
                Ok((g, _)) => g,
                Err(_) => return Err(ErrorCode::Internal),
            };
        }
        Ok(())
    }

    /// A frame left (returned, unwound or never started). The last one out
    /// of a quarantined domain starts its reset: on the system's restarter
    /// thread when there is one, else here.
    pub(crate) fn leave(&self) {
        let was = self.active.fetch_sub(1, Ordering::AcqRel);
        if was == 1 && self.health() == Health::Quarantined {
            self.try_reset();
        }
    }

    /// Send this domain's resets to `jobs` from now on (once).
    pub(crate) fn set_restarter(&self, jobs: restarter::Jobs) {
        let _ = self.restarter.set(jobs);
    }

    /// Frames currently in the domain.
    pub fn active_frames(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// The domain faulted: quarantine it (the first report of a generation is kept).
    ///
    /// The report is stored in the same critical section that moves the
    /// health to `Quarantined`: a frame that sees the domain down reads the
    /// report ([`Domain::fault_or_stopped`], under the same lock) only after
    /// that section, so it never gets the previous generation's report.
    /// Stored after the health change, a frame unwound in between got that
    /// older report, and when the older fault had been its own thread's, the
    /// whole of it: the wrong call's vector, RIP, error code and CR2.
    pub(crate) fn quarantine(&self, report: &FaultReport) {
        let first = {
            // A poisoned lock still quarantines: a faulted domain must not
            // go on serving for want of its report.
            let mut stored = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
            let first = self
                .health
                .compare_exchange(
                    Health::Running as u8,
                    Health::Quarantined as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
            if first {
                *stored = Some(report.clone());
            }
            first
        };
        if first {
            log::error!("{report}; domain quarantined, restarting once its last frame has left");
            self.wake_waiters();
        }
    }

    fn try_reset(&self) {
        let claimed = self
            .health
            .compare_exchange(
                Health::Quarantined as u8,
                Health::Resetting as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !claimed || self.active.load(Ordering::Acquire) != 0 {
            if claimed {
                // A frame slipped in between; it will find the domain resetting,
                // leave, and no reset happens twice: put it back.
                self.health
                    .store(Health::Quarantined as u8, Ordering::Release);
            }
            return;
        }
        if let Some(jobs) = self.restarter.get() {
            if jobs.send(self.id) {
                return;
            }
        }
        let result = self.reset(None);
        self.finish_reset(result);
    }

    /// Run the reset a restarter was sent for (the domain is `Resetting`),
    /// under `meter`'s budget: a reset that overruns it or fails leaves the
    /// domain `Dead`.
    pub fn restart(&self, meter: Option<&Meter>) {
        if self.health() != Health::Resetting {
            return;
        }
        if let Some(m) = meter {
            let _ = m.take_expiry();
            m.push(
                0,
                m.fresh_id(),
                crate::watch::meter::budget_word(Some(self.limits.restart)),
                self.id.raw(),
            );
        }
        let result = self.reset(meter);
        self.finish_reset(result);
    }

    fn finish_reset(&self, result: Result<(), BootError>) {
        match result {
            Ok(()) => {
                self.resets.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "domain `{}` restarted (generation {})",
                    self.name,
                    self.generation()
                );
                self.health.store(Health::Running as u8, Ordering::Release);
            }
            Err(e) => {
                log::error!(
                    "domain `{}` could not be restarted and is dead: {e}",
                    self.name
                );
                self.health.store(Health::Dead as u8, Ordering::Release);
            }
        }
        self.wake_waiters();
    }

    /// Reset in place: the same VM and vCPUs; memory zeroed (in place when
    /// only the pages its boot left are resident, else given back to the
    /// host: what the guest touched is no longer resident), image and
    /// system pages rewritten (the TSSs of existing vCPUs only), `_start`
    /// and the guest's init re-run, stack pool full, generation + 1. The
    /// domain ends with the footprint of a fresh boot plus its vCPUs' TSSs.
    fn reset(&self, meter: Option<&Meter>) -> Result<(), BootError> {
        let fail = |kind: BootFailure| BootError::new(&self.name, kind);
        // Nothing is in the domain (no vCPU runs, no copy touches it).
        let cleared = self
            .boot_footprint
            .clear(&self.mem)
            .map_err(|e| fail(BootFailure::ZeroMemory(e)))?;
        if cleared == Cleared::InPlace {
            self.resets_in_place.fetch_add(1, Ordering::Relaxed);
        }
        let loaded = boot::load_image(
            &self.mem,
            self.layout.memory_size,
            &self.image,
            &self.name,
            &self.image_name,
        )?;
        if loaded.entry != self.entry_point || loaded.end != self.layout.image_end {
            return Err(fail(BootFailure::ImageChanged));
        }
        boot::write_system_pages(&self.mem, &self.layout, self.window.as_ref(), &self.name)?;
        // The TSSs of the vCPUs it has, and no others: the same pages as
        // before the reset.
        for slot in 0..self.vcpus.created() {
            boot::write_tss(&self.mem, slot).map_err(|e| fail(BootFailure::SystemPages(e)))?;
        }
        // A grown pool returns to its boot reservation: the memory of the
        // grown stacks was just given back; their vCPUs stay (KVM destroys
        // a vCPU only with its VM) and serve the pool if it grows again.
        if !self.stacks.shrink_to_boot() {
            return Err(fail(BootFailure::StackOut));
        }
        if self.vcpus.idle_count() != self.vcpu_count() as usize {
            return Err(fail(BootFailure::VcpuOut));
        }
        let mut vcpu = self.take_vcpu_dirty().map_err(|source| {
            fail(BootFailure::Kvm {
                what: "reset vCPU",
                source,
            })
        })?;
        let generation = self.generation() + 1;
        let hello = self.run_boot(&mut vcpu, loaded.entry, generation, meter, &self.cap_table);
        vcpu.mark_dirty();
        self.give_vcpu(vcpu);
        let hello = hello?;
        let first = HelloInfo {
            entries: self.entries.clone(),
            imports: self.imports.clone(),
            dispatcher: self.dispatcher,
            samples: self.samples,
            caps: None,
        };
        if !hello.same_introduction(&first) {
            return Err(fail(BootFailure::BadHello(HelloError::ChangedOnRestart)));
        }
        // Every idle vCPU reloads its registers before its next invocation.
        self.vcpus.for_each_idle(Vcpu::mark_dirty);
        self.generation.store(generation, Ordering::Release);
        Ok(())
    }

    /// A vCPU with freshly loaded registers, whatever state it was left in.
    fn take_vcpu_dirty(&self) -> Result<Vcpu, kvm_ioctls::Error> {
        let mut v = self.new_vcpu()?;
        if let Err(e) = v.reset() {
            self.vcpus.lose();
            return Err(e);
        }
        Ok(v)
    }

    /// Map window slot `slot` into this domain (a memory slot of its own,
    /// at the slot's guest address), for frames of the thread that holds
    /// it. Only a `mapped` domain has page tables for the window.
    pub(crate) fn map_window(&self, slot: &WindowSlot) -> Result<(), kvm_ioctls::Error> {
        let region = kvm_userspace_memory_region {
            slot: slot.memslot(),
            flags: 0,
            guest_phys_addr: slot.bottom(),
            memory_size: slot.top() - slot.bottom(),
            userspace_addr: slot.host_addr(),
        };
        // SAFETY: the host range is the slot's own live mapping of exactly
        // that size, which the thread holding it keeps (and keeps lent)
        // until it has unmapped it from every domain.
        unsafe { self.vm.set_user_memory_region(region) }?;
        self.window_maps.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Remove window slot `slot` from this domain (after [`Domain::map_window`]).
    pub(crate) fn unmap_window(&self, slot: &WindowSlot) {
        let region = kvm_userspace_memory_region {
            slot: slot.memslot(),
            flags: 0,
            guest_phys_addr: slot.bottom(),
            memory_size: 0,
            userspace_addr: slot.host_addr(),
        };
        // SAFETY: a zero size deletes the memory slot; KVM touches no host
        // memory for that.
        match unsafe { self.vm.set_user_memory_region(region) } {
            Ok(()) => {
                self.window_maps.fetch_sub(1, Ordering::AcqRel);
            }
            Err(e) => log::error!(
                "domain `{}`: removing window slot {} failed: {e}",
                self.name,
                slot.index()
            ),
        }
    }

    /// Window slots mapped into this domain right now: each one a memory
    /// slot beyond the domain's own (tests count them before and after).
    pub fn window_slots_mapped(&self) -> u32 {
        self.window_maps.load(Ordering::Acquire)
    }

    /// Take a stack for a new frame, following the domain's policy.
    /// `held_by_caller` counts this domain's stacks the calling thread
    /// already holds (under its suspended frames), asked only when the pool
    /// is empty: if the caller holds them all, waiting would deadlock, so it
    /// gets `NoStack`. A wait lasts at most the domain's `wait_ms`, then
    /// the call gets `Timeout`.
    pub fn take_stack(
        &self,
        held_by_caller: impl FnOnce() -> u32,
    ) -> Result<StackIndex, ErrorCode> {
        self.take_stack_within(held_by_caller, self.limits.wait)
    }

    /// [`Domain::take_stack`] with a wait limit of the caller's (wall
    /// clock; `None` = no limit).
    pub(crate) fn take_stack_within(
        &self,
        held_by_caller: impl FnOnce() -> u32,
        wait: Option<Duration>,
    ) -> Result<StackIndex, ErrorCode> {
        self.take_stack_raw(held_by_caller, wait)
            .map(StackIndex::new)
    }

    fn take_stack_raw(
        &self,
        held_by_caller: impl FnOnce() -> u32,
        wait: Option<Duration>,
    ) -> Result<u32, ErrorCode> {
        if let Some(s) = self.stacks.take() {
            return Ok(s);
        }
        if self.stack_policy == StackPolicy::Grow {
            if let Some(s) = self.grow_stack() {
                return Ok(s);
            }
        }
        if self.stack_policy.when_empty(self.grow_fallback) == StackPolicy::Fail
            || held_by_caller() >= self.stacks.count()
        {
            return Err(ErrorCode::NoStack);
        }
        // Only now, off the hot path: the clock for the wait's limit.
        let until = wait.map(|w| Instant::now() + w);
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let result = loop {
            if let Some(code) = self.health().refusal() {
                break Err(code);
            }
            let slice = match until {
                Some(u) => match u.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(STACK_WAIT_SLICE),
                    _ => break Err(ErrorCode::Timeout),
                },
                None => STACK_WAIT_SLICE,
            };
            let Ok(guard) = self.stack_lock.lock() else {
                break Err(ErrorCode::Internal);
            };
            if let Some(s) = self.stacks.take() {
                break Ok(s);
            }
            // Re-checked under the lock a giver must take to notify: no lost wake-up.
            let _ = self.stack_freed.wait_timeout(guard, slice);
            if let Some(s) = self.stacks.take() {
                break Ok(s);
            }
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// Add a stack to a growing pool for the caller (`None` at its
    /// maximum, or when no vCPU is left to run it: KVM's per-VM limit, or
    /// slots lost to failed creations).
    fn grow_stack(&self) -> Option<u32> {
        if self.stacks.count() >= self.stacks.max() {
            return None;
        }
        if !self.vcpus.can_supply() {
            let n = self.grow_refusals.fetch_add(1, Ordering::Relaxed);
            if n == 0 {
                log::warn!(
                    "domain `{}`: stack pool not grown beyond {} stacks: every vCPU it may have \
                     ({} of at most {}) is in use",
                    self.name,
                    self.stacks.count(),
                    self.vcpus.live(),
                    self.vcpus.capacity(),
                );
            }
            return None;
        }
        let s = self.stacks.grow()?;
        log::debug!("domain `{}`: stack pool grew to {}", self.name, s + 1);
        Some(s)
    }

    /// Give a stack back and wake one waiter, if any.
    pub fn give_stack(&self, stack: StackIndex) {
        self.stacks.give_back(stack.raw());
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.wake_waiters();
        }
    }

    fn wake_waiters(&self) {
        let _guard = self.stack_lock.lock();
        self.stack_freed.notify_all();
    }

    /// Count a spawned thread against the quota.
    pub(crate) fn spawn_begin(&self) -> Result<(), ErrorCode> {
        let now = self.spawned.fetch_add(1, Ordering::AcqRel);
        if now >= self.max_spawned {
            self.spawned.fetch_sub(1, Ordering::AcqRel);
            return Err(ErrorCode::QuotaExceeded);
        }
        Ok(())
    }

    /// A spawned thread was reclaimed (joined) or never started.
    pub(crate) fn spawn_end(&self) {
        self.spawned.fetch_sub(1, Ordering::AcqRel);
    }

    /// Spawned threads counted against `max_spawned` right now.
    pub fn spawned_threads(&self) -> u32 {
        self.spawned.load(Ordering::Acquire)
    }

    /// Samples the guest has recorded so far (its ring's write count).
    pub fn sample_count(&self) -> u64 {
        if self.samples.addr == 0 {
            return 0;
        }
        guest_io::read_u64(&self.mem, self.samples.count_addr).unwrap_or(0)
    }

    /// The samples recorded since the count was `since` (at most the
    /// ring's capacity: older ones were overwritten).
    pub fn samples_since(&self, since: u64) -> Vec<Sample> {
        let s = self.samples;
        if s.addr == 0 || s.capacity == 0 {
            return Vec::new();
        }
        let count = self.sample_count();
        let from = since.max(count.saturating_sub(s.capacity));
        (from..count)
            .filter_map(|i| guest_io::read_sample(&self.mem, s.addr, i % s.capacity).ok())
            .collect()
    }

    /// The latency samples the guest recorded (the newest `capacity` ones).
    pub fn read_samples(&self) -> Vec<Sample> {
        self.samples_since(0)
    }
}
