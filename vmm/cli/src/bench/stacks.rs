//! `ferry bench --stacks`: the stack question of issue 11 in numbers —
//! pool + copy, pool + lease, mapped (pre-mapped and map-on-call) and
//! message passing side by side, on the same host, in the same run.
//!
//! - **Latency against object size** (one INOUT object, 8 B to 16 MiB):
//!   every figure in [`ROUNDS`] rounds; in each round every figure takes
//!   its turn, each right after a floor batch of its own system, and the
//!   round's ratio is `figure p50 / (2 × that floor batch's p50)`. The
//!   ratio reported is the median over rounds with a distribution-free
//!   interval ([`super::ci`]).
//! - **Mapping and unmapping under load**: a lease of 1, 16 and 256 pages
//!   and a map-on-call call of the same sizes against the same size
//!   copied (and pre-mapped), while a second guest thread of another
//!   domain loops null calls into the same callee.
//! - **Footprint**: memory slots, resident memory and vCPUs per domain
//!   with 1, 4 and 16 threads held in a domain, per mode, and the time to
//!   start a thread.
//! - **Crossover**: the smallest size from which lease and mapped beat
//!   copying (intervals that do not overlap, at that size and every larger one).
//!
//! Three systems: `pool` (a pool caller; a pool callee and a message
//! callee whose stacks hold a 16 MiB copy), `premapped` and `on-call`
//! (a mapped caller and a mapped callee sharing a 20 MiB window stack per
//! thread, the object on the caller's window stack). The callees are the
//! `bench` image's sinks: they touch nothing, so a figure is the cost of
//! getting the object there and back, not of using it.

#![expect(
    clippy::cast_precision_loss,
    reason = "figures: counts, sizes and cycles far below 2^52"
)]

use super::ci::{self, Estimate};
use super::scale::run_confined;
use super::stats::Stats;
use super::BenchError;
use ferry_engine::domain::Domain;
use ferry_engine::manifest::{
    Document, DomainEntry, Ipc, Mapping, StackMode, StacksEntry, System as Manifest,
};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use serde::Serialize;
use shared_abi::FLOOR_SLOT;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Object sizes of a full run (bytes).
pub const SIZES: [u64; 9] = [
    8,
    64,
    512,
    4 << 10,
    32 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];
/// Those of `--quick`.
pub const QUICK_SIZES: [u64; 5] = [8, 512, 4 << 10, 64 << 10, 1 << 20];
// Every size of SIZES, QUICK_SIZES and LOAD_SIZES must be one of the
// `bench` image's STACK_SIZES: `loop_stack` refuses others.
/// Sizes of the map/unmap figures: 1, 16 and 256 pages.
pub const LOAD_SIZES: [u64; 3] = [4 << 10, 64 << 10, 1 << 20];
/// Thread counts of the footprint.
pub const THREADS: [u64; 3] = [1, 4, MAX_THREADS as u64];
/// The most threads the footprint holds at once.
const MAX_THREADS: u32 = 16;
/// Rounds of every latency figure (10: the interval is the 2nd to 9th
/// order statistic, ≈ 97.9 %).
pub const ROUNDS: usize = 10;

/// KiB of each thread's window stack in the latency systems: a 16 MiB
/// object and the frames around it (3 slots fit the 64 MiB window).
const WINDOW_KIB: u64 = 20 << 10;
/// KiB of a pool callee's stack: half of it holds a 16 MiB copy.
const POOL_STACK_KIB: u64 = (32 << 10) + 64;
/// The most a footprint thread may take to arrive.
const ARRIVE_LIMIT: Duration = Duration::from_secs(20);
/// How long the footprint waits after the last holder arrived.
const SETTLE: Duration = Duration::from_millis(50);
/// Calls per load-thread batch.
const LOAD_BATCH: u64 = 100;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct StacksOptions {
    /// Fewer sizes and samples (a smoke run).
    pub quick: bool,
    /// Skip every size above this (for tests; `None`: no cap).
    pub max_size: Option<u64>,
}

impl StacksOptions {
    /// Samples per batch of an object of `bytes`.
    fn per_batch(self, bytes: u64) -> u64 {
        match (self.quick, bytes) {
            (true, _) => 5,
            (false, b) if b <= 256 << 10 => 30,
            (false, b) if b <= 1 << 20 => 20,
            (false, b) if b <= 4 << 20 => 10,
            _ => 5,
        }
    }

