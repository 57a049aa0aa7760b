//! A running system: the domains of a manifest booted as KVM VMs, their
//! capabilities resolved to entry indices, and the threads that migrate
//! between them.

use crate::domain::{BootError, Domain};
use crate::fault::FaultReport;
use crate::kvm::{self, KvmError};
use crate::manifest::{self, ImageSource};
use crate::migrate::{Chain, CopySample, Step, ThreadResult, ThreadTime};
use crate::observe::CallObserver;
use crate::stats::LatencySummary;
use shared_abi::{ErrorCode, MAX_SCALARS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn scalars_of(args: &[u64]) -> [u64; MAX_SCALARS] {
    let mut scalars = [0u64; MAX_SCALARS];
    scalars.iter_mut().zip(args).for_each(|(s, a)| *s = *a);
    scalars
}

type HostThread<'scope> = (u64, std::thread::ScopedJoinHandle<'scope, ThreadOutcome>);

/// Run `job` (migrating thread `thread`) on a host thread of its own.
fn start_host_thread<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    handles: &mut Vec<HostThread<'scope>>,
    thread: u64,
    job: impl FnOnce() -> ThreadOutcome + Send + 'scope,
) {
    match std::thread::Builder::new()
        .name(format!("ferry-t{thread}"))
        .spawn_scoped(s, job)
    {
        Ok(h) => handles.push((thread, h)),
        Err(e) => log::error!("cannot start a host thread for thread {thread}: {e}"),
    }
}

/// Why a system could not start.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// KVM is not usable.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// KVM refused an operation before any domain existed.
    #[error("KVM: {0}")]
    KvmOp(kvm_ioctls::Error),
    /// A domain's image could not be found or read.
    #[error("domain `{domain}`: {why}")]
    Image {
        /// The domain.
        domain: String,
        /// Why.
        why: String,
    },
    /// A domain failed to boot.
    #[error(transparent)]
    Boot(#[from] BootError),
}

/// A capability resolved to the callee's entry index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Callee domain id.
    pub domain: u32,
    /// Entry index in the callee's table.
    pub entry: u32,
}

/// Counters the engine keeps (relaxed atomics: cheap, and exact once the
/// threads have been joined).
#[derive(Debug, Default)]
pub struct Counters {
    calls: AtomicU64,
    returns: AtomicU64,
    faults: AtomicU64,
    refused: [AtomicU64; 32],
}

