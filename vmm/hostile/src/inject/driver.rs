//! Driving one chain of a booted system: single injections checked party
//! by party, injections with a bystander caught inside the domain, and
//! storms that inject many faults per host round trip. Every method runs
//! on the calling host thread and blocks until its threads have ended, so
//! a soak can call them from a loop of its own; one [`Injector`] drives one
//! chain, one injection or storm at a time (concurrent injections into one
//! chain would make each other's answers `Restarting` or `DOMAIN_DOWN`).

use super::chain::ChainSpec;
use super::expect::{After, Bystander, Expected, Frame, GenRule, Site};
use super::wire;
use super::FaultKind;
use ferry_engine::domain::{Domain, Health};
use ferry_engine::fault::FaultReport;
use ferry_engine::ids::ThreadId;
use ferry_engine::shared_abi::layout::{IMAGE_BASE, PAGE_SIZE};
use ferry_engine::shared_abi::{pseudo_vector, ErrorCode};
use ferry_engine::system::{System, ThreadOutcome};
use ferry_engine::thread::ThreadResult;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};

/// Whose answer was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// The direct caller of the faulting domain.
    Caller,
    /// A party further up the chain (the relays and the root).
    Above,
    /// A thread caught inside the faulting domain.
    Bystander,
    /// The VMM's own record (`System::faults`).
    Vmm,
    /// The faulting domain afterwards: its health, generation, restarts.
    Domain,
    /// The next call into the faulting domain.
    NextCall,
    /// Stack and vCPU pools once every thread has left.
    Pools,
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Caller => "direct caller",
            Self::Above => "party above the direct caller",
            Self::Bystander => "bystander",
            Self::Vmm => "VMM's record",
            Self::Domain => "faulting domain",
            Self::NextCall => "next call",
            Self::Pools => "pools",
        })
    }
}

/// Why an injection could not be made or checked.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("domain `{0}` is not in the system")]
    NoDomain(String),
    #[error("depth {depth} is outside the chain (1..={links})")]
    BadDepth { depth: u32, links: u32 },
    #[error("{0} needs a chain built with ChainSpec::fragile")]
    NeedsFragile(FaultKind),
    #[error("a storm may not inject {0} (test-only) nor run on a fragile chain")]
    NotForStorms(FaultKind),
    #[error("a storm needs at least one kind")]
    NoKinds,
    #[error("`{start}` did not return success: {result}")]
    Thread { start: String, result: String },
    #[error("cannot {what} in `{domain}` at {addr:#x}")]
    Memory {
        domain: String,
        what: &'static str,
        addr: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    #[error("domain `{domain}` is still {health:?} after {} s", limit.as_secs())]
    NotSettled {
        domain: String,
        health: Health,
        limit: Duration,
    },
    #[error("the storm's tally is not finished (first word {0:#x})")]
    BadTally(u64),
    #[error("{kind} at depth {depth}: the {party} is wrong: {detail}")]
    Mismatch {
        kind: FaultKind,
        depth: u32,
        party: Party,
        detail: String,
    },
}

/// What the direct caller of the faulting domain saw, as the guest wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// `RAX` of its `Call`.
    pub status: u64,
    /// `RDI`, `RSI`, `RDX`, `R10`.
    pub regs: [u64; 4],
    /// `R8`: the callee's generation.
    pub generation: u64,
    /// The caller's domain id.
    pub observer_domain: u64,
    /// The caller's frame depth.
    pub observer_depth: u64,
}

/// What the root's own `Call` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopAnswer {
    /// `RAX`.
    pub status: u64,
    /// `RDI`, `RSI` (the results after success).
    pub results: [u64; 2],
    /// `R8`.
    pub generation: u64,
}

/// One injection as the root saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The kind (`None` for a bystander's observation).
    pub kind: Option<FaultKind>,
    /// Depth of the faulting domain.
    pub depth: u64,
    /// The guest's model of that domain's generation before (storms only).
    pub generation_before: u64,
    /// The root's answer.
    pub top: TopAnswer,
    /// The direct caller's answer.
    pub record: Record,
}