    fn floor_batch(self) -> u64 {
        if self.quick {
            20
        } else {
            50
        }
    }

    fn sizes(self) -> Vec<u64> {
        let all: &[u64] = if self.quick { &QUICK_SIZES } else { &SIZES };
        all.iter()
            .copied()
            .filter(|&b| self.max_size.is_none_or(|m| b <= m))
            .collect()
    }
}

/// How an object travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// A pool callee; the VMM copies the object in and back.
    PoolCopy,
    /// A pool callee; the object's pages are lent (mapped into the
    /// callee's lease window for the call). Whole pages only.
    PoolLease,
    /// Mapped caller and callee, the thread's window stack mapped into
    /// both when the thread starts; the object passes in place.
    Premapped,
    /// The same, the window stack mapped into the callee at each call and
    /// unmapped at its return.
    OnCall,
    /// A message-mode callee (a server thread); the object is copied.
    Message,
}

impl Strategy {
    /// Every strategy, in table order.
    pub const ALL: [Strategy; 5] = [
        Strategy::PoolCopy,
        Strategy::PoolLease,
        Strategy::Premapped,
        Strategy::OnCall,
        Strategy::Message,
    ];

    /// Its name in the table and plot.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::PoolCopy => "pool + copy",
            Strategy::PoolLease => "pool + lease",
            Strategy::Premapped => "mapped, pre-mapped",
            Strategy::OnCall => "mapped, on-call",
            Strategy::Message => "message (copy)",
        }
    }

    /// The system it runs in.
    fn system(self) -> Sys {
        match self {
            Strategy::PoolCopy | Strategy::PoolLease | Strategy::Message => Sys::Pool,
            Strategy::Premapped => Sys::Premapped,
            Strategy::OnCall => Sys::OnCall,
        }
    }

    /// Whether it can carry an object of `bytes` (a lease needs whole pages).
    fn carries(self, bytes: u64) -> bool {
        self != Strategy::PoolLease || bytes.is_multiple_of(4096)
    }

    /// The caller entry and its scalars for `n` INOUT calls of `bytes`.
    fn run(self, n: u64, bytes: u64) -> (&'static str, Vec<u64>, u32) {
        match self {
            Strategy::PoolCopy => ("loop_call", vec![0, n, bytes, 3], 0),
            Strategy::PoolLease => ("loop_lend", vec![0, n, bytes, 3, 0], 0),
            Strategy::Premapped | Strategy::OnCall => ("loop_stack", vec![0, n, bytes, 3], 0),
            Strategy::Message => ("loop_call", vec![1, n, bytes, 3], 1),
        }
    }
}

/// The three latency systems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sys {
    Pool,
    Premapped,
    OnCall,
}

/// The booted latency systems.
struct Systems {
    pool: System,
    premapped: System,
    on_call: System,
}

impl Systems {
    fn get(&self, s: Sys) -> &System {
        match s {
            Sys::Pool => &self.pool,
            Sys::Premapped => &self.premapped,
            Sys::OnCall => &self.on_call,
        }
    }
}

/// One latency figure.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// How the object travelled.
    pub strategy: Strategy,
    /// Object size (bytes).
    pub bytes: u64,
    /// Every sample of every round, pooled (cycles).
    pub stats: Stats,
    /// Median over rounds of `p50 / (2 × floor p50)`, with its interval.
    pub ratio: Estimate,
    /// The per-round ratios, in round order.
    pub rounds: Vec<f64>,
}

/// The map/unmap cost at one size: a strategy against the same size copied.
#[derive(Clone, Debug, Serialize)]
pub struct MapCost {
    /// Lease, on-call or pre-mapped.
    pub strategy: Strategy,
    /// Object size (bytes).
    pub bytes: u64,
    /// Pages of the object.
    pub pages: u64,
    /// Its ratio to the floor.
    pub ratio: Estimate,
    /// The copy's ratio to the floor at the same size (same load).
    pub copy_ratio: Estimate,
    /// `ratio.median / copy_ratio.median` (the rounds of the two are not
    /// paired, so no interval: compare the two intervals instead).
    pub vs_copy: f64,
}

/// One domain's cost with `threads` threads held in the system.
#[derive(Clone, Debug, Serialize)]
pub struct DomainFootprint {
    /// `a` (where the threads wait) or `b` (reachable from `a`, unused).
    pub domain: String,
    /// KVM memory slots of its VM: guest memory, leases and window slots.
    pub memory_slots: usize,
    /// Of those, window stacks mapped.
    pub window_slots: u32,
    /// Resident guest memory (KiB).
    pub resident_kib: u64,
    /// vCPUs.
    pub vcpus: u32,
}