impl Counters {
    pub(crate) fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn ret(&self) {
        self.returns.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn fault(&self) {
        self.faults.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn refuse(&self, code: ErrorCode) {
        if let Some(c) = self.refused.get(code as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Calls that entered their callee.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
    /// Returns that came back to a caller.
    pub fn returns(&self) -> u64 {
        self.returns.load(Ordering::Relaxed)
    }
    /// Faults (each kills a domain, or hits an already dead one).
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }
    /// Calls refused with `code`.
    pub fn refused(&self, code: ErrorCode) -> u64 {
        self.refused
            .get(code as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// How one thread ended.
#[derive(Clone, Debug)]
pub struct ThreadOutcome {
    /// The thread's id.
    pub thread: u64,
    /// `domain.entry` it started in.
    pub start: String,
    /// How it ended.
    pub result: ThreadResult,
    /// Where its time went, across every domain it visited.
    pub time: ThreadTime,
}

impl ThreadOutcome {
    /// One line for people: how it ended and where its time went
    /// (milliseconds at `tsc_khz`, the host TSC rate).
    pub fn summary(&self, tsc_khz: u32) -> String {
        let how = match &self.result {
            ThreadResult::Returned { status: 0, results } => format!("returned {results:?}"),
            ThreadResult::Returned { status, .. } => format!("returned status {status:#x}"),
            ThreadResult::Exited { code } => format!("exited with code {code}"),
            ThreadResult::Faulted(report) => format!("faulted: {report}"),
            ThreadResult::NotStarted(why) => format!("did not start: {why}"),
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
            "thread {} from {}: {how}; {} calls, {} KVM_RUNs, {} in guests and exits, {} in the VMM",
            self.thread,
            self.start,
            t.calls,
            t.runs,
            ms(t.guest_cycles),
            ms(t.vmm_cycles)
        )
    }
}

/// A thread a guest asked for with `Spawn`.
struct SpawnRequest {
    thread: u64,
    domain: u32,
    entry: u32,
    arg: u64,
}

/// The shared state of a booted system: its domains, capabilities,
/// observer and counters. Migrating threads and message-mode servers all
/// work on it; [`System`] is the handle that owns it.
pub struct Core {
    /// What it was booted from.
    pub spec: manifest::System,
    domains: Vec<Domain>,
    caps: Vec<Vec<Capability>>,
    pub(crate) observer: Option<Arc<dyn CallObserver>>,
    /// The engine's counters.
    pub counters: Counters,
    next_thread: AtomicU64,
    /// Whether chains log VMM work per call+return (for `ferry bench`).
    profile: std::sync::atomic::AtomicBool,
    /// VMM-work samples flushed by profiled chains when they end.
    work: Mutex<Vec<u64>>,
    /// Copy samples flushed by profiled chains when they end.
    copies: Mutex<Vec<CopySample>>,
    /// Set while [`Core::run`] runs: where `Spawn` sends new threads.
    spawner: Mutex<Option<Sender<SpawnRequest>>>,
}

fn image_bytes(
    spec: &manifest::DomainSpec,
) -> Result<(String, std::borrow::Cow<'static, [u8]>), SystemError> {
    match &spec.image {
        ImageSource::Builtin(name) => crate::images::builtin(name)
            .map(|b| (name.clone(), b.into()))
            .ok_or_else(|| SystemError::Image {
                domain: spec.name.clone(),
                why: format!(
                "no built-in image `{name}` (built-in: {}; give a path containing `/` for a file)",
                crate::images::names().collect::<Vec<_>>().join(", ")
            ),
            }),
        ImageSource::File(path) => std::fs::read(path)
            .map(|b| (path.display().to_string(), b.into()))
            .map_err(|e| SystemError::Image {
                domain: spec.name.clone(),
                why: format!("cannot read image {}: {e}", path.display()),
            }),
    }
}

impl Core {
    /// Boot every domain of `spec` (in order) and resolve capabilities.
    fn boot(
        spec: manifest::System,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, SystemError> {
        let images = spec
            .domains
            .iter()
            .map(image_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        let kvm = kvm::open()?;
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(SystemError::KvmOp)?;
        let mut domains = Vec::with_capacity(spec.domains.len());
        for (i, (d, (image_name, bytes))) in spec.domains.iter().zip(&images).enumerate() {
            domains.push(Domain::boot(&kvm, &cpuid, i as u32, d, image_name, bytes)?);
        }
        let caps = spec
            .domains
            .iter()
            .map(|d| {
                d.capabilities
                    .iter()
                    .filter_map(|c| {
                        let target = domains.get(c.domain)?;
                        let entry = target.entry_index(&c.entry)?;
                        Some(Capability {
                            domain: c.domain as u32,
                            entry,
                        })
                    })
                    .collect()
            })
            .collect();
        Ok(Self {
            spec,
            domains,
            caps,
            observer,
            counters: Counters::default(),
            next_thread: AtomicU64::new(1),
            spawner: Mutex::new(None),
            profile: std::sync::atomic::AtomicBool::new(false),
            work: Mutex::new(Vec::new()),
            copies: Mutex::new(Vec::new()),
        })
    }

    /// Domain `id`.
    pub fn domain(&self, id: u32) -> Option<&Domain> {
        self.domains.get(id as usize)
    }

    /// The domain called `name`.
    pub fn domain_by_name(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// All domains.
    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// Capability `slot` of domain `caller`.
    pub fn capability(&self, caller: u32, slot: u32) -> Option<Capability> {
        self.caps.get(caller as usize)?.get(slot as usize).copied()
    }

    /// Run one thread from `entry` of `domain` to its end, on this host thread.
    pub fn run_thread(&self, domain: &str, entry: &str, args: &[u64]) -> ThreadOutcome {
        let thread = self.next_thread.fetch_add(1, Ordering::Relaxed);
        let located = self
            .domain_by_name(domain)
            .and_then(|d| d.entry_index(entry).map(|i| (d.id, i)));
        match located {
            Some((dom, idx)) => self.run_chain(thread, dom, idx, scalars_of(args)),
            None => ThreadOutcome {
                thread,
                start: format!("{domain}.{entry}"),
                result: ThreadResult::NotStarted("no such domain or entry".into()),
                time: ThreadTime::default(),
            },
        }
    }

    fn run_chain(
        &self,
        thread: u64,
        domain: u32,
        entry: u32,
        scalars: [u64; MAX_SCALARS],
    ) -> ThreadOutcome {
        let start = self.domain(domain).map_or_else(
            || "?".to_owned(),
            |d| {
                format!(
                    "{}.{}",
                    d.name,
                    d.entries.get(entry as usize).map_or("?", String::as_str)
                )
            },
        );
        let mut chain = match Chain::start(self, thread, domain, entry, scalars) {
            Ok(c) => c,
            Err(why) => {
                return ThreadOutcome {
                    thread,
                    start,
                    result: ThreadResult::NotStarted(why),
                    time: ThreadTime::default(),
                };
            }
        };
        loop {
            if let Step::Done(result) = chain.step(self) {
                if !chain.work_samples().is_empty() {
                    if let Ok(mut w) = self.work.lock() {
                        w.extend_from_slice(chain.work_samples());
                    }
                }
                if !chain.copy_samples().is_empty() {
                    if let Ok(mut c) = self.copies.lock() {
                        c.extend_from_slice(chain.copy_samples());
                    }
                }
                return ThreadOutcome {
                    thread,
                    start,
                    result,
                    time: chain.time(),
                };
            }
        }
    }

    /// Start a thread in `entry` (an index) of `domain` on behalf of a guest.
    pub(crate) fn spawn(&self, domain: &Domain, entry: u64, arg: u64) -> Result<u64, ErrorCode> {
        let entry = u32::try_from(entry)
            .ok()
            .filter(|e| (*e as usize) < domain.entries.len())
            .ok_or(ErrorCode::NoSuchEntry)?;
        let Some(tx) = self.spawner.lock().ok().and_then(|g| g.clone()) else {
            log::warn!("[{}] spawn outside `run`: refused", domain.name);
            return Err(ErrorCode::QuotaExceeded);
        };
        domain.spawn_begin()?;
        let thread = self.next_thread.fetch_add(1, Ordering::Relaxed);
        if tx
            .send(SpawnRequest {
                thread,
                domain: domain.id,
                entry,
                arg,
            })
            .is_err()
        {
            domain.spawn_end();
            return Err(ErrorCode::QuotaExceeded);
        }
        Ok(thread)
    }

    /// Run a spawned thread and give its quota back when it ends.
    fn run_spawned(&self, req: SpawnRequest) -> ThreadOutcome {
        let out = self.run_chain(req.thread, req.domain, req.entry, scalars_of(&[req.arg]));
        if let Some(d) = self.domain(req.domain) {
            d.spawn_end();
        }
        out
    }

    /// Run the manifest's threads, each on its own host thread, and every
    /// thread they spawn, until all have ended. Outcomes by thread id.
    pub fn run(&self) -> Vec<ThreadOutcome> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        if let Ok(mut s) = self.spawner.lock() {
            *s = Some(tx);
        }
        let mut outcomes = std::thread::scope(|s| {
            let mut handles = Vec::new();
            for t in &self.spec.threads {
                let located = self
                    .domain(t.domain as u32)
                    .and_then(|d| d.entry_index(&t.entry).map(|i| (d.id, i)));
                let Some((dom, idx)) = located else { continue };
                let thread = self.next_thread.fetch_add(1, Ordering::Relaxed);
                let scalars = scalars_of(&t.args);
                start_host_thread(s, &mut handles, thread, move || {
                    self.run_chain(thread, dom, idx, scalars)
                });
            }
            loop {
                let req = match rx.recv_timeout(Duration::from_millis(5)) {
                    Ok(req) => req,
                    Err(RecvTimeoutError::Disconnected) => break,
                    // Anything sent before the last thread finished is queued by now.
                    Err(RecvTimeoutError::Timeout) => match rx.try_recv() {
                        Ok(req) => req,
                        Err(_) if handles.iter().all(|(_, h)| h.is_finished()) => break,
                        Err(_) => continue,
                    },
                };
                start_host_thread(s, &mut handles, req.thread, move || self.run_spawned(req));
            }
            handles
                .into_iter()
                .map(|(thread, h)| {
                    h.join().unwrap_or_else(|_| ThreadOutcome {
                        thread,
                        start: "?".into(),
                        result: ThreadResult::NotStarted("host thread panicked".into()),
                        time: ThreadTime::default(),
                    })
                })
                .collect::<Vec<_>>()
        });
        if let Ok(mut s) = self.spawner.lock() {
            *s = None;
        }
        outcomes.sort_by_key(|o| o.thread);
        outcomes
    }

    /// Log VMM work per call+return in every chain started from now on.
    pub fn set_profiling(&self, on: bool) {
        self.profile.store(on, Ordering::Relaxed);
    }

    /// Whether chains log VMM work.
    pub fn profiling(&self) -> bool {
        self.profile.load(Ordering::Relaxed)
    }

    /// Take the copy samples (one per call+return) logged so far.
    pub fn take_copy_samples(&self) -> Vec<CopySample> {
        self.copies
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Take the VMM-work samples (cycles per call+return) logged so far.
    pub fn take_work_samples(&self) -> Vec<u64> {
        self.work
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// The latest fault of every domain that ever faulted.
    pub fn faults(&self) -> Vec<FaultReport> {
        self.domains.iter().filter_map(Domain::fault).collect()
    }

    /// The latency samples the guests recorded, by callee entry.
    pub fn latency(&self) -> LatencySummary {
        LatencySummary::collect(self)
    }
}

/// A booted system: owns the [`Core`] and the threads that serve
/// message-mode domains; dropping it stops them. Derefs to [`Core`], where
/// running threads, counters and domains are.
pub struct System {
    core: Arc<Core>,
}

impl System {
    /// Boot every domain of `spec` (in order), resolve capabilities and
    /// start the server threads of message-mode domains.
    pub fn boot(
        spec: manifest::System,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, SystemError> {
        let core = Arc::new(Core::boot(spec, observer)?);
        for d in core.domains() {
            let Some(inbox) = &d.inbox else { continue };
            for n in 0..inbox.servers() {
                let (core2, id) = (Arc::clone(&core), d.id);
                let spawned = std::thread::Builder::new()
                    .name(format!("ferry-{}-server{n}", d.name))
                    .spawn(move || crate::message::serve(core2, id));
                if let Err(e) = spawned {
                    log::error!("cannot start server {n} of `{}`: {e}", d.name);
                }
            }
        }
        Ok(Self { core })
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // Servers hold the core; they let go when told to stop (a server
        // stuck in a guest that never returns is left to process exit).
        for d in self.core.domains() {
            if let Some(inbox) = &d.inbox {
                inbox.stop_all();
            }
        }
    }
}

impl std::ops::Deref for System {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}
