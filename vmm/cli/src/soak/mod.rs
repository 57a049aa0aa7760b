//! `ferry soak`: a multi-domain workload run for a set time while hostile
//! guests do their worst, with every invariant checked as it runs.
//!
//! The system: `soak-client` threads doing random kv puts, gets and deletes,
//! straight to `kv` (image `kv-crashable`, which logs each put to `logger`)
//! and through `relay` (which faults before or after forwarding when asked);
//! kv itself is crashed at times and restarts empty. Beside them, in domains
//! of their own, the fuzzer sends hostile hypercalls (lending objects among
//! them) and the fault injector raises every kind of fault (see
//! `ferry_hostile`), and a mapped-mode pair runs rings of calls on a
//! thread's window stack ([`mapped`]).
//!
//! Checked: every kv answer against the VMM's model of kv (per generation,
//! see [`referee`]); every relayed answer against kv's; the fuzz oracle and
//! the injector's expected answers; host threads, file descriptors, memory
//! maps and RSS against bounds computed from the manifest, every second;
//! stacks and vCPUs back in their pools, every stack-window slot free and
//! no window slot or lease still mapped at the end. Any broken invariant
//! makes the exit status non-zero.

mod mapped;
mod process;
mod referee;

use ferry_engine::domain::Health;
use ferry_engine::manifest::{Document, DomainEntry, System as Manifest};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use ferry_hostile::fuzz::{Fuzz, FuzzDomains, Report as FuzzReport};
use ferry_hostile::inject::{ChainSpec, FaultKind, Injector, StormReport};
use process::Usage;
use referee::{Referee, Verdict};
use shared_abi::ErrorCode;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a soak is asked to do.
pub struct SoakOptions {
    /// How long the load runs.
    pub seconds: u64,
    /// Seed of every random choice made from the host.
    pub seed: u64,
    /// Client threads.
    pub clients: u32,
}

/// Operations per client batch (one `work` call).
const CLIENT_BATCH: u64 = 2_000;
/// A relay fault is asked once in this many client operations.
const RELAY_FAULT_ONE_IN: u64 = 50;
/// kv is crashed once in this many client operations (per client).
const KV_CRASH_ONE_IN: u64 = 5_000;
/// Faults per storm (one host round trip into the injector's chain).
const STORM: u64 = 2_000;
/// Links of the injector's chain (faults at depths 1..=3).
const CHAIN_LINKS: u32 = 3;
/// Hostile hypercalls per fuzz batch (over the fuzzer's worker vCPUs).
const FUZZ_BATCH: u64 = 6_000;
/// Streams of failing fuzz batches kept for the log.
const KEPT_STREAMS: usize = 4;
/// How often the process is measured against its bounds.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often a progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long, at the end, domains may take to finish their resets.
const SETTLE: Duration = Duration::from_secs(10);

/// Domain names of the workload.
const CLIENT: &str = "soak-client";
const KV: &str = "kv";
const RELAY: &str = "relay";
const LOGGER: &str = "logger";

/// The workload's domains; `clients` threads run in `soak-client` at once.
fn workload(clients: u32) -> Vec<DomainEntry> {
    let frames = clients + 1;
    vec![
        DomainEntry::new(CLIENT, "soak-client")
            .memory_mib(4)
            .stacks(clients, 64)
            .exports(["work"])
            .capabilities([
                "relay.put",
                "relay.get",
                "relay.delete",
                "kv.put",
                "kv.get",
                "kv.delete",
                "kv.crash",
            ]),
        DomainEntry::new(RELAY, "soak-relay")
            .memory_mib(4)
            .stacks(frames, 32)
            .exports(["put", "get", "delete"])
            .capabilities(["kv.put", "kv.get", "kv.delete"]),
        DomainEntry::new(KV, "kv-crashable")
            .memory_mib(8)
            .stacks(frames, 64)
            .exports(["put", "get", "delete", "count", "crash"])
            .capabilities(["logger.append"]),
        // logger keeps every line: it fills its heap and restarts (an
        // unplanned fault deep in a chain, which the soak counts too).
        DomainEntry::new(LOGGER, "logger")
            .memory_mib(8)
            .stacks(frames, 32)
            .exports(["append", "count"]),
    ]
}