/// The footprint of one mode at one thread count.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    /// `pool`, `premapped` or `on-call`.
    pub mode: &'static str,
    /// Threads waiting in `a`.
    pub threads: u64,
    /// `a`, then `b`.
    pub domains: Vec<DomainFootprint>,
    /// Window slots held system-wide (each `window_kib` of host memory,
    /// outside every domain's own memory).
    pub window_slots_held: usize,
}

/// Time to start (and run to its end) a thread on `a.null`, per mode.
#[derive(Clone, Debug, Serialize)]
pub struct StartTime {
    /// `pool`, `premapped` or `on-call`.
    pub mode: &'static str,
    /// Wall-clock µs of `System::run_thread`: median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// Threads timed.
    pub count: usize,
}

/// The smallest size from which a strategy beats pool + copy.
#[derive(Clone, Debug, Serialize)]
pub struct Crossover {
    /// Lease, pre-mapped or on-call.
    pub strategy: Strategy,
    /// Bytes, or `None`: not distinguishable at any measured size (or not
    /// from that size on).
    pub bytes: Option<u64>,
}

/// Everything `ferry bench --stacks` measured.
#[derive(Clone, Debug, Serialize)]
pub struct StacksReport {
    /// Guest TSC frequency (kHz; 0 if KVM does not say).
    pub tsc_khz: u32,
    /// A smoke run.
    pub quick: bool,
    /// Rounds per figure.
    pub rounds: usize,
    /// Coverage of every interval (exact, from the binomial).
    pub confidence: f64,
    /// Every floor batch of the latency figures, pooled (cycles).
    pub floor: Stats,
    /// Latency against size.
    pub sizes: Vec<Point>,
    /// The figures measured under load (a second thread calling the callee).
    pub loaded: Vec<Point>,
    /// Mapping and unmapping against copying, from `loaded`.
    pub map_costs: Vec<MapCost>,
    /// Footprint per mode and thread count.
    pub footprints: Vec<Footprint>,
    /// Time to start a thread, per mode.
    pub start: Vec<StartTime>,
    /// Crossover sizes.
    pub crossover: Vec<Crossover>,
}

fn run_err(run: &str, why: impl std::fmt::Debug) -> BenchError {
    BenchError::Run {
        run: run.to_owned(),
        why: format!("{why:?}"),
    }
}

fn domain<'s>(sys: &'s System, name: &str) -> Result<&'s Domain, BenchError> {
    sys.domain_by_name(name)
        .ok_or_else(|| run_err("setup", format!("no domain `{name}`")))
}

/// One run of `caller`'s `entry`: the samples it recorded with `want`.
fn batch(sys: &System, entry: &str, args: &[u64], want: u32) -> Result<Vec<u64>, BenchError> {
    super::scale::batch(sys, domain(sys, "caller")?, entry, args, want)
}

/// A domain of the latency systems running the `bench` image.
fn bench_domain(name: &str, mode: StackMode) -> DomainEntry {
    DomainEntry::new(name, "bench").stack(mode).exports([
        "null",
        "sink_in",
        "sink_out",
        "sink_inout",
        "loop_call",
        "loop_lend",
        "loop_stack",
        "loop_floor",
    ])
}

/// The pool system: a caller (slot 0 the pool callee's `sink_inout`,
/// slot 1 the message callee's), a `load` domain calling the pool
/// callee's `null`, and the two callees, 3 stacks each of
/// [`POOL_STACK_KIB`].
pub fn pool_manifest() -> Document {
    let callee_mib = 3 * POOL_STACK_KIB.div_ceil(1024) + 16;
    Document::default()
        .domain(
            bench_domain("caller", StackMode::Pool)
                .memory_mib(48)
                .stacks(2, 64)
                .capabilities(["callee.sink_inout", "mcallee.sink_inout"]),
        )
        .domain(
            bench_domain("load", StackMode::Pool)
                .memory_mib(4)
                .stacks(2, 64)
                .capabilities(["callee.null"]),
        )
        .domain(
            bench_domain("callee", StackMode::Pool)
                .memory_mib(callee_mib)
                .stacks(3, POOL_STACK_KIB),
        )
        .domain(
            bench_domain("mcallee", StackMode::Pool)
                .memory_mib(callee_mib)
                .stacks(3, POOL_STACK_KIB)
                .ipc(Ipc::Message),
        )
}

