//! A running system: the domains of a manifest booted as KVM VMs, their
//! capabilities resolved to entries, the servers of message-mode domains,
//! and the threads that migrate between them. This is where the layers
//! below are wired together: `Core` implements the migration engine's
//! `Engine` context, and message-mode servers get a handler that runs a
//! served chain.

use crate::domain::compat::{self, Incompatible};
use crate::domain::restarter::{Restarter, RestarterError};
use crate::domain::{BootError, BootFailure, Domain};
use crate::fault::FaultReport;
use crate::ids::{DomainId, EntryIndex, Slot, ThreadId};
use crate::kvm::{self, KvmError};
use crate::manifest::{self, ImageSource, Ipc, Mapping, StackMode};
use crate::message::{Handler, Inboxes, ServerThreads};
use crate::migrate::{Chain, Engine, ThreadRun};
use crate::observe::CallObserver;
use crate::sandbox::SandboxError;
use crate::stats::LatencySummary;
use crate::thread::caps::{CapTable, Capability};
use crate::thread::counters::Counters;
use crate::thread::handoff::Handoff;
use crate::thread::profile::CopySample;
use crate::thread::spawns::{KeptOutcomes, SpawnGate, SpawnTally};
use crate::thread::{NotStarted, ThreadResult, ThreadTime};
use crate::watch::{WatchError, Watchdog};
use crate::window::StackWindow;
use shared_abi::{ErrorCode, MAX_SCALARS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

fn scalars_of(args: &[u64]) -> [u64; MAX_SCALARS] {
    let mut scalars = [0u64; MAX_SCALARS];
    scalars.iter_mut().zip(args).for_each(|(s, a)| *s = *a);
    scalars
}

type HostThread<'scope> = std::thread::ScopedJoinHandle<'scope, ThreadOutcome>;

/// What the run loop hears.
enum RunEvent {
    /// A guest's `Spawn` was accepted: start it.
    Spawn(SpawnRequest),
    /// The host thread of this thread is ending: join it now.
    Ended(ThreadId),
}

/// Sends [`RunEvent::Ended`] when dropped: at the end of a host thread's
/// job, also if it panicked, so the run loop reclaims every host thread.
struct EndNotice {
    thread: ThreadId,
    tx: Sender<RunEvent>,
}

impl Drop for EndNotice {
    fn drop(&mut self) {
        // The loop outlives every host thread of its scope: a failure
        // would only mean it is gone already.
        let _ = self.tx.send(RunEvent::Ended(self.thread));
    }
}

/// Run `job` (migrating thread `thread`, starting at `start`) on a host
/// thread of its own, confined by seccomp before it runs any guest code,
/// which tells the run loop on `tx` when it ends. A thread that cannot be
/// confined runs nothing and is reported `NotStarted`.
fn start_host_thread<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    thread: ThreadId,
    start: String,
    tx: &Sender<RunEvent>,
    job: impl FnOnce() -> ThreadOutcome + Send + 'scope,
) -> Option<HostThread<'scope>> {
    let notice = EndNotice {
        thread,
        tx: tx.clone(),
    };
    match std::thread::Builder::new()
        .name(format!("ferry-t{}", thread.raw()))
        .spawn_scoped(s, move || {
            let _notice = notice;
            match crate::sandbox::confine_current_thread() {
                Ok(_) => job(),
                Err(e) => {
                    log::error!("{thread} not started: {e}");
                    ThreadOutcome::not_started(thread, start, NotStarted::NoSandbox)
                }
            }
        }) {
        Ok(h) => Some(h),
        Err(e) => {
            log::error!("cannot start a host thread for {thread}: {e}");
            None
        }
    }
}

/// A host thread the run loop has started and not yet joined.
struct Running<'scope> {
    handle: HostThread<'scope>,
    /// The domain whose spawn quota it holds (`None`: a manifest thread).
    spawned_in: Option<DomainId>,
}