/// Counts from the client threads.
#[derive(Clone, Debug, Default)]
struct ClientTally {
    batches: u64,
    answered_ok: u64,
    answered_err: u64,
    relay_faults_before: u64,
    relay_faults_after: u64,
    kv_crashes: u64,
    /// Batches that did not end with `Ok`: each is a broken invariant.
    bad_batches: Vec<String>,
}

impl ClientTally {
    fn add(&mut self, outcome: &ThreadResult, tsc_summary: impl FnOnce() -> String) {
        self.batches += 1;
        match outcome {
            ThreadResult::Returned { status: 0, results } => {
                let [r0, r1] = *results;
                let field = (1u64 << 21) - 1;
                self.answered_ok += r0 & 0xFFFF_FFFF;
                self.answered_err += r0 >> 32;
                self.relay_faults_before += r1 & field;
                self.relay_faults_after += (r1 >> 21) & field;
                self.kv_crashes += (r1 >> 42) & field;
            }
            _ => {
                if self.bad_batches.len() < 10 {
                    self.bad_batches.push(tsc_summary());
                }
            }
        }
    }
}

/// Counts from the fuzzer's batches.
#[derive(Clone, Debug, Default)]
struct FuzzTally {
    report: FuzzReport,
    /// Batches that could not run or be judged (each a broken invariant).
    errors: u64,
    described: Vec<String>,
    /// Hypercall streams of batches with violations, rendered.
    streams: Vec<String>,
}

impl FuzzTally {
    fn add(
        &mut self,
        n: u64,
        r: Result<ferry_hostile::fuzz::Batch, ferry_hostile::fuzz::FuzzError>,
    ) {
        match r {
            Ok(b) => {
                self.report.merge(&b.report);
                if b.report.violation_count > 0 && self.streams.len() < KEPT_STREAMS {
                    self.streams
                        .push(format!("== fuzz batch {n}: hypercall stream\n{}", b.stream));
                }
            }
            Err(e) => {
                self.errors += 1;
                if self.described.len() < 10 {
                    self.described.push(format!("fuzz batch {n}: {e}"));
                }
            }
        }
    }
}

/// Counts from the fault injector's storms.
#[derive(Clone, Debug, Default)]
struct InjectTally {
    storms: u64,
    by_kind: Vec<u64>,
    by_depth: Vec<u64>,
    restarts: u64,
    /// Failed checks (each a broken invariant), the first few described.
    problems: u64,
    described: Vec<String>,
}

impl InjectTally {
    fn add(&mut self, r: Result<StormReport, String>) {
        self.storms += 1;
        match r {
            Ok(r) => {
                add_into(&mut self.by_kind, &r.by_kind);
                add_into(&mut self.by_depth, &r.by_depth);
                self.restarts += r.restarts;
                self.problems += r.problems.len() as u64;
                for p in r.problems {
                    if self.described.len() < 10 {
                        self.described.push(format!("storm seed {}: {p}", r.seed));
                    }
                }
            }
            Err(e) => {
                self.problems += 1;
                if self.described.len() < 10 {
                    self.described.push(e);
                }
            }
        }
    }

    fn injected(&self) -> u64 {
        FaultKind::SOAK
            .iter()
            .filter(|k| **k != FaultKind::None)
            .map(|k| self.by_kind.get(k.index()).copied().unwrap_or(0))
            .sum()
    }
}

/// Every fault the soak injected: the injector's storms, the relay's faults
/// on the workload's path and the kv crashes.
fn faults_injected(clients: &ClientTally, inject: &InjectTally) -> u64 {
    inject.injected()
        + clients.relay_faults_before
        + clients.relay_faults_after
        + clients.kv_crashes
}