/// A mapped system: caller (slot 0 the callee's `sink_inout`), `load`
/// (slot 0 the callee's `null`) and callee, all `stack = "mapped"`, each
/// thread's window stack [`WINDOW_KIB`].
pub fn mapped_manifest(mapping: Mapping) -> Document {
    let mut doc = Document::default()
        .domain(
            bench_domain("caller", StackMode::Mapped)
                .memory_mib(4)
                .stacks(2, 64)
                .capabilities(["callee.sink_inout"]),
        )
        .domain(
            bench_domain("load", StackMode::Mapped)
                .memory_mib(4)
                .stacks(2, 64)
                .capabilities(["callee.null"]),
        )
        .domain(
            bench_domain("callee", StackMode::Mapped)
                .memory_mib(4)
                .stacks(3, 64),
        );
    doc.stacks = Some(StacksEntry {
        mapping,
        window_kib: WINDOW_KIB,
    });
    doc
}

/// A thread of `load` looping null calls into the callee until `stop`.
fn load_loop(sys: &System, stop: &AtomicBool) -> Result<(), BenchError> {
    while !stop.load(Ordering::Acquire) {
        match run_confined(sys, "load", "loop_call", &[0, LOAD_BATCH, 0, 0]) {
            ThreadResult::Returned {
                status: 0,
                results: [_, 0],
            } => {}
            other => return Err(run_err("load thread", other)),
        }
    }
    Ok(())
}

/// The samples and per-round ratios of one figure being measured.
struct Acc {
    strategy: Strategy,
    bytes: u64,
    samples: Vec<u64>,
    rounds: Vec<f64>,
}

impl Acc {
    fn point(self) -> Option<Point> {
        Some(Point {
            strategy: self.strategy,
            bytes: self.bytes,
            stats: Stats::from_cycles(&self.samples)?,
            ratio: ci::median_ci(&self.rounds)?,
            rounds: self.rounds,
        })
    }
}

fn p50(v: &[u64]) -> Option<u64> {
    Stats::from_cycles(v).map(|s| s.p50).filter(|&p| p > 0)
}

/// Measure `figures` in [`ROUNDS`] rounds: in each, every figure after a
/// floor batch of its own system. Floor samples go to `floor`.
fn rounds(
    systems: &Systems,
    figures: &[(Strategy, u64)],
    opts: StacksOptions,
    floor: &mut Vec<u64>,
    progress: &dyn Fn(&str),
) -> Result<Vec<Point>, BenchError> {
    let mut accs: Vec<Acc> = figures
        .iter()
        .map(|&(strategy, bytes)| Acc {
            strategy,
            bytes,
            samples: Vec::new(),
            rounds: Vec::new(),
        })
        .collect();
    // Warm-up: every path taken once (stacks, vCPUs, servers, pages).
    for &(s, bytes) in figures {
        let (entry, args, slot) = s.run(2, bytes);
        batch(systems.get(s.system()), entry, &args, slot)?;
    }
    for r in 0..ROUNDS {
        progress(&format!("round {}/{ROUNDS}", r + 1));
        for acc in &mut accs {
            let sys = systems.get(acc.strategy.system());
            let f = batch(sys, "loop_floor", &[opts.floor_batch()], FLOOR_SLOT)?;
            let (entry, args, slot) = acc.strategy.run(opts.per_batch(acc.bytes), acc.bytes);
            let s = batch(sys, entry, &args, slot)?;
            let (Some(fp), Some(sp)) = (p50(&f), p50(&s)) else {
                return Err(run_err(entry, "a batch recorded no samples"));
            };
            acc.rounds.push(sp as f64 / (2.0 * fp as f64));
            acc.samples.extend(s);
            floor.extend(f);
        }
    }
    Ok(accs.into_iter().filter_map(Acc::point).collect())
}