impl Observation {
    fn from_words(w: &[u64; wire::OBS_WORDS]) -> Self {
        Self {
            kind: FaultKind::from_wire(w[0]),
            depth: w[1],
            generation_before: w[2],
            top: TopAnswer {
                status: w[3],
                results: [w[4], w[5]],
                generation: w[6],
            },
            record: Record {
                status: w[7],
                regs: [w[8], w[9], w[10], w[11]],
                generation: w[12],
                observer_domain: w[13],
                observer_depth: w[14],
            },
        }
    }
}

/// One checked injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The kind.
    pub kind: FaultKind,
    /// Its depth.
    pub depth: u32,
    /// What the root saw.
    pub observed: Observation,
    /// The VMM's record of the faulting domain afterwards, if the kind
    /// leaves one.
    pub report: Option<FaultReport>,
    /// The bystander's observation, if there was one.
    pub bystander: Option<Observation>,
    /// The faulting domain's generation afterwards.
    pub generation: u64,
}

/// What one storm did, and every check that failed. A clean storm has no
/// problems.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StormReport {
    /// Its seed.
    pub seed: u64,
    /// Injections made (the generation probes included, as `None`).
    pub injected: u64,
    /// Injections by kind (index: [`FaultKind::index`]).
    pub by_kind: [u64; wire::KINDS],
    /// Injections by depth (index: depth; 0 unused).
    pub by_depth: [u64; wire::DEPTHS],
    /// Domain restarts the VMM made meanwhile (sum over the links).
    pub restarts: u64,
    /// The VMM's fault counter, before and after.
    pub vmm_faults: u64,
    /// Answers the guest judged wrong.
    pub guest_mismatches: u64,
    /// Observations the host re-judged from the guest's ring.
    pub rejudged: u64,
    /// Wall-clock time of the host round trip.
    pub elapsed: Duration,
    /// Every failed check, one sentence each.
    pub problems: Vec<String>,
}

impl StormReport {
    /// No check failed.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Injections per second of wall-clock time.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.injected as f64 / s
        } else {
            0.0
        }
    }
}

/// How long a bystander spins before giving up, in TSC cycles (seconds
/// here): a watchdog only; the host releases it within milliseconds.
const HOLD_TIMEOUT_CYCLES: u64 = 20_000_000_000;

/// One chain of a booted system, ready to inject.
pub struct Injector<'s> {
    sys: &'s System,
    spec: ChainSpec,
    /// The root, then the links by depth.
    domains: Vec<&'s Domain>,
    /// The links' image and stack layout and fault sites.
    frame: Frame,
    /// Where `hold` spins, in the links' image.
    release: u64,
    /// Longest wait for a domain's reset to finish.
    settle: Duration,
    /// One injection or storm at a time.
    busy: Mutex<()>,
}