fn add_into(total: &mut Vec<u64>, more: &[u64]) {
    if total.len() < more.len() {
        total.resize(more.len(), 0);
    }
    for (t, m) in total.iter_mut().zip(more) {
        *t += m;
    }
}

/// Confine a worker thread before it runs guest code, as the engine
/// confines its own (see `ferry_engine::sandbox`); a no-op under
/// `--no-seccomp`.
fn confine() -> Result<(), String> {
    ferry_engine::sandbox::confine_current_thread()
        .map(|_| ())
        .map_err(|e| format!("cannot confine a soak worker: {e}"))
}

/// Everything a soak saw.
pub struct SoakReport {
    seed: u64,
    ran_for: Duration,
    clients: ClientTally,
    inject: InjectTally,
    fuzz: FuzzTally,
    rings: mapped::MappedTally,
    verdict: Verdict,
    calls: u64,
    restarts: BTreeMap<String, u64>,
    refusals: BTreeMap<String, u64>,
    budget_expiries: u64,
    wait_expiries: u64,
    after_boot: Usage,
    peak: Usage,
    at_end: Usage,
    bounds: Usage,
    /// Process figures over their bounds while running or at the end.
    over_bounds: Vec<String>,
    /// Stacks, vCPUs or frames not back when idle.
    pool_leaks: Vec<String>,
    /// Domains that ended `Dead` (nothing in the soak should).
    dead: Vec<String>,
}

impl SoakReport {
    /// Write what a failing run needs to be understood: the report, every
    /// described mismatch and the hypercall streams of failing fuzz batches
    /// (races between vCPUs do not replay from a seed, so the streams are
    /// the record).
    pub fn write_log(&self, path: &Path) -> std::io::Result<()> {
        let mut text = format!("{self}");
        for s in &self.fuzz.streams {
            text.push_str(s);
            text.push('\n');
        }
        std::fs::write(path, text)
    }

    /// Every invariant held.
    pub fn passed(&self) -> bool {
        self.verdict.lost == 0
            && self.verdict.corrupted == 0
            && self.clients.bad_batches.is_empty()
            && self.inject.problems == 0
            && self.fuzz.report.violation_count == 0
            && self.fuzz.errors == 0
            && self.rings.problems == 0
            && self.over_bounds.is_empty()
            && self.pool_leaks.is_empty()
            && self.dead.is_empty()
    }
}