/// The smallest measured size from which `s` beats pool + copy at every
/// larger measured size too (its interval wholly below the copy's).
fn crossover(points: &[Point], s: Strategy) -> Option<u64> {
    let find = |st: Strategy, b: u64| {
        points
            .iter()
            .find(|p| p.strategy == st && p.bytes == b)
            .map(|p| p.ratio)
    };
    let mut sizes: Vec<u64> = points
        .iter()
        .filter(|p| p.strategy == s)
        .map(|p| p.bytes)
        .collect();
    sizes.sort_unstable();
    let beats = |b: u64| match (find(s, b), find(Strategy::PoolCopy, b)) {
        (Some(x), Some(c)) => x.below(&c),
        _ => false,
    };
    let mut from = None;
    for &b in sizes.iter().rev() {
        if beats(b) {
            from = Some(b);
        } else {
            break;
        }
    }
    from
}

/// The footprint system: `a` (where the threads wait, `rendezvous`) with
/// a capability to `b.null`, both `testguest`, in `mode`.
fn footprint_manifest(mode: Option<Mapping>) -> Document {
    let stack = if mode.is_some() {
        StackMode::Mapped
    } else {
        StackMode::Pool
    };
    let seats = MAX_THREADS + 2;
    let mut doc = Document::default()
        .domain(
            DomainEntry::new("a", "testguest")
                .stack(stack)
                .memory_mib(8)
                .stacks(seats, 64)
                .exports(["null", "rendezvous"])
                .capabilities(["b.null"]),
        )
        .domain(
            DomainEntry::new("b", "testguest")
                .stack(stack)
                .memory_mib(8)
                .stacks(seats, 64)
                .exports(["null"]),
        );
    if let Some(mapping) = mode {
        doc.stacks = Some(StacksEntry {
            mapping,
            window_kib: 256,
        });
    }
    doc
}

fn mode_name(mode: Option<Mapping>) -> &'static str {
    match mode {
        None => "pool",
        Some(Mapping::Premapped) => "premapped",
        Some(Mapping::OnCall) => "on-call",
    }
}

fn domain_footprint(d: &Domain) -> DomainFootprint {
    DomainFootprint {
        domain: d.name.clone(),
        memory_slots: d.memory_slots() + d.window_slots_mapped() as usize,
        window_slots: d.window_slots_mapped(),
        resident_kib: d.resident_bytes().map_or(0, |r| r >> 10),
        vcpus: d.vcpu_count(),
    }
}

/// Hold `threads` threads in `a` (a `rendezvous` for `threads + 1`), read
/// both domains, release them with the last arrival. `testguest` counts
/// arrivals over the domain's life: `before` is the count so far.
fn hold(
    sys: &System,
    mode: Option<Mapping>,
    threads: u64,
    before: u64,
) -> Result<Footprint, BenchError> {
    let a = domain(sys, "a")?;
    let b = domain(sys, "b")?;
    let timeout = u64::from(a.tsc_khz).max(3_000_000) * 30_000;
    let need = before + threads + 1;
    std::thread::scope(|s| {
        let holders: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || run_confined(sys, "a", "rendezvous", &[need, timeout])))
            .collect();
        let t0 = Instant::now();
        let mut arrived = true;
        // Every holder is in `a` once its frame is active and (mapped
        // modes) its window stack is mapped there, which takes a while
        // with many vCPUs spinning in the VM.
        let settled = || {
            u64::from(a.active_frames()) >= threads
                && (mode.is_none() || u64::from(a.window_slots_mapped()) >= threads)
        };
        while !settled() {
            if t0.elapsed() > ARRIVE_LIMIT || holders.iter().any(|h| h.is_finished()) {
                arrived = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Let the last arrivals settle into their spin.
        std::thread::sleep(SETTLE);
        let fp = Footprint {
            mode: mode_name(mode),
            threads,
            domains: vec![domain_footprint(a), domain_footprint(b)],
            window_slots_held: sys.window_free_slots().map_or(0, |free| {
                let total = shared_abi::layout::STACK_WINDOW_SIZE / ((256 << 10) + 4096);
                (total as usize).saturating_sub(free)
            }),
        };
        let released = run_confined(sys, "a", "rendezvous", &[need, timeout]);
        let mut results = vec![released];
        for h in holders {
            results.push(h.join().unwrap_or(ThreadResult::NotStarted(
                ferry_engine::thread::NotStarted::Panicked,
            )));
        }
        if !arrived {
            return Err(run_err(
                "footprint",
                format!("{threads} holders in `a` never all arrived: {results:?}"),
            ));
        }
        for r in &results {
            if !matches!(r, ThreadResult::Returned { status: 0, .. }) {
                return Err(run_err("footprint release", r));
            }
        }
        Ok(fp)
    })
}

