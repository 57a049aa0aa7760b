//! A running system: the domains of a manifest booted as KVM VMs, their
//! capabilities resolved to entries, the servers of message-mode domains,
//! and the threads that migrate between them. This is where the layers
//! below are wired together: `Core` implements the migration engine's
//! `Engine` context, and message-mode servers get a handler that runs a
//! served chain.

use crate::domain::restarter::{Restarter, RestarterError};
use crate::domain::{BootError, Domain};
use crate::fault::FaultReport;
use crate::ids::{DomainId, EntryIndex, Slot, ThreadId};
use crate::kvm::{self, KvmError};
use crate::manifest::{self, ImageSource, Ipc};
use crate::message::{Handler, Inboxes, ServerThreads};
use crate::migrate::{Chain, Engine, ThreadRun};
use crate::observe::CallObserver;
use crate::stats::LatencySummary;
use crate::thread::caps::{CapTable, Capability};
use crate::thread::counters::Counters;
use crate::thread::handoff::{Handoff, ReplySlot};
use crate::thread::profile::CopySample;
use crate::thread::{NotStarted, ThreadResult, ThreadTime};
use crate::watch::{WatchError, Watchdog};
use shared_abi::{ErrorCode, MAX_SCALARS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn scalars_of(args: &[u64]) -> [u64; MAX_SCALARS] {
    let mut scalars = [0u64; MAX_SCALARS];
    scalars.iter_mut().zip(args).for_each(|(s, a)| *s = *a);
    scalars
}

type HostThread<'scope> = (
    ThreadId,
    std::thread::ScopedJoinHandle<'scope, ThreadOutcome>,
);