/// Why a system could not start.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(transparent)]
    Kvm(#[from] KvmError),
    #[error(transparent)]
    HostLimit(#[from] crate::host_limits::HostLimitError),
    #[error("KVM refused to report its CPUID")]
    Cpuid(#[source] kvm_ioctls::Error),
    #[error("domain `{domain}`: no built-in image `{image}` (built-in: {}; give a path containing `/` for a file)", crate::images::names().collect::<Vec<_>>().join(", "))]
    NoSuchImage {
        /// The domain.
        domain: String,
        /// The name it gave.
        image: String,
    },
    #[error("domain `{domain}`: cannot read image {}", path.display())]
    ImageFile {
        /// The domain.
        domain: String,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A capability that names no booted domain or entry: boot fails rather
    /// than shift every later slot onto another callee.
    #[error("domain `{domain}`: capability `{capability}` resolves to no booted entry")]
    UnresolvedCapability {
        /// The calling domain.
        domain: String,
        /// The capability as the manifest wrote it.
        capability: String,
    },
    #[error(transparent)]
    Boot(#[from] BootError),
    /// A client and a server it may call were built from different
    /// definitions of an interface (one sentence naming both).
    #[error(transparent)]
    Incompatible(#[from] Box<Incompatible>),
    #[error("cannot start the CPU-budget watchdog")]
    Watchdog(#[source] WatchError),
    #[error(transparent)]
    Restarter(#[from] RestarterError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// A thread still running, as [`System::running`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningThread {
    /// Its id.
    pub thread: ThreadId,
    /// `domain.entry` it started in.
    pub start: String,
    /// The domains of its frames on its host thread, bottom first.
    pub chain: Vec<String>,
}

/// How one thread ended.
#[derive(Clone, Debug)]
pub struct ThreadOutcome {
    /// The thread's id.
    pub thread: ThreadId,
    /// `domain.entry` it started in.
    pub start: String,
    /// How it ended.
    pub result: ThreadResult,
    /// Where its time went, across every domain it visited.
    pub time: ThreadTime,
}

impl ThreadOutcome {
    fn not_started(thread: ThreadId, start: String, why: NotStarted) -> Self {
        Self {
            thread,
            start,
            result: ThreadResult::NotStarted(why),
            time: ThreadTime::default(),
        }
    }

    /// One line for people: how it ended and where its time went
    /// (milliseconds at `tsc_khz`, the host TSC rate).
    pub fn summary(&self, tsc_khz: u32) -> String {
        let how = match &self.result {
            ThreadResult::Returned { status: 0, results } => format!("returned {results:?}"),
            ThreadResult::Returned { status, .. } => format!("returned status {status:#x}"),
            ThreadResult::Exited { code } => format!("exited with code {code}"),
            ThreadResult::Faulted(report) => format!("faulted: {report}"),
            ThreadResult::NotStarted(why) => format!("did not start: {why}"),
            ThreadResult::Lost(why) => format!("lost by the VMM: {why}"),
        };
        let t = &self.time;
        let ms = |c: u64| {
            if tsc_khz > 0 {
                format!("{:.1} ms", c as f64 / f64::from(tsc_khz))
            } else {
                format!("{c} cycles")
            }
        };
        format!(
            "{} from {}: {how}; {} calls, {} KVM_RUNs, {} in guests and exits, {} in the VMM",
            self.thread,
            self.start,
            t.calls,
            t.runs,
            ms(t.guest_cycles),
            ms(t.vmm_cycles)
        )
    }
}

/// Where a manifest thread starts, and its scalars.
type Located = (DomainId, EntryIndex, [u64; MAX_SCALARS]);

/// A thread a guest asked for with `Spawn`.
struct SpawnRequest {
    thread: ThreadId,
    domain: DomainId,
    entry: EntryIndex,
    arg: u64,
}

/// The shared state of a booted system: its domains, capabilities,
/// observer, counters and the inboxes of message-mode domains. Migrating
/// threads and message-mode servers all work on it; [`System`] is the handle
/// that owns it and the server threads.
struct Core {
    spec: manifest::System,
    domains: Vec<Domain>,
    caps: CapTable,
    observer: Option<Arc<dyn CallObserver>>,
    counters: Counters,
    next_thread: AtomicU64,
    /// Whether chains log VMM work per call+return (for `ferry bench`).
    profile: AtomicBool,
    /// VMM-work samples flushed by profiled chains when they end.
    work: Mutex<Vec<u64>>,
    /// Copy samples flushed by profiled chains when they end.
    copies: Mutex<Vec<CopySample>>,
    /// Open while [`System::run`] runs: admits `Spawn`s and counts the
    /// spawned threads not yet reclaimed.
    spawns: SpawnGate<RunEvent>,
    /// How the spawned threads of the last run ended.
    spawn_tally: Mutex<SpawnTally>,
    inboxes: Inboxes,
    /// The CPU-budget watchdog every chain registers with.
    watchdog: Arc<Watchdog>,
    /// Threads running now: id → where they started.
    live: Mutex<std::collections::BTreeMap<ThreadId, String>>,
    /// The stack window, when some domain is `mapped`.
    window: Option<StackWindow>,
    /// Per domain: the `mapped` domains a thread there can reach.
    mapped_reach: Vec<Vec<DomainId>>,
}

/// Per domain of `spec`: the `mapped` domains reachable from it through
/// capabilities (any number of hops, itself included), in id order.
fn mapped_reach(spec: &manifest::System) -> Vec<Vec<DomainId>> {
    let n = spec.domains.len();
    (0..n)
        .map(|start| {
            let mut seen = vec![false; n];
            let mut todo = vec![start];
            while let Some(d) = todo.pop() {
                if seen.get(d).copied().unwrap_or(true) {
                    continue;
                }
                if let Some(s) = seen.get_mut(d) {
                    *s = true;
                }
                if let Some(ds) = spec.domains.get(d) {
                    todo.extend(ds.capabilities.iter().map(|c| c.domain));
                }
            }
            (0..n)
                .filter(|&d| seen.get(d).copied().unwrap_or(false))
                .filter(|&d| {
                    spec.domains
                        .get(d)
                        .is_some_and(|ds| ds.stack == StackMode::Mapped)
                })
                .filter_map(|d| u32::try_from(d).ok().map(DomainId::new))
                .collect()
        })
        .collect()
}

/// An image's name as the manifest gave it (built-in name or path) and its
/// bytes.
type NamedImage = (String, Arc<[u8]>);

/// The image of every domain of `spec`, in order: one shared copy per
/// distinct image (a domain keeps its image for restarts, and a thousand
/// domains of one image need not hold a thousand copies).
fn image_bytes(spec: &[manifest::DomainSpec]) -> Result<Vec<NamedImage>, SystemError> {
    let mut loaded: HashMap<String, Arc<[u8]>> = HashMap::new();
    spec.iter()
        .map(|d| {
            let name = match &d.image {
                ImageSource::Builtin(name) => name.clone(),
                ImageSource::File(path) => path.display().to_string(),
            };
            if let Some(bytes) = loaded.get(&name) {
                return Ok((name, Arc::clone(bytes)));
            }
            let bytes: Arc<[u8]> = match &d.image {
                ImageSource::Builtin(image) => crate::images::builtin(image)
                    .map(Arc::from)
                    .ok_or_else(|| SystemError::NoSuchImage {
                        domain: d.name.clone(),
                        image: image.clone(),
                    })?,
                ImageSource::File(path) => {
                    std::fs::read(path)
                        .map(Arc::from)
                        .map_err(|source| SystemError::ImageFile {
                            domain: d.name.clone(),
                            path: path.clone(),
                            source,
                        })?
                }
            };
            loaded.insert(name.clone(), Arc::clone(&bytes));
            Ok((name, bytes))
        })
        .collect()
}

/// A boot error as one sentence naming a host or KVM limit when that is
/// what it was (`fit`: the domains before this one, all booted), else as
/// it is.
fn explain_boot_failure(e: BootError, fit: usize, domains: usize) -> SystemError {
    use crate::host_limits::{boot_limit, BootResource};
    let found = match &*e.failure {
        BootFailure::Kvm { what, source } => match *what {
            "create VM" => Some((BootResource::Vm, source.errno())),
            "set memory region" => Some((BootResource::MemorySlot, source.errno())),
            "create vCPU" => Some((BootResource::Vcpu, source.errno())),
            _ => None,
        },
        BootFailure::MapMemory(m) => os_error_in(m).map(|errno| (BootResource::GuestMemory, errno)),
        _ => None,
    };
    match found.and_then(|(r, errno)| boot_limit(r, errno, &e.domain, fit, domains)) {
        Some(limit) => SystemError::HostLimit(limit),
        None => SystemError::Boot(e),
    }
}

/// The OS error somewhere in `e`'s chain of sources.
fn os_error_in(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        // vm-memory's mmap error holds the OS error without naming it a source.
        if let Some(vm_memory::mmap::MmapRegionError::Mmap(io)) = err.downcast_ref() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

/// Resolve every domain's capabilities with `lookup` (domain index, entry
/// name); any that names no booted entry fails the boot, where dropping it
/// would shift every later slot onto another callee.
fn resolve_caps(
    spec: &manifest::System,
    lookup: impl Fn(usize, &str) -> Option<Capability>,
) -> Result<CapTable, SystemError> {
    let mut by_caller = Vec::with_capacity(spec.domains.len());
    for d in &spec.domains {
        let mut slots = Vec::with_capacity(d.capabilities.len());
        for c in &d.capabilities {
            let Some(cap) = lookup(c.domain, &c.entry) else {
                return Err(SystemError::UnresolvedCapability {
                    domain: d.name.clone(),
                    capability: format!("#{}.{}", c.domain, c.entry),
                });
            };
            slots.push(cap);
        }
        by_caller.push(slots);
    }
    Ok(CapTable::new(by_caller))
}

impl Core {
    /// Boot every domain of `spec` (in order) and resolve capabilities.
    fn boot(
        spec: manifest::System,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, SystemError> {
        let images = image_bytes(&spec.domains)?;
        // Before any VM exists: every domain's memory must hold its image,
        // its stacks and the smallest heap (the error names the size that fits).
        for (d, (image_name, bytes)) in spec.domains.iter().zip(&images) {
            let fail = |failure| BootError::new(&d.name, failure);
            let end = crate::domain::loader::image_end(bytes).map_err(|source| {
                fail(BootFailure::Image {
                    image: image_name.clone(),
                    source,
                })
            })?;
            crate::domain::boot::layout_for(end, d).map_err(fail)?;
        }
        // Room for every VM and every vCPU it may create (one fd each).
        let per_domain: Vec<u64> = spec
            .domains
            .iter()
            .map(|d| 1 + u64::from(crate::domain::vcpu_capacity(d)))
            .collect();
        crate::host_limits::ensure_fds(&per_domain)?;
        // The same VMs and vCPUs in maps, plus every thread that may start
        // (manifest threads, spawned ones, message-mode servers).
        let threads = spec.threads.len() as u64
            + u64::from(spec.max_spawned_total)
            + spec
                .domains
                .iter()
                .filter(|d| d.ipc == Ipc::Message)
                .map(|d| u64::from(d.stacks))
                .sum::<u64>();
        crate::host_limits::ensure_maps(&per_domain, threads)?;
        // Fail here, once, rather than in every thread that runs guest code.
        crate::sandbox::prepare()?;
        let watchdog = Arc::new(Watchdog::start().map_err(SystemError::Watchdog)?);
        let kvm = kvm::open()?;
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(SystemError::Cpuid)?;
        // The first boots run on a few worker threads, each listed with the
        // watchdog (as the VMM's own, tag 0) so each boot is bounded by its
        // domain's `restart_ms`.
        let register = || {
            watchdog
                .register(0)
                .inspect_err(|e| log::warn!("first boots run without a time limit: {e}"))
                .ok()
        };
        let meter_of =
            |r: &Option<crate::watch::Registration>| r.as_ref().map(|r| Arc::clone(r.meter()));
        let workers = crate::parallel::workers_for(spec.domains.len());
        let started = std::time::Instant::now();
        // Every guest runs to its `Hello` first: a capability table names
        // the servers' entries, and a client may boot before its servers.
        // Ids count up from 0 in manifest order (the manifest caps the count
        // far below u32::MAX), so no conversion can fail.
        // Every VM before any domain maps its vCPUs (see Domain::create_vm).
        let vms = crate::parallel::run_indexed(
            spec.domains.iter().collect(),
            workers,
            || (),
            |(), i, d| {
                Domain::create_vm(&kvm, &d.name)
                    .map_err(|e| explain_boot_failure(e, i, spec.domains.len()))
            },
        )?;
        let jobs: Vec<_> = (0u32..)
            .map(DomainId::new)
            .zip(vms.into_iter().zip(spec.domains.iter().zip(&images)))
            .collect();
        let booted = crate::parallel::run_indexed(
            jobs,
            workers,
            register,
            |reg, _, (id, (vm, (d, (image_name, bytes))))| {
                let meter = meter_of(reg);
                Domain::boot(
                    vm,
                    &cpuid,
                    id,
                    d,
                    image_name,
                    Arc::clone(bytes),
                    meter.as_deref(),
                )
                .map_err(|e| explain_boot_failure(e, id.index(), spec.domains.len()))
            },
        )?;
        let (domains, pending): (Vec<Domain>, Vec<_>) = booted.into_iter().unzip();
        let mut inboxes = Inboxes::default();
        for (d, s) in domains.iter().zip(&spec.domains) {
            if s.ipc == Ipc::Message {
                inboxes.open(d.id, &s.name, s.stack_policy);
            }
        }
        let caps = resolve_caps(&spec, |domain, entry| {
            let target = domains.get(domain)?;
            Some(Capability {
                domain: target.id,
                entry: target.entry_index(entry)?,
            })
        })?;
        let decls = {
            let tables: Vec<compat::Tables<'_>> = domains
                .iter()
                .zip(&spec.domains)
                .map(|(d, s)| compat::Tables {
                    name: &d.name,
                    image: d.image_name(),
                    entries: &d.entries,
                    imports: &d.imports,
                    caps: &s.capabilities,
                })
                .collect();
            compat::check(&tables)?;
            (0..tables.len())
                .map(|i| compat::cap_decls(&tables, i))
                .collect::<Vec<_>>()
        };
        // Then each writes its capability table and runs its init.
        let jobs: Vec<_> = domains.into_iter().zip(pending).zip(decls).collect();
        let domains = crate::parallel::run_indexed(
            jobs,
            workers,
            register,
            |reg, _, ((mut d, hello), decls)| {
                let meter = meter_of(reg);
                d.finish_boot(hello, decls, meter.as_deref())?;
                Ok::<_, SystemError>(d)
            },
        )?;
        log::debug!(
            "booted {} domains in {:.1} ms on {workers} threads",
            domains.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let max_spawned_total = spec.max_spawned_total;
        let mapped_reach = mapped_reach(&spec);
        let window = spec
            .domains
            .iter()
            .any(|d| d.stack == StackMode::Mapped)
            .then(|| StackWindow::new(spec.window.layout));
        Ok(Self {
            window,
            mapped_reach,
            spec,
            domains,
            caps,
            observer,
            counters: Counters::default(),
            next_thread: AtomicU64::new(1),
            spawns: SpawnGate::new(max_spawned_total),
            spawn_tally: Mutex::new(SpawnTally::default()),
            profile: AtomicBool::new(false),
            work: Mutex::new(Vec::new()),
            copies: Mutex::new(Vec::new()),
            inboxes,
            watchdog,
            live: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    fn domain_by_name(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name == name)
    }

    fn next_thread(&self) -> ThreadId {
        ThreadId::new(self.next_thread.fetch_add(1, Ordering::Relaxed))
    }

    fn start_name(&self, domain: DomainId, entry: EntryIndex) -> String {
        self.domain(domain).map_or_else(
            || domain.to_string(),
            |d| format!("{}.{}", d.name, d.entry_name(entry)),
        )
    }

    fn run_chain(
        &self,
        thread: ThreadId,
        domain: DomainId,
        entry: EntryIndex,
        scalars: [u64; MAX_SCALARS],
    ) -> ThreadOutcome {
        let start = self.start_name(domain, entry);
        let Some(d) = self.domain(domain) else {
            let why = NotStarted::NoSuchEntry {
                domain: domain.to_string(),
                entry: entry.to_string(),
            };
            return ThreadOutcome::not_started(thread, start, why);
        };
        if let Ok(mut live) = self.live.lock() {
            live.insert(thread, start.clone());
        }
        let ThreadRun { result, time, work } = Chain::run_thread(self, thread, d, entry, scalars);
        if let Ok(mut live) = self.live.lock() {
            live.remove(&thread);
        }
        if let Some(w) = work {
            if let Ok(mut all) = self.work.lock() {
                all.extend_from_slice(w.work_samples());
            }
            if let Ok(mut all) = self.copies.lock() {
                all.extend_from_slice(w.copy_samples());
            }
        }
        ThreadOutcome {
            thread,
            start,
            result,
            time,
        }
    }

    /// Run a spawned thread (its quota is given back once it is joined).
    fn run_spawned(&self, req: SpawnRequest) -> ThreadOutcome {
        self.run_chain(req.thread, req.domain, req.entry, scalars_of(&[req.arg]))
    }

    /// A spawned thread of `domain` was reclaimed or never started: give
    /// back its place in the domain's and the VMM's quota.
    fn release_spawn(&self, domain: DomainId) {
        if let Some(d) = self.domain(domain) {
            d.spawn_end();
        }
        self.spawns.release();
    }

    /// Where manifest thread `t` starts, if its domain and entry exist.
    fn locate(&self, t: &manifest::ThreadSpec) -> Option<Located> {
        let d = self.domains.get(t.domain)?;
        Some((d.id, d.entry_index(&t.entry)?, scalars_of(&t.args)))
    }

    /// Run the manifest's threads and every thread spawned meanwhile; each
    /// host thread is joined as soon as it ends (its quota given back then),
    /// and the run ends when none is left and no accepted spawn is
    /// outstanding (decided under the spawn gate's lock, so no accepted
    /// spawn is lost).
    fn run(&self) -> Vec<ThreadOutcome> {
        let (tx, rx) = mpsc::channel::<RunEvent>();
        self.spawns.open(tx.clone());
        let mut kept = KeptOutcomes::default();
        std::thread::scope(|s| {
            let mut running: HashMap<ThreadId, Running<'_>> = HashMap::new();
            for t in &self.spec.threads {
                let Some((dom, idx, scalars)) = self.locate(t) else {
                    kept.push_fixed(ThreadOutcome::not_started(
                        self.next_thread(),
                        format!("#{}.{}", t.domain, t.entry),
                        NotStarted::NoSuchEntry {
                            domain: format!("#{}", t.domain),
                            entry: t.entry.clone(),
                        },
                    ));
                    continue;
                };
                let thread = self.next_thread();
                let job = move || self.run_chain(thread, dom, idx, scalars);
                match start_host_thread(s, thread, self.start_name(dom, idx), &tx, job) {
                    Some(handle) => {
                        let spawned_in = None;
                        running.insert(thread, Running { handle, spawned_in });
                    }
                    None => kept.push_fixed(ThreadOutcome::not_started(
                        thread,
                        self.start_name(dom, idx),
                        NotStarted::NoHostThread,
                    )),
                }
            }
            loop {
                if running.is_empty() && self.spawns.close_if_idle() {
                    break;
                }
                // The loop keeps a sender (`tx`): this waits for an event.
                let Ok(event) = rx.recv() else { break };
                match event {
                    RunEvent::Spawn(req) => {
                        let (thread, domain, entry) = (req.thread, req.domain, req.entry);
                        let start = self.start_name(domain, entry);
                        match start_host_thread(s, thread, start, &tx, move || {
                            self.run_spawned(req)
                        }) {
                            Some(handle) => {
                                let spawned_in = Some(domain);
                                running.insert(thread, Running { handle, spawned_in });
                            }
                            None => {
                                self.release_spawn(domain);
                                let out = ThreadOutcome::not_started(
                                    thread,
                                    self.start_name(domain, entry),
                                    NotStarted::NoHostThread,
                                );
                                let result = out.result.clone();
                                kept.push_spawned(out, &result);
                            }
                        }
                    }
                    RunEvent::Ended(thread) => {
                        if let Some(r) = running.remove(&thread) {
                            self.reap(thread, r, &mut kept);
                        }
                    }
                }
            }
            // Only if the queue broke: join whatever is left.
            for (thread, r) in running.drain() {
                self.reap(thread, r, &mut kept);
            }
        });
        self.spawns.close();
        for d in &self.domains {
            d.flush_log_summaries();
        }
        // Nothing is queued once the gate closed idle; a request left by a
        // broken loop is reported, and its quota given back.
        for event in rx.try_iter() {
            if let RunEvent::Spawn(req) = event {
                self.release_spawn(req.domain);
                let out = ThreadOutcome::not_started(
                    req.thread,
                    self.start_name(req.domain, req.entry),
                    NotStarted::NoHostThread,
                );
                let result = out.result.clone();
                kept.push_spawned(out, &result);
            }
        }
        let (mut outcomes, tally) = kept.into_parts();
        if tally.forgotten > 0 {
            log::info!(
                "{} spawned threads ended ({} succeeded, {} faulted, {} not started, {} other); \
                 the outcomes of all but the last {} are summarised only",
                tally.ended,
                tally.succeeded,
                tally.faulted,
                tally.not_started,
                tally.other,
                crate::thread::spawns::KEPT_SPAWNED_OUTCOMES
            );
        }
        if let Ok(mut t) = self.spawn_tally.lock() {
            *t = tally;
        }
        outcomes.sort_by_key(|o| o.thread);
        outcomes
    }

    /// Join an ended host thread, keep its outcome and give back its quota.
    fn reap(&self, thread: ThreadId, r: Running<'_>, kept: &mut KeptOutcomes<ThreadOutcome>) {
        let out = r.handle.join().unwrap_or_else(|_| {
            ThreadOutcome::not_started(thread, "?".into(), NotStarted::Panicked)
        });
        match r.spawned_in {
            Some(domain) => {
                self.release_spawn(domain);
                let result = out.result.clone();
                kept.push_spawned(out, &result);
            }
            None => kept.push_fixed(out),
        }
    }
}

impl Engine for Core {
    fn domain(&self, id: DomainId) -> Option<&Domain> {
        self.domains.get(id.index())
    }

    fn capability(&self, caller: DomainId, slot: Slot) -> Option<Capability> {
        self.caps.get(caller, slot)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn observer(&self) -> Option<&dyn CallObserver> {
        self.observer.as_deref()
    }

    fn profiling(&self) -> bool {
        self.profile.load(Ordering::Relaxed)
    }

    fn watchdog(&self) -> Option<&Watchdog> {
        Some(&self.watchdog)
    }

    fn window(&self) -> Option<&StackWindow> {
        self.window.as_ref()
    }

    fn window_mapping(&self) -> Mapping {
        self.spec.window.mapping
    }

    fn mapped_reach(&self, domain: DomainId) -> &[DomainId] {
        self.mapped_reach
            .get(domain.index())
            .map_or(&[], Vec::as_slice)
    }

    fn spawn(&self, domain: &Domain, entry: u64, arg: u64) -> Result<ThreadId, ErrorCode> {
        let entry = u32::try_from(entry)
            .ok()
            .map(EntryIndex::new)
            .filter(|e| domain.has_entry(*e))
            .ok_or(ErrorCode::NoSuchEntry)?;
        // A thread that will need a window slot and finds none would only
        // fail to start later: answered now (a slot may still run out
        // between this check and the start; the thread then ends
        // `NotStarted::NoWindowSlot`).
        let needs_slot = !self.mapped_reach(domain.id).is_empty();
        if needs_slot && self.window.as_ref().is_some_and(|w| w.free_slots() == 0) {
            return Err(ErrorCode::NoStack);
        }
        let mut thread = None;
        let make = || {
            domain.spawn_begin()?;
            let t = self.next_thread();
            thread = Some(t);
            Ok(RunEvent::Spawn(SpawnRequest {
                thread: t,
                domain: domain.id,
                entry,
                arg,
            }))
        };
        let admitted = self.spawns.admit(make, |_| domain.spawn_end());
        if let Err(code) = admitted {
            log::debug!("[{}] spawn refused: {code:?}", domain.name);
        }
        admitted?;
        thread.ok_or(ErrorCode::Internal)
    }

    fn forward(&self, callee: DomainId, call: Handoff, held: u32) -> Result<(), ErrorCode> {
        self.inboxes.send(callee, call, held)
    }
}

/// A booted system: the domains, the servers of message-mode domains and
/// everything threads need to run. Dropping it stops the servers (with a
/// bounded wait) and then the VMs.
pub struct System {
    // Declared first: the servers stop (and let go of the core) before the
    // core's domains go. Only its `Drop` uses it.
    #[expect(dead_code, reason = "held for its Drop, which stops the servers")]
    servers: ServerThreads,
    /// Runs every domain reset, off the callers' paths; stopped by `Drop`.
    restarter: Restarter,
    core: Arc<Core>,
}

impl Drop for System {
    /// Stop the restarter (after the reset in progress, bounded by its
    /// `restart_ms`) and the watchdog, each with a bounded wait; then the
    /// servers and the VMs go with the fields.
    fn drop(&mut self) {
        self.restarter.stop();
        self.core.watchdog.stop();
    }
}

impl System {
    /// Boot every domain of `spec` (in order), resolve capabilities and
    /// start the server threads of message-mode domains.
    pub fn boot(
        spec: manifest::System,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, SystemError> {
        let core = Arc::new(Core::boot(spec, observer)?);
        let mut servers = ServerThreads::default();
        for d in core.domains.iter().filter(|d| d.ipc == Ipc::Message) {
            let id = d.id;
            servers.start(&core.inboxes, id, d.stack_capacity(), || {
                let core = Arc::clone(&core);
                let handler: Handler = Box::new(move |call: &Handoff| match core.domain(id) {
                    Some(d) => Chain::serve(&*core, d, call),
                    None => crate::thread::handoff::Reply::Refused(ErrorCode::Internal),
                });
                handler
            });
        }
        let resets = Arc::clone(&core);
        let restarter = Restarter::start(
            &core.watchdog,
            Box::new(move |id, meter| {
                if let Some(d) = resets.domain(id) {
                    d.restart(meter);
                }
            }),
        )?;
        for d in &core.domains {
            d.set_restarter(restarter.jobs());
        }
        Ok(Self {
            servers,
            restarter,
            core,
        })
    }

    /// The threads running now, with the domains each is in (for a report
    /// when a run overstays its time limit).
    pub fn running(&self) -> Vec<RunningThread> {
        let chains: std::collections::HashMap<u64, Vec<u32>> =
            self.core.watchdog.listed().into_iter().collect();
        let live = self.core.live.lock().map(|l| l.clone()).unwrap_or_default();
        live.into_iter()
            .map(|(thread, start)| RunningThread {
                thread,
                chain: chains
                    .get(&thread.raw())
                    .map(|ds| {
                        ds.iter()
                            .map(|d| {
                                self.core
                                    .domain(DomainId::new(*d))
                                    .map_or_else(|| format!("#{d}"), |d| d.name.clone())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                start,
            })
            .collect()
    }

    /// Stop every running thread at its next exit (each ends as if its
    /// frames had been stopped; nothing is quarantined): for a run that
    /// overstayed its time limit.
    pub fn cancel(&self) {
        self.core.watchdog.cancel_all();
    }

    /// What it was booted from.
    pub fn spec(&self) -> &manifest::System {
        &self.core.spec
    }

    /// Domain `id`.
    pub fn domain(&self, id: DomainId) -> Option<&Domain> {
        self.core.domain(id)
    }

    /// The domain called `name`.
    pub fn domain_by_name(&self, name: &str) -> Option<&Domain> {
        self.core.domain_by_name(name)
    }

    /// All domains, in manifest order.
    pub fn domains(&self) -> &[Domain] {
        &self.core.domains
    }

    /// Capability `slot` of domain `caller`.
    pub fn capability(&self, caller: DomainId, slot: Slot) -> Option<Capability> {
        self.core.caps.get(caller, slot)
    }

    /// The engine's counters.
    pub fn counters(&self) -> &Counters {
        &self.core.counters
    }

    /// Stack-window slots not lent to a thread right now (`None`: no
    /// domain is `mapped`, so there is no window): every slot comes back
    /// when its thread ends.
    pub fn window_free_slots(&self) -> Option<usize> {
        self.core.window.as_ref().map(StackWindow::free_slots)
    }

    /// Run one thread from `entry` of `domain` to its end, on this host thread.
    pub fn run_thread(&self, domain: &str, entry: &str, args: &[u64]) -> ThreadOutcome {
        let thread = self.core.next_thread();
        let located = self
            .domain_by_name(domain)
            .and_then(|d| Some((d.id, d.entry_index(entry)?)));
        match located {
            Some((dom, idx)) => self.core.run_chain(thread, dom, idx, scalars_of(args)),
            None => ThreadOutcome::not_started(
                thread,
                format!("{domain}.{entry}"),
                NotStarted::NoSuchEntry {
                    domain: domain.to_owned(),
                    entry: entry.to_owned(),
                },
            ),
        }
    }

    /// Run the manifest's threads, each on its own host thread, and every
    /// thread they spawn, until all have ended. Outcomes by thread id: every
    /// manifest thread's and the last [`KEPT_SPAWNED_OUTCOMES`] spawned
    /// threads' (all are counted in [`System::spawn_tally`]).
    ///
    /// [`KEPT_SPAWNED_OUTCOMES`]: crate::thread::spawns::KEPT_SPAWNED_OUTCOMES
    pub fn run(&self) -> Vec<ThreadOutcome> {
        self.core.run()
    }

    /// How every spawned thread of the last [`System::run`] ended, including
    /// those whose outcomes were not kept.
    pub fn spawn_tally(&self) -> SpawnTally {
        self.core.spawn_tally.lock().map(|t| *t).unwrap_or_default()
    }

    /// Log VMM work per call+return in every chain started from now on.
    pub fn set_profiling(&self, on: bool) {
        self.core.profile.store(on, Ordering::Relaxed);
    }

    /// Take the copy samples (one per call+return) logged so far.
    pub fn take_copy_samples(&self) -> Vec<CopySample> {
        self.core
            .copies
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Take the VMM-work samples (cycles per call+return) logged so far.
    pub fn take_work_samples(&self) -> Vec<u64> {
        self.core
            .work
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// The latest fault of every domain that ever faulted.
    pub fn faults(&self) -> Vec<FaultReport> {
        self.core.domains.iter().filter_map(Domain::fault).collect()
    }

    /// The latency samples the guests recorded, by callee entry.
    pub fn latency(&self) -> LatencySummary {
        LatencySummary::collect(&self.core.domains, &self.core.caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capability the lookup cannot resolve fails the boot; it used to be
    /// dropped, so the next slot answered for it.
    #[test]
    fn an_unresolved_capability_fails_the_boot() {
        let spec = manifest::System::parse(
            "[[domain]]\nname = \"a\"\nimage = \"testguest\"\ncapabilities = [\"b.null\", \"b.echo\"]\n\
             [[domain]]\nname = \"b\"\nimage = \"testguest\"\nexports = [\"null\", \"echo\"]\n",
            None,
        )
        .unwrap();
        let echo_only = |domain: usize, entry: &str| {
            (entry == "echo").then(|| Capability {
                domain: DomainId::from_index(domain).unwrap(),
                entry: EntryIndex::new(1),
            })
        };
        let err = resolve_caps(&spec, echo_only).unwrap_err();
        assert!(
            matches!(&err, SystemError::UnresolvedCapability { domain, capability } if domain == "a" && capability == "#1.null"),
            "{err:?}"
        );
        let all = |domain: usize, _: &str| {
            Some(Capability {
                domain: DomainId::from_index(domain).unwrap(),
                entry: EntryIndex::new(0),
            })
        };
        let caps = resolve_caps(&spec, all).unwrap();
        assert!(caps.get(DomainId::new(0), Slot::new(1)).is_some());
        assert!(caps.get(DomainId::new(0), Slot::new(2)).is_none());
    }
}