/// Wall time of `count` threads started on `a.null`, one after another
/// on one confined host thread.
fn start_times(sys: &System, count: usize) -> Result<Vec<f64>, BenchError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ferry_engine::sandbox::confine_current_thread()
                .map_err(|e| run_err("start", format!("no sandbox: {e}")))?;
            (0..count)
                .map(|_| {
                    let t0 = Instant::now();
                    let out = sys.run_thread("a", "null", &[]);
                    let us = t0.elapsed().as_secs_f64() * 1e6;
                    match out.result {
                        ThreadResult::Returned { status: 0, .. } => Ok(us),
                        other => Err(run_err("start", other)),
                    }
                })
                .collect()
        })
        .join()
        .unwrap_or_else(|_| Err(run_err("start", "the bench thread panicked")))
    })
}

/// The `pct`-th percentile (nearest rank below) of `v`; 0 for none.
fn percentile(v: &mut [f64], pct: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = v.len().saturating_sub(1) * pct / 100;
    v.get(i).copied().unwrap_or(0.0)
}

/// Footprints and start times of every mode.
fn footprints(opts: StacksOptions) -> Result<(Vec<Footprint>, Vec<StartTime>), BenchError> {
    let mut fps = Vec::new();
    let mut starts = Vec::new();
    for mode in [None, Some(Mapping::Premapped), Some(Mapping::OnCall)] {
        let spec = Manifest::from_document(&footprint_manifest(mode), None)?;
        let sys = System::boot(spec, None)?;
        let mut arrivals = 0;
        for t in THREADS {
            fps.push(hold(&sys, mode, t, arrivals)?);
            arrivals += t + 1;
        }
        let mut us = start_times(&sys, if opts.quick { 10 } else { 100 })?;
        starts.push(StartTime {
            mode: mode_name(mode),
            p50_us: percentile(&mut us, 50),
            p90_us: percentile(&mut us, 90),
            count: us.len(),
        });
    }
    Ok((fps, starts))
}

/// Boot the three latency systems and measure everything.
pub fn run(opts: StacksOptions, progress: &dyn Fn(&str)) -> Result<StacksReport, BenchError> {
    let boot = |doc: Document| -> Result<System, BenchError> {
        Ok(System::boot(Manifest::from_document(&doc, None)?, None)?)
    };
    let systems = Systems {
        pool: boot(pool_manifest())?,
        premapped: boot(mapped_manifest(Mapping::Premapped))?,
        on_call: boot(mapped_manifest(Mapping::OnCall))?,
    };
    let tsc_khz = domain(&systems.pool, "caller")?.tsc_khz;
    let mut floor = Vec::new();

    // 1. Latency against size, every strategy.
    let figures: Vec<(Strategy, u64)> = Strategy::ALL
        .iter()
        .flat_map(|&s| opts.sizes().into_iter().map(move |b| (s, b)))
        .filter(|&(s, b)| s.carries(b))
        .collect();
    progress("latency against size");
    let sizes = rounds(&systems, &figures, opts, &mut floor, progress)?;

    // 2. Map/unmap under load: per system, a load thread calls its
    // callee while that system's figures are measured.
    let load_sizes: Vec<u64> = LOAD_SIZES
        .iter()
        .copied()
        .filter(|&b| opts.max_size.is_none_or(|m| b <= m))
        .collect();
    let mut loaded = Vec::new();
    for (sys, strategies, what) in [
        (
            Sys::Pool,
            &[Strategy::PoolCopy, Strategy::PoolLease][..],
            "pool",
        ),
        (Sys::OnCall, &[Strategy::OnCall][..], "on-call"),
        (Sys::Premapped, &[Strategy::Premapped][..], "pre-mapped"),
    ] {
        progress(&format!("under load: {what}"));
        let figs: Vec<(Strategy, u64)> = strategies
            .iter()
            .flat_map(|&s| load_sizes.iter().map(move |&b| (s, b)))
            .collect();
        let stop = AtomicBool::new(false);
        let s = systems.get(sys);
        let points = std::thread::scope(|sc| {
            let load = sc.spawn(|| load_loop(s, &stop));
            let r = rounds(&systems, &figs, opts, &mut Vec::new(), progress);
            stop.store(true, Ordering::Release);
            let l = load
                .join()
                .unwrap_or_else(|_| Err(run_err("load", "the load thread panicked")));
            l.and(r)
        })?;
        loaded.extend(points);
    }
    let find = |st: Strategy, b: u64| {
        loaded
            .iter()
            .find(|p| p.strategy == st && p.bytes == b)
            .map(|p| p.ratio)
    };
    let map_costs = [Strategy::PoolLease, Strategy::OnCall, Strategy::Premapped]
        .iter()
        .flat_map(|&s| load_sizes.iter().map(move |&b| (s, b)))
        .filter_map(|(s, b)| {
            let (ratio, copy_ratio) = (find(s, b)?, find(Strategy::PoolCopy, b)?);
            Some(MapCost {
                strategy: s,
                bytes: b,
                pages: b / 4096,
                ratio,
                copy_ratio,
                vs_copy: ratio.median / copy_ratio.median,
            })
        })
        .collect();
    drop(systems);

    // 3. Footprint and start time.
    progress("footprint");
    let (footprints, start) = footprints(opts)?;

    let crossover = [Strategy::PoolLease, Strategy::Premapped, Strategy::OnCall]
        .iter()
        .map(|&s| Crossover {
            strategy: s,
            bytes: crossover(&sizes, s),
        })
        .collect();
    Ok(StacksReport {
        tsc_khz,
        quick: opts.quick,
        rounds: ROUNDS,
        confidence: ci::order_statistic(ROUNDS).map_or(0.0, |(_, c)| c),
        floor: Stats::from_cycles(&floor).unwrap_or_default(),
        sizes,
        loaded,
        map_costs,
        footprints,
        start,
        crossover,
    })
}

