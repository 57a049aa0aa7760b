//! A running system: the domains of a manifest booted as KVM VMs, their
//! capabilities resolved to entry indices, and the threads that migrate
//! between them.

use crate::domain::{BootError, Domain};
use crate::fault::FaultReport;
use crate::kvm::{self, KvmError};
use crate::manifest::{self, ImageSource};
use crate::migrate::{Chain, Step, ThreadResult};
use crate::observe::CallObserver;
use crate::stats::LatencySummary;
use shared_abi::{ErrorCode, MAX_SCALARS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    refused: [AtomicU64; 16],
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
}

/// A booted system.
pub struct System {
    /// What it was booted from.
    pub spec: manifest::System,
    domains: Vec<Domain>,
    caps: Vec<Vec<Capability>>,
    pub(crate) observer: Option<Arc<dyn CallObserver>>,
    /// The engine's counters.
    pub counters: Counters,
    next_thread: AtomicU64,
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

impl System {
    /// Boot every domain of `spec` (in order) and resolve capabilities.
    pub fn boot(
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
                        let entry = target.entries.iter().position(|e| *e == c.entry)?;
                        Some(Capability {
                            domain: c.domain as u32,
                            entry: entry as u32,
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
        let start = format!("{domain}.{entry}");
        let mut scalars = [0u64; MAX_SCALARS];
        for (s, a) in scalars.iter_mut().zip(args) {
            *s = *a;
        }
        let located = self.domain_by_name(domain).and_then(|d| {
            d.entries
                .iter()
                .position(|e| e == entry)
                .map(|i| (d.id, i as u32))
        });
        let Some((dom, idx)) = located else {
            return ThreadOutcome {
                thread,
                start,
                result: ThreadResult::NotStarted("no such domain or entry".into()),
            };
        };
        let mut chain = match Chain::start(self, thread, dom, idx, scalars) {
            Ok(c) => c,
            Err(why) => {
                return ThreadOutcome {
                    thread,
                    start,
                    result: ThreadResult::NotStarted(why),
                }
            }
        };
        loop {
            if let Step::Done(result) = chain.step(self) {
                return ThreadOutcome {
                    thread,
                    start,
                    result,
                };
            }
        }
    }

    /// Run the manifest's threads, each on its own host thread, until all end.
    pub fn run(&self) -> Vec<ThreadOutcome> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .spec
                .threads
                .iter()
                .map(|t| {
                    let domain = self
                        .spec
                        .domains
                        .get(t.domain)
                        .map_or("?", |d| d.name.as_str());
                    let name = format!("ferry-{domain}.{}", t.entry);
                    let start = format!("{domain}.{}", t.entry);
                    let handle = std::thread::Builder::new()
                        .name(name)
                        .spawn_scoped(s, move || self.run_thread(domain, &t.entry, &t.args));
                    (start, handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(start, h)| {
                    match h
                        .map_err(|e| e.to_string())
                        .and_then(|h| h.join().map_err(|_| "host thread panicked".to_owned()))
                    {
                        Ok(o) => o,
                        Err(why) => ThreadOutcome {
                            thread: 0,
                            start,
                            result: ThreadResult::NotStarted(why),
                        },
                    }
                })
                .collect()
        })
    }

    /// Faults of all domains that died.
    pub fn faults(&self) -> Vec<FaultReport> {
        self.domains.iter().filter_map(Domain::fault).collect()
    }

    /// The latency samples the guests recorded, by callee entry.
    pub fn latency(&self) -> LatencySummary {
        LatencySummary::collect(self)
    }
}