impl<'s> Injector<'s> {
    /// Bind `spec`'s chain in `sys`: read the links' fault sites and write
    /// the expectation table into the root. Run it while the chain is idle.
    pub fn new(sys: &'s System, spec: &ChainSpec) -> Result<Self, InjectError> {
        let domains = spec
            .names()
            .into_iter()
            .map(|n| sys.domain_by_name(&n).ok_or(InjectError::NoDomain(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let link = domains.get(1).ok_or(InjectError::BadDepth {
            depth: 1,
            links: spec.links,
        })?;
        let ask = |d: &Domain, which: u64| -> Result<u64, InjectError> {
            let out = sys.run_thread(&d.name, wire::entry::SITES, &[which]);
            Ok(success(&out)?[0])
        };
        let mut sites = [0u64; 5];
        for (slot, s) in sites.iter_mut().zip(Site::ALL) {
            *slot = ask(link, s.selector())?;
        }
        let l = link.layout;
        let frame = Frame {
            image: IMAGE_BASE..l.image_end,
            guards: (
                l.stack_bottom(0) - PAGE_SIZE,
                l.stack_stride(),
                u64::from(l.stack_count),
            ),
            sites,
        };
        let release = ask(link, wire::site::RELEASE)?;
        let root = domains[0];
        let table = ask(root, wire::site::EXPECT)?;
        let bytes: Vec<u8> = frame
            .encode_table()
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        root.mem()
            .write_slice(&bytes, GuestAddress(table))
            .map_err(|source| InjectError::Memory {
                domain: root.name.clone(),
                what: "write the expectation table",
                addr: table,
                source,
            })?;
        Ok(Self {
            sys,
            spec: spec.clone(),
            domains,
            frame,
            release,
            settle: Duration::from_secs(10),
            busy: Mutex::new(()),
        })
    }

    /// The chain it drives.
    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// The domain at `depth` (0 = the root).
    pub fn domain(&self, depth: u32) -> Option<&'s Domain> {
        self.domains.get(depth as usize).copied()
    }

    /// What every party must get when `kind` is injected into this chain: a
    /// fragile chain's restarts fault, so there every restart ends `Dead`.
    pub fn expected(&self, kind: FaultKind) -> Expected {
        let mut e = kind.expected();
        if self.spec.fragile && e.restarts() {
            e.after = After::Dead;
            e.caller.generation = GenRule::Same;
        }
        e
    }

    /// Inject `kind` at `depth` and check every party: the direct caller's
    /// answer, the answers above it, the VMM's record, the domain's
    /// restart (or not) and generation, that the next call into it is
    /// served (or refused with `DomainDead`), and that every stack and
    /// vCPU of the chain is back in its pool.
    pub fn inject(&self, kind: FaultKind, depth: u32) -> Result<Injection, InjectError> {
        self.inject_checked(kind, depth, false)
    }

    /// [`Injector::inject`] with a bystander: another thread is inside the
    /// faulting domain (spinning in `hold`) when the fault happens; it is
    /// released afterwards and must get [`Expected::bystander`].
    pub fn inject_with_bystander(
        &self,
        kind: FaultKind,
        depth: u32,
    ) -> Result<Injection, InjectError> {
        self.inject_checked(kind, depth, true)
    }

    fn inject_checked(
        &self,
        kind: FaultKind,
        depth: u32,
        bystander: bool,
    ) -> Result<Injection, InjectError> {
        let _busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let target = self.target(depth)?;
        if kind == FaultKind::RestartFault && !self.spec.fragile {
            return Err(InjectError::NeedsFragile(kind));
        }
        let e = self.expected(kind);
        self.settled(target)?;
        let (gen_before, resets_before) = (target.generation(), target.resets());
        let fault_before = target.fault();
        let mismatch = |party: Party, detail: String| InjectError::Mismatch {
            kind,
            depth,
            party,
            detail,
        };

        let (out, by) = if bystander {
            std::thread::scope(|s| {
                let by = s.spawn(|| {
                    self.sys.run_thread(
                        &self.domains[0].name,
                        wire::entry::BYSTAND,
                        &[u64::from(depth), HOLD_TIMEOUT_CYCLES],
                    )
                });
                let inside = self.until(|| target.active_frames() >= 1);
                let out = inside.then(|| self.run_once(kind, depth));
                self.write_release(target)?;
                let by = by.join().map_err(|_| InjectError::Thread {
                    start: "bystand".into(),
                    result: "its host thread panicked".into(),
                })?;
                let out = out
                    .ok_or_else(|| mismatch(Party::Bystander, "never entered the domain".into()))?;
                Ok::<_, InjectError>((out, Some(by)))
            })?
        } else {
            (self.run_once(kind, depth), None)
        };
        let (obs, thread) = out?;
        self.judge(kind, depth, &obs, gen_before, &e)
            .map_err(|(p, d)| mismatch(p, d))?;

        let by_obs = match by {
            Some(b) => {
                let o = self.read_obs(self.domains[0], success(&b)?[0])?;
                self.judge_bystander(depth, &o, &e, gen_before)
                    .map_err(|(p, d)| mismatch(p, d))?;
                Some(o)
            }
            None => None,
        };

        self.settled(target)?;
        let generation = self
            .check_after(target, &e, gen_before, resets_before)
            .map_err(|d| mismatch(Party::Domain, d))?;
        let report = self
            .check_record(target, depth, &e, fault_before, &obs.record, thread)
            .map_err(|d| mismatch(Party::Vmm, d))?;
        self.check_next_call(depth, &e, generation)
            .map_err(|d| mismatch(Party::NextCall, d))?;
        self.check_idle().map_err(|d| mismatch(Party::Pools, d))?;
        Ok(Injection {
            kind,
            depth,
            observed: obs,
            report,
            bystander: by_obs,
            generation,
        })
    }

    /// The faulting domain's health, generation and restarts once it has
    /// settled: its generation now.
    fn check_after(
        &self,
        target: &Domain,
        e: &Expected,
        gen_before: u64,
        resets_before: u64,
    ) -> Result<u64, String> {
        let now = (target.generation(), target.resets(), target.health());
        let want = match e.after {
            After::Unchanged => (gen_before, resets_before, Health::Running),
            After::Restarts => (gen_before + 1, resets_before + 1, Health::Running),
            After::Dead => (gen_before, resets_before, Health::Dead),
        };
        if now != want {
            return Err(format!(
                "(generation, restarts, health) is {now:?}; expected {want:?}"
            ));
        }
        Ok(now.0)
    }

    /// The VMM's record of the faulting domain (`System::faults`): a new,
    /// full report for the kinds that leave one, nothing new otherwise.
    fn check_record(
        &self,
        target: &Domain,
        depth: u32,
        e: &Expected,
        before: Option<FaultReport>,
        caller: &Record,
        thread: ThreadId,
    ) -> Result<Option<FaultReport>, String> {
        let report = self
            .sys
            .faults()
            .into_iter()
            .find(|f| f.domain == target.name);
        let Some(v) = e.vmm else {
            return if report == before {
                Ok(None)
            } else {
                Err(format!(
                    "recorded {report:?} for a kind that records nothing"
                ))
            };
        };
        let f = report
            .filter(|f| Some(f) != before.as_ref())
            .ok_or("no new record")?;
        let chain: Vec<String> = self
            .spec
            .names()
            .into_iter()
            .take(depth as usize + 1)
            .collect();
        let r = caller.regs;
        let full = !v.same_as_caller || (f.rip, f.error_code, f.cr2) == (r[1], r[2], r[3]);
        let message = v
            .message
            .is_none_or(|m| f.message.as_deref().is_some_and(|t| t.contains(m)));
        if f.vector != v.vector || !full || !message || f.thread != Some(thread) || f.chain != chain
        {
            return Err(format!(
                "{f:?}; expected {v:?} from {thread} in chain {chain:?}"
            ));
        }
        Ok(Some(f))
    }

    /// A `none` call into the faulting domain: served by its generation now,
    /// or refused with `DomainDead` if it is dead.
    fn check_next_call(&self, depth: u32, e: &Expected, generation: u64) -> Result<(), String> {
        let (next, _) = self
            .run_once(FaultKind::None, depth)
            .map_err(|e| e.to_string())?;
        let r = next.record;
        let served = match e.after {
            After::Dead => r.status == ErrorCode::DomainDead as u64 && r.regs == [0; 4],
            _ => {
                r.status == 0
                    && r.regs[..2] == [wire::NONE_MAGIC, generation]
                    && r.generation == generation
            }
        };
        if served {
            Ok(())
        } else {
            Err(format!("{r:?} (generation {generation})"))
        }
    }

    /// Run the root's `once(kind, depth)`: the observation and the thread.
    fn run_once(
        &self,
        kind: FaultKind,
        depth: u32,
    ) -> Result<(Observation, ThreadId), InjectError> {
        let root = self.domains[0];
        let out = self.sys.run_thread(
            &root.name,
            wire::entry::ONCE,
            &[kind.wire(), u64::from(depth)],
        );
        let addr = success(&out)?[0];
        Ok((self.read_obs(root, addr)?, out.thread))
    }

    fn target(&self, depth: u32) -> Result<&'s Domain, InjectError> {
        self.domain(depth)
            .filter(|_| depth >= 1)
            .ok_or(InjectError::BadDepth {
                depth,
                links: self.spec.links,
            })
    }

    /// Check an injection's answers to the direct caller and above it.
    fn judge(
        &self,
        kind: FaultKind,
        depth: u32,
        obs: &Observation,
        gen_before: u64,
        e: &Expected,
    ) -> Result<(), (Party, String)> {
        self.judge_above(depth, obs)
            .map_err(|d| (Party::Above, format!("{kind}: {d}")))?;
        let r = &obs.record;
        let c = &e.caller;
        let observer = self.domains[depth as usize - 1].id.raw();
        let regs_ok = c
            .regs
            .iter()
            .zip(r.regs)
            .all(|(rule, x)| self.frame.holds(*rule, x, r.generation));
        let gen_ok = match c.generation {
            GenRule::Same => r.generation == gen_before,
            GenRule::SameOrNext => r.generation == gen_before || r.generation == gen_before + 1,
        };
        if r.status != c.status
            || !regs_ok
            || !gen_ok
            || r.observer_domain != u64::from(observer)
            || r.observer_depth != u64::from(depth - 1)
        {
            return Err((
                Party::Caller,
                format!(
                    "{r:?}; expected {c:?} from domain {observer} at frame depth {} (generation before {gen_before})",
                    depth - 1
                ),
            ));
        }
        Ok(())
    }

    /// Parties above the direct caller get the relays' success.
    fn judge_above(&self, depth: u32, obs: &Observation) -> Result<(), String> {
        if depth == 1 {
            return Ok(());
        }
        let t = obs.top;
        let first = self.domains[1].generation();
        if t.status != 0
            || t.results != [wire::RELAYED, u64::from(depth - 1)]
            || t.generation != first
        {
            return Err(format!(
                "{t:?}; expected Ok([RELAYED, {}]) at generation {first}",
                depth - 1
            ));
        }
        Ok(())
    }

    fn judge_bystander(
        &self,
        depth: u32,
        o: &Observation,
        e: &Expected,
        gen_before: u64,
    ) -> Result<(), (Party, String)> {
        let r = &o.record;
        let ok = match e.bystander {
            Bystander::DomainDown => {
                r.status == ErrorCode::Fault as u64
                    && r.regs == [pseudo_vector::DOMAIN_DOWN, 0, 0, 0]
            }
            Bystander::Unaffected => r.status == 0 && r.regs == [wire::HELD, gen_before, 0, 0],
        } && r.observer_depth == u64::from(depth - 1);
        if !ok {
            return Err((
                Party::Bystander,
                format!("{r:?}; expected {:?}", e.bystander),
            ));
        }
        self.judge_above(depth, o)
            .map_err(|d| (Party::Bystander, d))
    }

    /// Have the root inject `count` faults of `kinds` (uniformly), at
    /// depths 1..=links, in one host round trip; the guest judges each
    /// answer against this module's table. Then cross-check: the host
    /// re-judges the guest's ring of recent observations, each link's
    /// restarts and generation must match the restarting injections the
    /// guest counted at its depth, each link's VMM record must be that of
    /// the last restarting kind injected there, and the pools must be full.
    pub fn storm(
        &self,
        seed: u64,
        count: u64,
        kinds: &[FaultKind],
    ) -> Result<StormReport, InjectError> {
        if kinds.is_empty() {
            return Err(InjectError::NoKinds);
        }
        if let Some(k) = kinds.iter().find(|k| k.test_only() || self.spec.fragile) {
            return Err(InjectError::NotForStorms(*k));
        }
        let _busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let links = &self.domains[1..];
        for d in links {
            self.settled(d)?;
        }
        let before: Vec<(u64, u64)> = links.iter().map(|d| (d.resets(), d.generation())).collect();
        let faults_before = self.sys.counters().faults();
        let root = self.domains[0];
        let start = Instant::now();
        let out = self.sys.run_thread(
            &root.name,
            wire::entry::STORM,
            &[
                seed,
                count,
                u64::from(self.spec.links),
                FaultKind::mask(kinds),
            ],
        );
        let elapsed = start.elapsed();
        let addr = success(&out)?[0];
        let t = self.read_words::<{ wire::TALLY_WORDS }>(root, addr, "read the tally")?;
        if t[0] != wire::TALLY_MAGIC {
            return Err(InjectError::BadTally(t[0]));
        }
        for d in links {
            self.settled(d)?;
        }
        let mut rep = StormReport {
            seed,
            injected: t[wire::T_DONE],
            guest_mismatches: t[wire::T_MISMATCHES],
            elapsed,
            vmm_faults: self.sys.counters().faults().saturating_sub(faults_before),
            ..StormReport::default()
        };
        let count_at = |k: FaultKind, d: usize| t[wire::T_COUNTS + k.index() * wire::DEPTHS + d];
        for k in FaultKind::ALL {
            for d in 1..wire::DEPTHS {
                rep.by_kind[k.index()] += count_at(k, d);
                rep.by_depth[d] += count_at(k, d);
            }
        }
        let total: u64 = rep.by_kind.iter().sum();
        if total != rep.injected || rep.injected != count + u64::from(self.spec.links) {
            rep.problems.push(format!(
                "the guest made {} injections and counted {total}; {count} + {} probes were asked",
                rep.injected, self.spec.links
            ));
        }
        for (i, (d, (resets0, gen0))) in links.iter().zip(before).enumerate() {
            let depth = i + 1;
            let restarting: u64 = FaultKind::ALL
                .into_iter()
                .filter(|k| k.expected().restarts())
                .map(|k| count_at(k, depth))
                .sum();
            let (resets, generation) = (d.resets().saturating_sub(resets0), d.generation());
            rep.restarts += resets;
            if resets != restarting
                || generation != gen0 + restarting
                || generation != t[wire::T_GEN + depth]
                || d.health() != Health::Running
            {
                rep.problems.push(format!(
                    "`{}`: {resets} restarts, generation {generation} ({:?}); the guest injected {restarting} restarting faults there and modelled generation {}",
                    d.name,
                    d.health(),
                    t[wire::T_GEN + depth]
                ));
            }
            if let Some(last) = FaultKind::from_wire(t[wire::T_LAST + depth]) {
                let want = last.expected().vmm.map(|v| v.vector);
                let f = d.fault();
                let chain: Vec<String> = self.spec.names().into_iter().take(depth + 1).collect();
                let ok = f.as_ref().is_some_and(|f| {
                    Some(f.vector) == want && f.thread == Some(out.thread) && f.chain == chain
                });
                if !ok {
                    rep.problems.push(format!(
                        "`{}`: the VMM's record is {f:?}; the last fault injected there was {last} (vector {want:x?})",
                        d.name
                    ));
                }
            }
        }
        // Re-judge the newest observations with the host's own table.
        let head = t[wire::T_HEAD];
        let kept = head.min(wire::RING as u64);
        for n in head - kept..head {
            let slot = usize::try_from(n % wire::RING as u64).unwrap_or(0);
            let at = wire::T_RING + slot * wire::OBS_WORDS;
            let words: &[u64; wire::OBS_WORDS] = t[at..at + wire::OBS_WORDS]
                .try_into()
                .unwrap_or(&[0; wire::OBS_WORDS]);
            let o = Observation::from_words(words);
            rep.rejudged += 1;
            if let Err(p) = self.rejudge(&o) {
                rep.problems.push(format!("observation {n}: {p}"));
            }
        }
        if rep.guest_mismatches > 0 {
            let first: &[u64; wire::OBS_WORDS] = t[wire::T_FIRST..wire::T_FIRST + wire::OBS_WORDS]
                .try_into()
                .unwrap_or(&[0; wire::OBS_WORDS]);
            let o = Observation::from_words(first);
            rep.problems.push(format!(
                "the guest judged {} answers wrong; the first: {o:?} ({})",
                rep.guest_mismatches,
                self.rejudge(&o)
                    .err()
                    .unwrap_or_else(|| "the host's table accepts it".into())
            ));
        }
        if let Err(p) = self.check_idle() {
            rep.problems.push(p);
        }
        Ok(rep)
    }

    /// Judge a storm's observation as the host: the top answer against the
    /// first link's generation now is not known then, so only against the
    /// relay's shape.
    fn rejudge(&self, o: &Observation) -> Result<(), String> {
        let kind = o.kind.ok_or_else(|| format!("unknown kind in {o:?}"))?;
        let depth = u32::try_from(o.depth)
            .ok()
            .filter(|d| (1..=self.spec.links).contains(d))
            .ok_or_else(|| format!("depth {} outside the chain", o.depth))?;
        let e = self.expected(kind);
        let mut copy = *o;
        if depth > 1 {
            // The generation of the first link at the time is the storm's
            // business (it checks it); here only the relay's shape.
            copy.top.generation = self.domains[1].generation();
        }
        self.judge(kind, depth, &copy, o.generation_before, &e)
            .map_err(|(p, d)| format!("{kind} at depth {depth}: the {p} is wrong: {d}"))
    }

    /// Every stack and vCPU of the chain is back in its pool and no frame
    /// is inside: call it when no thread is in the chain.
    pub fn check_idle(&self) -> Result<(), String> {
        for d in &self.domains {
            let (free, all) = (d.free_stacks(), d.stack_capacity() as usize);
            let (idle, live) = (d.idle_vcpus(), d.vcpu_count() as usize);
            if free != all || idle != live || d.active_frames() != 0 {
                return Err(format!(
                    "`{}`: {free} of {all} stacks and {idle} of {live} vCPUs back, {} frames inside",
                    d.name,
                    d.active_frames()
                ));
            }
        }
        Ok(())
    }

    /// Wait (bounded) while `d` is quarantined or being reset.
    fn settled(&self, d: &Domain) -> Result<(), InjectError> {
        let busy = || matches!(d.health(), Health::Quarantined | Health::Resetting);
        if self.until(|| !busy()) {
            Ok(())
        } else {
            Err(InjectError::NotSettled {
                domain: d.name.clone(),
                health: d.health(),
                limit: self.settle,
            })
        }
    }

    /// Poll `done` every 100 µs for up to the settle limit.
    fn until(&self, mut done: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > self.settle {
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        true
    }

    fn write_release(&self, d: &Domain) -> Result<(), InjectError> {
        d.mem()
            .write_slice(&1u64.to_le_bytes(), GuestAddress(self.release))
            .map_err(|source| InjectError::Memory {
                domain: d.name.clone(),
                what: "release the bystander",
                addr: self.release,
                source,
            })
    }

    fn read_obs(&self, d: &Domain, addr: u64) -> Result<Observation, InjectError> {
        let w = self.read_words::<{ wire::OBS_WORDS }>(d, addr, "read an observation")?;
        Ok(Observation::from_words(&w))
    }

    fn read_words<const N: usize>(
        &self,
        d: &Domain,
        addr: u64,
        what: &'static str,
    ) -> Result<Box<[u64; N]>, InjectError> {
        let mut bytes = vec![0u8; N * 8];
        d.mem()
            .read_slice(&mut bytes, GuestAddress(addr))
            .map_err(|source| InjectError::Memory {
                domain: d.name.clone(),
                what,
                addr,
                source,
            })?;
        let mut words = Box::new([0u64; N]);
        for (w, b) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            *w = u64::from_le_bytes(le);
        }
        Ok(words)
    }
}

/// The results of a thread that must have returned success.
fn success(out: &ThreadOutcome) -> Result<[u64; 2], InjectError> {
    match &out.result {
        ThreadResult::Returned { status: 0, results } => Ok(*results),
        other => Err(InjectError::Thread {
            start: out.start.clone(),
            result: format!("{other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A soak shares one injector per chain between its host threads.
    #[test]
    fn an_injector_can_be_shared_between_host_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Injector<'static>>();
        shareable::<StormReport>();
    }

    #[test]
    fn an_observation_decodes_word_by_word() {
        let mut w = [0u64; wire::OBS_WORDS];
        for (i, x) in w.iter_mut().enumerate() {
            *x = i as u64 + 100;
        }
        w[0] = FaultKind::Panic.wire();
        let o = Observation::from_words(&w);
        assert_eq!(o.kind, Some(FaultKind::Panic));
        assert_eq!((o.depth, o.generation_before), (101, 102));
        assert_eq!(o.top.status, 103);
        assert_eq!(o.top.results, [104, 105]);
        assert_eq!(o.top.generation, 106);
        assert_eq!(o.record.status, 107);
        assert_eq!(o.record.regs, [108, 109, 110, 111]);
        assert_eq!(o.record.generation, 112);
        assert_eq!(
            (o.record.observer_domain, o.record.observer_depth),
            (113, 114)
        );
    }
}