fn size_name(bytes: u64) -> String {
    super::size_name(bytes)
}

fn fmt_ratio(e: &Estimate) -> String {
    format!("{:.2} [{:.2}, {:.2}]", e.median, e.lo, e.hi)
}

impl StacksReport {
    fn us(&self, c: u64) -> String {
        if self.tsc_khz > 0 {
            format!("{:.1}", c as f64 * 1e3 / f64::from(self.tsc_khz))
        } else {
            format!("{c}c")
        }
    }

    fn points_table(&self, f: &mut std::fmt::Formatter<'_>, pts: &[Point]) -> std::fmt::Result {
        writeln!(
            f,
            "{:<20} {:>8} {:>6} {:>10} {:>10}  {:<24}",
            "strategy", "size", "count", "p50 µs", "p99 µs", "ratio to floor [CI]"
        )?;
        for p in pts {
            writeln!(
                f,
                "{:<20} {:>8} {:>6} {:>10} {:>10}  {:<24}",
                p.strategy.name(),
                size_name(p.bytes),
                p.stats.count,
                self.us(p.stats.p50),
                self.us(p.stats.p99),
                fmt_ratio(&p.ratio)
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for StacksReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ferry bench --stacks{}: one INOUT object, callees that do not touch it",
            if self.quick { " (quick)" } else { "" }
        )?;
        writeln!(
            f,
            "ratio = median over {} rounds of (figure p50 / (2 × floor p50)), each round's floor batch \
             right before the figure; [CI] = order-statistic interval of that median, {:.1} % confidence",
            self.rounds,
            self.confidence * 100.0
        )?;
        writeln!(
            f,
            "floor (null out round trip, all floor batches): p50 {} µs, p99 {} µs, {} samples",
            self.us(self.floor.p50),
            self.us(self.floor.p99),
            self.floor.count
        )?;
        writeln!(
            f,
            "pool + lease below 4 KiB: not lendable (no whole page), not measured: it is pool + copy\n"
        )?;
        writeln!(f, "latency against object size")?;
        let mut by_strategy = self.sizes.clone();
        by_strategy.sort_by_key(|p| (Strategy::ALL.iter().position(|s| *s == p.strategy), p.bytes));
        self.points_table(f, &by_strategy)?;
        writeln!(
            f,
            "\nmapping and unmapping under load (a second thread of another domain loops null calls \
             into the same callee while these are measured)"
        )?;
        self.points_table(f, &self.loaded)?;
        writeln!(
            f,
            "\n{:<20} {:>8} {:>6} {:>24} {:>24} {:>9}",
            "map/unmap", "size", "pages", "ratio to floor [CI]", "copy, same size [CI]", "÷ copy"
        )?;
        for m in &self.map_costs {
            writeln!(
                f,
                "{:<20} {:>8} {:>6} {:>24} {:>24} {:>9.2}",
                m.strategy.name(),
                size_name(m.bytes),
                m.pages,
                fmt_ratio(&m.ratio),
                fmt_ratio(&m.copy_ratio),
                m.vs_copy
            )?;
        }
        writeln!(
            f,
            "\nfootprint: threads held in `a` (a rendezvous); `b` is reachable from `a` but not entered"
        )?;
        writeln!(
            f,
            "{:<10} {:>7} {:>6} {:>9} {:>7} {:>13} {:>6} {:>14}",
            "mode",
            "threads",
            "domain",
            "memslots",
            "window",
            "resident KiB",
            "vCPUs",
            "window held"
        )?;
        for fp in &self.footprints {
            for d in &fp.domains {
                writeln!(
                    f,
                    "{:<10} {:>7} {:>6} {:>9} {:>7} {:>13} {:>6} {:>14}",
                    fp.mode,
                    fp.threads,
                    d.domain,
                    d.memory_slots,
                    d.window_slots,
                    d.resident_kib,
                    d.vcpus,
                    fp.window_slots_held
                )?;
            }
        }
        writeln!(
            f,
            "(a window slot is 256 KiB + a guard page of host memory per thread, outside every domain's memory)"
        )?;
        writeln!(
            f,
            "\ntime to start a thread on a.null and run it to its end (host wall clock)"
        )?;
        for s in &self.start {
            writeln!(
                f,
                "  {:<10} p50 {:>8.1} µs   p90 {:>8.1} µs   ({} threads)",
                s.mode, s.p50_us, s.p90_us, s.count
            )?;
        }
        writeln!(
            f,
            "\ncrossover against pool + copy (intervals apart at that size and every larger one):"
        )?;
        for c in &self.crossover {
            match c.bytes {
                Some(b) => writeln!(f, "  {:<20} from {}", c.strategy.name(), size_name(b))?,
                None => writeln!(f, "  {:<20} not distinguishable", c.strategy.name())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_valid() {
        let pool = Manifest::from_document(&pool_manifest(), None).unwrap();
        let callee = &pool.domains[pool.domain_index("callee").unwrap()];
        // Half a stack holds a 16 MiB copy and the invocation.
        assert!(callee.stack_size / 2 >= (16 << 20) + 4096);
        for m in [Mapping::Premapped, Mapping::OnCall] {
            Manifest::from_document(&mapped_manifest(m), None).unwrap();
        }
        for m in [None, Some(Mapping::Premapped), Some(Mapping::OnCall)] {
            Manifest::from_document(&footprint_manifest(m), None).unwrap();
        }
    }

    #[test]
    fn leases_need_whole_pages() {
        assert!(!Strategy::PoolLease.carries(512));
        assert!(Strategy::PoolLease.carries(4096));
        assert!(Strategy::PoolCopy.carries(8));
    }

    fn point(strategy: Strategy, bytes: u64, r: f64) -> Point {
        Point {
            strategy,
            bytes,
            stats: Stats::default(),
            ratio: ci::median_ci(&[r - 0.1, r, r + 0.1]).unwrap(),
            rounds: vec![],
        }
    }

    #[test]
    fn crossover_is_the_smallest_size_from_which_it_always_wins() {
        let pts = vec![
            point(Strategy::PoolCopy, 4096, 1.0),
            point(Strategy::PoolCopy, 65536, 2.0),
            point(Strategy::PoolCopy, 1 << 20, 5.0),
            point(Strategy::PoolLease, 4096, 0.5), // wins, but not at 64 KiB
            point(Strategy::PoolLease, 65536, 2.0),
            point(Strategy::PoolLease, 1 << 20, 1.5),
            point(Strategy::OnCall, 4096, 3.0),
            point(Strategy::OnCall, 65536, 3.0),
            point(Strategy::OnCall, 1 << 20, 5.05),
        ];
        assert_eq!(crossover(&pts, Strategy::PoolLease), Some(1 << 20));
        assert_eq!(crossover(&pts, Strategy::OnCall), None);
        assert_eq!(crossover(&pts, Strategy::Premapped), None);
    }

    #[test]
    fn quick_sizes_stop_at_one_mebibyte_and_respect_the_cap() {
        let q = StacksOptions {
            quick: true,
            max_size: None,
        };
        assert_eq!(q.sizes().last(), Some(&(1 << 20)));
        let capped = StacksOptions {
            quick: false,
            max_size: Some(4096),
        };
        assert_eq!(capped.sizes(), vec![8, 64, 512, 4096]);
    }
}