/// Boot the soak system, run the load for `opts.seconds`, check everything.
pub fn run(opts: &SoakOptions) -> anyhow::Result<SoakReport> {
    let mut doc = Document {
        stacks: Some(mapped::stacks()),
        ..Document::default()
    };
    for d in workload(opts.clients).into_iter().chain(mapped::domains()) {
        doc = doc.domain(d);
    }
    let chain = ChainSpec::new("inj", CHAIN_LINKS)?;
    doc = chain.add_to(doc);
    let fuzz_domains = FuzzDomains::new("fz-");
    for d in fuzz_domains.domains() {
        doc = doc.domain(d);
    }
    let spec = Manifest::from_document(&doc, None)?;
    let referee = Arc::new(Referee::new(KV, RELAY));
    let sys = System::boot(spec, Some(referee.clone()))?;
    let after_boot = Usage::now().ok_or_else(|| anyhow::anyhow!("cannot read /proc/self"))?;
    let threads_after_boot = process::thread_names();
    let window_free = sys.window_free_slots();
    let injector = Injector::new(&sys, &chain)?;
    let mut fuzz = Fuzz::attach(&sys, &fuzz_domains)?;
    // Outside `System::run` no spawn can start: each must be refused, and
    // the oracle checks that it is.
    fuzz.spawns_open(false);
    // The soak's threads: clients, the injector, the fuzz driver and its
    // worker threads (started per batch), the mapped pair's thread.
    let workers = u64::from(opts.clients) + 3 + fuzz_domains.workers as u64;
    let bounds = process::bounds(&sys, &after_boot, workers);
    let tsc_khz = sys.domains().first().map_or(0, |d| d.tsc_khz);

    let stop = AtomicBool::new(false);
    let clients = Mutex::new(ClientTally::default());
    let inject = Mutex::new(InjectTally::default());
    let fuzzed = Mutex::new(FuzzTally::default());
    let rings = Mutex::new(mapped::MappedTally::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.seconds);
    let mut peak = after_boot;
    let mut over_bounds = Vec::new();

    std::thread::scope(|s| -> anyhow::Result<()> {
        // Joined by hand at the end: the scope itself waits only for the
        // closures, and an OS thread still exiting would count as a leak.
        let mut handles = Vec::new();
        for t in 0..opts.clients {
            let (sys, stop, clients) = (&sys, &stop, &clients);
            let seed = opts.seed ^ (u64::from(t) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("soak-client-{t}"))
                    .spawn_scoped(s, move || {
                        if let Err(e) = confine() {
                            if let Ok(mut c) = clients.lock() {
                                c.bad_batches.push(e);
                            }
                            return;
                        }
                        let mut batch = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let args = [
                                seed.wrapping_add(batch),
                                CLIENT_BATCH,
                                u64::from(t),
                                RELAY_FAULT_ONE_IN,
                                KV_CRASH_ONE_IN,
                            ];
                            let o = sys.run_thread(CLIENT, "work", &args);
                            if let Ok(mut c) = clients.lock() {
                                c.add(&o.result, || o.summary(tsc_khz));
                            }
                            batch += 1;
                        }
                    })?,
            );
        }
        {
            let (stop, inject, injector) = (&stop, &inject, &injector);
            let seed = opts.seed ^ 0x1_11EC_7000;
            handles.push(
                std::thread::Builder::new()
                    .name("soak-inject".into())
                    .spawn_scoped(s, move || {
                        if let Err(e) = confine() {
                            if let Ok(mut t) = inject.lock() {
                                t.add(Err(e));
                            }
                            return;
                        }
                        let mut storm = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let r = injector
                                .storm(seed.wrapping_add(storm), STORM, &FaultKind::SOAK)
                                .map_err(|e| format!("storm {storm}: {e}"));
                            if let Ok(mut t) = inject.lock() {
                                t.add(r);
                            }
                            storm += 1;
                        }
                    })?,
            );
        }
        {
            let (stop, fuzzed, fuzz) = (&stop, &fuzzed, &mut fuzz);
            let seed = opts.seed ^ 0xF022_0000;
            handles.push(
                std::thread::Builder::new()
                    .name("soak-fuzz".into())
                    .spawn_scoped(s, move || {
                        // This thread only starts and judges batches; the
                        // workers that run guest code confine themselves.
                        let mut batch = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let r = fuzz.batch(seed.wrapping_add(batch), FUZZ_BATCH);
                            if let Ok(mut t) = fuzzed.lock() {
                                t.add(batch, r);
                            }
                            batch += 1;
                        }
                    })?,
            );
        }
        {
            let (sys, stop, rings) = (&sys, &stop, &rings);
            let seed = opts.seed ^ 0x3A99_ED00;
            handles.push(
                std::thread::Builder::new()
                    .name("soak-mapped".into())
                    .spawn_scoped(s, move || {
                        let mut local = mapped::MappedTally::default();
                        if let Err(e) = confine() {
                            local.problem(e);
                        } else {
                            let mut i = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                i += 1;
                                local.ring(sys, ferry_hostile::fuzz::wire::mix(seed ^ i));
                            }
                        }
                        if let Ok(mut t) = rings.lock() {
                            *t = local;
                        }
                    })?,
            );
        }
        let mut last_progress = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(
                SAMPLE_EVERY.min(deadline.saturating_duration_since(Instant::now())),
            );
            if let Some(u) = Usage::now() {
                peak = Usage {
                    threads: peak.threads.max(u.threads),
                    fds: peak.fds.max(u.fds),
                    maps: peak.maps.max(u.maps),
                    rss_kib: peak.rss_kib.max(u.rss_kib),
                };
                for o in u.over(&bounds) {
                    if over_bounds.len() < 20 {
                        over_bounds.push(format!("at {} s: {o}", start.elapsed().as_secs()));
                    }
                }
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let v = referee.verdict();
                let c = clients.lock().map(|c| c.clone()).unwrap_or_default();
                let i = inject.lock().map(|i| i.clone()).unwrap_or_default();
                let z = fuzzed
                    .lock()
                    .map(|z| (z.report.hypercalls, z.report.violation_count + z.errors))
                    .unwrap_or_default();
                eprintln!(
                    "soak: {:>4} s: {} calls, {} fuzzed hypercalls ({} violations), {} client ops, {} faults injected ({} failed checks), {} kv answers judged, {} lost, {} corrupted",
                    start.elapsed().as_secs(),
                    sys.counters().calls(),
                    z.0,
                    z.1,
                    c.answered_ok + c.answered_err,
                    faults_injected(&c, &i),
                    i.problems,
                    v.judged,
                    v.lost,
                    v.corrupted
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            if h.join().is_err() {
                anyhow::bail!("a soak worker panicked");
            }
        }
        Ok(())
    })?;
    let ran_for = start.elapsed();

    // Idle: let the last resets finish, then everything must be back.
    let settle_start = Instant::now();
    while sys
        .domains()
        .iter()
        .any(|d| d.health() == Health::Resetting)
        && settle_start.elapsed() < SETTLE
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut pool_leaks = process::pool_leaks(&sys);
    pool_leaks.extend(mapped::leaks(&sys, window_free));
    let at_end = Usage::now().unwrap_or_default();
    // Workers have been joined: no thread beyond those after boot may remain.
    let idle_bound = Usage {
        threads: after_boot.threads,
        ..bounds
    };
    for o in at_end.over(&idle_bound) {
        over_bounds.push(format!("at the end: {o}"));
    }
    if at_end.threads > after_boot.threads {
        let mut extra = process::thread_names();
        for n in &threads_after_boot {
            if let Some(i) = extra.iter().position(|e| e == n) {
                extra.remove(i);
            }
        }
        over_bounds.push(format!(
            "threads not there after boot: {}",
            extra.join(", ")
        ));
    }
    let dead = sys
        .domains()
        .iter()
        .filter(|d| d.health() == Health::Dead)
        .map(|d| d.name.clone())
        .collect();
    let restarts = sys
        .domains()
        .iter()
        .map(|d| (d.name.clone(), d.resets()))
        .filter(|(_, n)| *n > 0)
        .collect();
    let refusals = (1..=u32::from(u8::MAX))
        .filter_map(|n| ErrorCode::try_from(n).ok())
        .map(|c| (format!("{c:?}"), sys.counters().refused(c)))
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(SoakReport {
        seed: opts.seed,
        ran_for,
        clients: clients.into_inner().unwrap_or_default(),
        inject: inject.into_inner().unwrap_or_default(),
        fuzz: fuzzed.into_inner().unwrap_or_default(),
        rings: rings.into_inner().unwrap_or_default(),
        verdict: referee.verdict(),
        calls: sys.counters().calls(),
        restarts,
        refusals,
        budget_expiries: sys.counters().budget_expiries(),
        wait_expiries: sys.counters().refused(ErrorCode::Timeout),
        after_boot,
        peak,
        at_end,
        bounds,
        over_bounds,
        pool_leaks,
        dead,
    })
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.clients;
        let v = &self.verdict;
        writeln!(
            f,
            "ferry soak: seed {} ran {:.1} s",
            self.seed,
            self.ran_for.as_secs_f64()
        )?;
        writeln!(f, "calls made (entered a callee):   {}", self.calls)?;
        let z = &self.fuzz.report;
        writeln!(
            f,
            "fuzzed hypercalls sent:         {} in {} batches ({:.1}% entered a callee, {} raced), {} violations, {} batches failed",
            z.hypercalls,
            z.batches,
            100.0 * z.entered_share(),
            z.racy,
            z.violation_count,
            self.fuzz.errors
        )?;
        for line in z.summary().lines().skip(1) {
            writeln!(f, "  {}", line.trim_start())?;
        }
        for v in z.violations.iter().take(10) {
            writeln!(f, "    {v:?}")?;
        }
        for d in &self.fuzz.described {
            writeln!(f, "    {d}")?;
        }
        let m = &self.rings;
        writeln!(
            f,
            "mapped-pair rings:              {} ({} calls, {} wrong answers)",
            m.rings, m.calls, m.problems
        )?;
        for d in &m.described {
            writeln!(f, "    {d}")?;
        }
        writeln!(
            f,
            "client operations:              {} ({} answered ok, {} with an error) in {} batches",
            c.answered_ok + c.answered_err,
            c.answered_ok,
            c.answered_err,
            c.batches
        )?;
        let i = &self.inject;
        writeln!(
            f,
            "faults injected by kind:        {} in all",
            faults_injected(c, i)
        )?;
        for k in FaultKind::SOAK {
            let n = i.by_kind.get(k.index()).copied().unwrap_or(0);
            let what = if k == FaultKind::None {
                "(no fault: the restarted domain's next call)"
            } else {
                ""
            };
            writeln!(f, "  {:<29} {n} {what}", k.name())?;
        }
        writeln!(
            f,
            "  relay fault before forwarding {}",
            c.relay_faults_before
        )?;
        writeln!(
            f,
            "  relay fault after forwarding  {}",
            c.relay_faults_after
        )?;
        writeln!(f, "  kv crash                      {}", c.kv_crashes)?;
        writeln!(
            f,
            "  injector: {} storms, by depth {:?}, {} restarts, {} failed checks",
            i.storms,
            i.by_depth.get(1..).unwrap_or_default(),
            i.restarts,
            i.problems
        )?;
        for p in &i.described {
            writeln!(f, "    {p}")?;
        }
        writeln!(f, "restarts by domain:             {:?}", self.restarts)?;
        writeln!(f, "refusals by code:               {:?}", self.refusals)?;
        writeln!(
            f,
            "budget expiries:                {}",
            self.budget_expiries
        )?;
        writeln!(f, "deadline (wait) expiries:       {}", self.wait_expiries)?;
        writeln!(
            f,
            "kv answers judged:              {} ({} never delivered: caller down; {} relayed answers compared; {} unjudged: older generation)",
            v.judged, v.undelivered, v.relayed, v.unjudged
        )?;
        writeln!(
            f,
            "kv generations seen:            {} ({} keys forgotten by restarts, as documented)",
            v.generations, v.forgotten
        )?;
        writeln!(f, "lost results:                   {}", v.lost)?;
        writeln!(f, "corrupted results:              {}", v.corrupted)?;
        for m in &v.mismatches {
            writeln!(f, "  {m}")?;
        }
        for b in &c.bad_batches {
            writeln!(f, "  client batch failed: {b}")?;
        }
        writeln!(f, "process after boot:             {}", self.after_boot)?;
        writeln!(f, "process peak:                   {}", self.peak)?;
        writeln!(f, "process at the end (idle):      {}", self.at_end)?;
        writeln!(f, "bounds from the manifest:       {}", self.bounds)?;
        let leaks = self.over_bounds.len() + self.pool_leaks.len();
        writeln!(f, "leaks:                          {leaks}")?;
        for l in self.over_bounds.iter().chain(&self.pool_leaks) {
            writeln!(f, "  {l}")?;
        }
        for d in &self.dead {
            writeln!(f, "  domain {d} ended Dead")?;
        }
        writeln!(f, "result: {}", if self.passed() { "PASS" } else { "FAIL" })
    }
}