/// Run `job` (migrating thread `thread`) on a host thread of its own.
fn start_host_thread<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    thread: ThreadId,
    job: impl FnOnce() -> ThreadOutcome + Send + 'scope,
) -> Option<HostThread<'scope>> {
    match std::thread::Builder::new()
        .name(format!("ferry-t{}", thread.raw()))
        .spawn_scoped(s, job)
    {
        Ok(h) => Some((thread, h)),
        Err(e) => {
            log::error!("cannot start a host thread for {thread}: {e}");
            None
        }
    }
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
    #[error("cannot start the CPU-budget watchdog")]
    Watchdog(#[source] WatchError),
    #[error(transparent)]
    Restarter(#[from] RestarterError),
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
    /// Set while [`System::run`] runs: where `Spawn` sends new threads.
    spawner: Mutex<Option<Sender<SpawnRequest>>>,
    inboxes: Inboxes,
    /// The CPU-budget watchdog every chain registers with.
    watchdog: Arc<Watchdog>,
    /// Threads running now: id → where they started.
    live: Mutex<std::collections::BTreeMap<ThreadId, String>>,
}

fn image_bytes(
    spec: &manifest::DomainSpec,
) -> Result<(String, std::borrow::Cow<'static, [u8]>), SystemError> {
    match &spec.image {
        ImageSource::Builtin(name) => crate::images::builtin(name)
            .map(|b| (name.clone(), b.into()))
            .ok_or_else(|| SystemError::NoSuchImage {
                domain: spec.name.clone(),
                image: name.clone(),
            }),
        ImageSource::File(path) => std::fs::read(path)
            .map(|b| (path.display().to_string(), b.into()))
            .map_err(|source| SystemError::ImageFile {
                domain: spec.name.clone(),
                path: path.clone(),
                source,
            }),
    }
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
        let images = spec
            .domains
            .iter()
            .map(image_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        let watchdog = Arc::new(Watchdog::start().map_err(SystemError::Watchdog)?);
        let kvm = kvm::open()?;
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(SystemError::Cpuid)?;
        let mut domains = Vec::with_capacity(spec.domains.len());
        let mut inboxes = Inboxes::default();
        // Ids count up from 0 in manifest order (the manifest caps the count
        // far below u32::MAX), so no conversion can fail.
        let ids = (0u32..).map(DomainId::new);
        for (id, (d, (image_name, bytes))) in ids.zip(spec.domains.iter().zip(&images)) {
            domains.push(Domain::boot(&kvm, &cpuid, id, d, image_name, bytes)?);
            if d.ipc == Ipc::Message {
                inboxes.open(id, &d.name, d.stack_policy);
            }
        }
        let caps = resolve_caps(&spec, |domain, entry| {
            let target = domains.get(domain)?;
            Some(Capability {
                domain: target.id,
                entry: target.entry_index(entry)?,
            })
        })?;
        Ok(Self {
            spec,
            domains,
            caps,
            observer,
            counters: Counters::default(),
            next_thread: AtomicU64::new(1),
            spawner: Mutex::new(None),
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

    /// Run a spawned thread and give its quota back when it ends.
    fn run_spawned(&self, req: SpawnRequest) -> ThreadOutcome {
        let out = self.run_chain(req.thread, req.domain, req.entry, scalars_of(&[req.arg]));
        if let Some(d) = self.domain(req.domain) {
            d.spawn_end();
        }
        out
    }

    /// Where manifest thread `t` starts, if its domain and entry exist.
    fn locate(&self, t: &manifest::ThreadSpec) -> Option<Located> {
        let d = self.domains.get(t.domain)?;
        Some((d.id, d.entry_index(&t.entry)?, scalars_of(&t.args)))
    }

    fn run(&self) -> Vec<ThreadOutcome> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        if let Ok(mut s) = self.spawner.lock() {
            *s = Some(tx);
        }
        let mut outcomes = Vec::new();
        std::thread::scope(|s| {
            let mut handles: Vec<HostThread<'_>> = Vec::new();
            for t in &self.spec.threads {
                match self.locate(t) {
                    Some((dom, idx, scalars)) => {
                        let thread = self.next_thread();
                        match start_host_thread(s, thread, move || {
                            self.run_chain(thread, dom, idx, scalars)
                        }) {
                            Some(h) => handles.push(h),
                            None => outcomes.push(ThreadOutcome::not_started(
                                thread,
                                self.start_name(dom, idx),
                                NotStarted::NoHostThread,
                            )),
                        }
                    }
                    None => outcomes.push(ThreadOutcome::not_started(
                        self.next_thread(),
                        format!("#{}.{}", t.domain, t.entry),
                        NotStarted::NoSuchEntry {
                            domain: format!("#{}", t.domain),
                            entry: t.entry.clone(),
                        },
                    )),
                }
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
                let (thread, domain, entry) = (req.thread, req.domain, req.entry);
                match start_host_thread(s, thread, move || self.run_spawned(req)) {
                    Some(h) => handles.push(h),
                    None => {
                        if let Some(d) = self.domain(domain) {
                            d.spawn_end();
                        }
                        outcomes.push(ThreadOutcome::not_started(
                            thread,
                            self.start_name(domain, entry),
                            NotStarted::NoHostThread,
                        ));
                    }
                }
            }
            for (thread, h) in handles {
                outcomes.push(h.join().unwrap_or_else(|_| {
                    ThreadOutcome::not_started(thread, "?".into(), NotStarted::Panicked)
                }));
            }
        });
        if let Ok(mut s) = self.spawner.lock() {
            *s = None;
        }
        outcomes.sort_by_key(|o| o.thread);
        outcomes
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

    fn spawn(&self, domain: &Domain, entry: u64, arg: u64) -> Result<ThreadId, ErrorCode> {
        let entry = u32::try_from(entry)
            .ok()
            .map(EntryIndex::new)
            .filter(|e| domain.has_entry(*e))
            .ok_or(ErrorCode::NoSuchEntry)?;
        let Some(tx) = self.spawner.lock().ok().and_then(|g| g.clone()) else {
            log::warn!("[{}] spawn outside `run`: refused", domain.name);
            return Err(ErrorCode::QuotaExceeded);
        };
        domain.spawn_begin()?;
        let thread = self.next_thread();
        let req = SpawnRequest {
            thread,
            domain: domain.id,
            entry,
            arg,
        };
        if tx.send(req).is_err() {
            domain.spawn_end();
            return Err(ErrorCode::QuotaExceeded);
        }
        Ok(thread)
    }

    fn forward(
        &self,
        callee: DomainId,
        call: Handoff,
        held: u32,
        reply: &Arc<ReplySlot>,
    ) -> Result<(), ErrorCode> {
        self.inboxes.send(callee, call, held, reply)
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
    /// thread they spawn, until all have ended. Outcomes by thread id.
    pub fn run(&self) -> Vec<ThreadOutcome> {
        self.core.run()
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
