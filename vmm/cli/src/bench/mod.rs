//! `ferry bench`: migration latency measured against the exit floor and
//! the alternatives, on the same machine, in the same run.
//!
//! Every guest-side figure is timed inside the calling guest with `rdtsc`
//! (one sample per call, written to the guest's sample ring, read by the VMM
//! after each batch — no exit per sample). Floor batches (null `out` round
//! trips) are interleaved with the call batches, on the same thread, so the
//! ratio to the floor compares like with like on a noisy host.

// Slot numbers (< 64), object sizes (<= 1 MiB) and sample counts are small
// by construction; a figure is no place for a fallible conversion.
#![expect(
    clippy::cast_possible_truncation,
    reason = "bench parameters are small by construction (slots < 64, sizes <= 1 MiB)"
)]

pub mod baseline;
pub mod ci;
pub mod grow;
pub mod json;
pub mod plot;
pub mod report;
pub mod scale;
pub mod stacks;
pub mod stats;
pub mod table;

use ferry_engine::manifest::{Document, DomainEntry, Ipc, System as Manifest};
use ferry_engine::system::{System, SystemError};
use ferry_engine::thread::{NotStarted, ThreadResult};
use report::{Bandwidth, BenchReport, Figure, Group, Headline, Mode};
use shared_abi::{FLOOR_SLOT, FUNCTION_SLOT, GUEST_SIDE_SLOT};
use stats::Stats;

/// Object sizes measured (bytes).
pub const SIZES: [u64; 6] = [8, 64, 512, 4096, 64 * 1024, 1024 * 1024];
/// Nesting depths measured (hops).
pub const DEPTHS: [u64; 5] = [1, 2, 4, 8, 16];
/// Concurrent thread counts measured (2 cores here: 8 is oversubscribed).
pub const THREADS: [u64; 3] = [1, 2, 8];
/// Callee-domain counts for the round-robin figure.
pub const DOMAINS: [u64; 3] = [2, 8, 64];

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The bench system did not boot.
    #[error("the benchmark system did not start")]
    Boot(#[from] SystemError),
    /// Its generated manifest was refused (a bug).
    #[error("the benchmark manifest is invalid")]
    Manifest(#[from] ferry_engine::manifest::ManifestError),
    /// A measurement loop failed inside the guest.
    #[error("benchmark run `{run}` failed: {why}")]
    Run {
        /// Which run.
        run: String,
        /// What happened.
        why: String,
    },
    /// A host-side baseline failed.
    #[error("baseline `{0}` failed")]
    Baseline(&'static str, #[source] baseline::BaselineError),
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Fewer samples per figure (a smoke run: seconds, not minutes).
    pub quick: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl BenchOptions {
    fn samples(&self) -> u64 {
        if self.quick {
            100
        } else {
            2000
        }
    }
}

/// Rounds in which the figures of a [`Schedule::Rounds`] row take turns.
const ROUNDS: u64 = 10;

const RR_SLOTS: u64 = 64;
/// Capability slots of the `caller` domain after the 64 round-robin ones:
/// per mode, `null`, the three sinks (IN, OUT, INOUT: see [`Dir::slot`])
/// and `relay`.
const SLOT_NULL: u64 = RR_SLOTS;
const SLOT_SINK: u64 = RR_SLOTS + 1;
const SLOT_RELAY: u64 = RR_SLOTS + 4;
const SLOT_MNULL: u64 = RR_SLOTS + 5;
const SLOT_MSINK: u64 = RR_SLOTS + 6;
const SLOT_MRELAY: u64 = RR_SLOTS + 9;

/// Every bench domain runs the one `bench` image, which exports all of
/// these: the `bench_api::Bench` interface, then its raw call loops.
const EXPORTS: [&str; 11] = [
    "null",
    "sink_in",
    "sink_out",
    "sink_inout",
    "relay",
    "loop_call",
    "loop_relay",
    "loop_rr",
    "loop_floor",
    "loop_fn",
    "loop_stub",
];

/// A bench domain: memory (MiB), stacks and stack size (KiB), its IPC mode
/// and its capabilities.
fn domain(name: String, (memory_mib, stacks, stack_kib): (u64, u32, u64), ipc: Ipc) -> DomainEntry {
    DomainEntry::new(name, "bench")
        .memory_mib(memory_mib)
        .stacks(stacks, stack_kib)
        .ipc(ipc)
        .exports(EXPORTS)
}

/// The bench system: a caller; a migrate-mode and a message-mode callee
/// with stacks big enough for 1 MiB objects; two 16-deep relay chains (one
/// per mode); 64 small domains for the round-robin figure.
pub fn manifest() -> Document {
    let mut caps: Vec<String> = (1..=RR_SLOTS).map(|i| format!("rr{i}.null")).collect();
    caps.extend(
        [
            "callee.null",
            "callee.sink_in",
            "callee.sink_out",
            "callee.sink_inout",
            "relay1.relay",
            "mcallee.null",
            "mcallee.sink_in",
            "mcallee.sink_out",
            "mcallee.sink_inout",
            "mrelay1.relay",
        ]
        .map(String::from),
    );
    let mut doc = Document::default()
        // Huge pages on the three domains whose copies the bandwidth
        // figures time (fewer TLB misses on 64 KiB and 1 MiB objects).
        .domain(
            domain("caller".into(), (24, 12, 64), Ipc::Migrate)
                .capabilities(caps)
                .huge_pages(true),
        )
        // 8 stacks of 2304 KiB: budget (half a stack) holds a 1 MiB object.
        .domain(domain("callee".into(), (40, 8, 2304), Ipc::Migrate).huge_pages(true))
        .domain(domain("mcallee".into(), (40, 8, 2304), Ipc::Message).huge_pages(true));
    for (prefix, ipc) in [("relay", Ipc::Migrate), ("mrelay", Ipc::Message)] {
        for i in 1..=16 {
            let next = (i < 16).then(|| format!("{prefix}{}.relay", i + 1));
            doc = doc.domain(domain(format!("{prefix}{i}"), (4, 2, 16), ipc).capabilities(next));
        }
    }
    for i in 1..=RR_SLOTS {
        doc = doc.domain(domain(format!("rr{i}"), (4, 2, 16), Ipc::Migrate));
    }
    doc
}

/// The direction of a sink call's one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    In,
    Out,
    InOut,
}

impl Dir {
    /// The code `loop_call` takes.
    fn code(self) -> u64 {
        match self {
            Dir::In => 1,
            Dir::Out => 2,
            Dir::InOut => 3,
        }
    }

    /// The slot of this direction's sink, given the mode's first sink slot.
    fn slot(self, first: u64) -> u64 {
        match self {
            Dir::In => first,
            Dir::Out => first + 1,
            Dir::InOut => first + 2,
        }
    }

    /// The name in the JSON (`dir`) and, upper-cased, in figure names.
    fn name(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
            Dir::InOut => "inout",
        }
    }
}

/// What a row runs, and what its parameter means.
#[derive(Clone, Copy, Debug)]
enum What {
    /// `loop_call` on a null entry; the parameter, if any, is the number of
    /// host threads calling at once.
    Null,
    /// `loop_call` on a sink with one object of `param` bytes.
    Sink(Dir),
    /// `loop_relay` down a chain `param` hops deep; samples are per hop.
    Relay,
    /// `loop_rr` over `param` callee domains.
    RoundRobin,
    /// `loop_fn`: a plain function call in the guest.
    Function,
    /// `loop_stub`: the caller's own cycles around a null call (`param` 0)
    /// or a `sink_inout` of `param` bytes, raw or typed by mode.
    Stub,
    /// On the host: a pipe ping-pong with a forked partner.
    Pipe {
        /// Both processes on one CPU.
        pinned: bool,
    },
    /// The VMM work sampled during the [`Profile::Work`] rows so far.
    VmmWork,
    /// Every floor batch of the run so far, pooled.
    Floor,
}

/// How a row's batches are laid out against the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schedule {
    /// One floor batch before each figure's single batch.
    Batches,
    /// [`ROUNDS`] rounds; in each, a floor batch, then a share of every
    /// figure of the row in turn, so each sees the same mix of the host's
    /// fast and slow phases.
    Rounds,
    /// No floor batch (host-side figures and the in-guest function call).
    Alone,
}

/// What the VMM logs during a row's migrate batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// Nothing.
    Off,
    /// Its own work per call+return (the VMM-work figure).
    Work,
    /// Its copy timings (the bandwidth figures).
    Copies,
}

/// What a figure's ratio is against.
#[derive(Clone, Copy, Debug)]
enum Exits {
    Two,
    One,
    /// No ratio: the figure excludes the exits (guest-side cycles).
    None,
}

/// One row of the bench: a figure per mode × parameter.
struct FigureSpec {
    group: Group,
    /// Modes, each measured for every parameter (mode-major).
    modes: &'static [Mode],
    /// Parameter values (one figure each), or none for one figure per mode.
    params: &'static [u64],
    /// The figure's name for a parameter (given 0 for a row without parameters).
    label: fn(u64) -> String,
    what: What,
    schedule: Schedule,
    /// Samples per figure are the run's sample count divided by this (and
    /// by the rounds and threads sharing them), at least `min`.
    share: u64,
    min: u64,
    profile: Profile,
    exits: Exits,
    /// Keep the CDF for the CDF plot.
    cdf: bool,
}

const BOTH: &[Mode] = &[Mode::Migrate, Mode::Message];
const MIGRATE: &[Mode] = &[Mode::Migrate];
const MESSAGE: &[Mode] = &[Mode::Message];

/// A row with the defaults most rows share.
const ROW: FigureSpec = FigureSpec {
    group: Group::Baseline,
    modes: MIGRATE,
    params: &[],
    label: |_| String::new(),
    what: What::Null,
    schedule: Schedule::Batches,
    share: 1,
    min: 10,
    profile: Profile::Off,
    exits: Exits::Two,
    cdf: false,
};

/// A size row: one object of each of [`SIZES`] in `dir`.
const fn sizes(mode: &'static [Mode], dir: Dir) -> FigureSpec {
    FigureSpec {
        group: Group::Size,
        modes: mode,
        params: &SIZES,
        label: match dir {
            Dir::In => |b| format!("IN {}", size_name(b)),
            Dir::Out => |b| format!("OUT {}", size_name(b)),
            Dir::InOut => |b| format!("INOUT {}", size_name(b)),
        },
        what: What::Sink(dir),
        profile: Profile::Copies,
        ..ROW
    }
}

/// A depth row: time per hop down a relay chain, depths in rounds.
const fn depths(mode: &'static [Mode]) -> FigureSpec {
    FigureSpec {
        group: Group::Depth,
        modes: mode,
        params: &DEPTHS,
        label: |d| format!("depth {d} (per hop)"),
        what: What::Relay,
        schedule: Schedule::Rounds,
        share: 2,
        min: 5,
        ..ROW
    }
}

/// Host-side and in-guest baselines: one exit (or none) per sample.
const fn baseline(
    mode: &'static [Mode],
    name: fn(u64) -> String,
    what: What,
    cdf: bool,
) -> FigureSpec {
    FigureSpec {
        modes: mode,
        label: name,
        what,
        schedule: Schedule::Alone,
        min: 1,
        exits: Exits::One,
        cdf,
        ..ROW
    }
}

/// Every figure, in the order measured and reported. Adding a figure is
/// adding a row.
const FIGURES: [FigureSpec; 17] = [
    // The headline: null call+return, both modes taking turns in rounds
    // with the floor; VMM work measured directly on the migrate batches.
    FigureSpec {
        group: Group::Null,
        modes: BOTH,
        label: |_| "null call+return".into(),
        schedule: Schedule::Rounds,
        profile: Profile::Work,
        cdf: true,
        ..ROW
    },
    // Argument sizes, each direction, both modes. In migrate mode the VMM
    // also times its own copies (host TSC), for the bandwidth figures.
    sizes(MIGRATE, Dir::In),
    sizes(MIGRATE, Dir::Out),
    sizes(MIGRATE, Dir::InOut),
    sizes(MESSAGE, Dir::In),
    sizes(MESSAGE, Dir::Out),
    sizes(MESSAGE, Dir::InOut),
    depths(MIGRATE),
    depths(MESSAGE),
    // Concurrency: threads calling into one domain at once.
    FigureSpec {
        group: Group::Threads,
        modes: BOTH,
        params: &THREADS,
        label: |t| format!("{t} threads"),
        ..ROW
    },
    // Round robin over callee domains, in rounds like the depths.
    FigureSpec {
        group: Group::Domains,
        params: &DOMAINS,
        label: |k| format!("{k} callee domains"),
        what: What::RoundRobin,
        schedule: Schedule::Rounds,
        ..ROW
    },
    // What a typed stub costs the caller against the raw API: the guest's
    // own cycles outside the exit, both taking turns in rounds.
    FigureSpec {
        group: Group::Stub,
        modes: &[Mode::Raw, Mode::Typed],
        params: &[0, 4096],
        label: |b| {
            if b == 0 {
                "null call".into()
            } else {
                format!("INOUT {}", size_name(b))
            }
        },
        what: What::Stub,
        schedule: Schedule::Rounds,
        exits: Exits::None,
        ..ROW
    },
    baseline(
        &[Mode::Function],
        |_| "plain function call (in guest)".into(),
        What::Function,
        false,
    ),
    baseline(
        &[Mode::PipePinned],
        |_| "pipe ping-pong, 2 processes, same CPU".into(),
        What::Pipe { pinned: true },
        true,
    ),
    baseline(
        &[Mode::PipeUnpinned],
        |_| "pipe ping-pong, 2 processes, unpinned".into(),
        What::Pipe { pinned: false },
        true,
    ),
    baseline(
        &[Mode::Vmm],
        |_| "VMM work per call+return (host)".into(),
        What::VmmWork,
        false,
    ),
    // The pooled floor: last, once every floor batch is in.
    baseline(
        &[Mode::Floor],
        |_| "floor: null out round trip".into(),
        What::Floor,
        true,
    ),
];

/// Runs guest loops on the bench system and collects their samples.
struct Bench<'a> {
    sys: &'a System,
    floor: Vec<u64>,
    /// VMM work per call+return from the [`Profile::Work`] rows.
    work: Vec<u64>,
    /// Host cycles of the VMM's copies: (direction, bytes, cycles per call).
    copies: Vec<(Dir, u64, Vec<u64>)>,
    figures: Vec<Figure>,
    /// Exits per sample of each figure (parallel to `figures`).
    exits: Vec<Exits>,
    opts: BenchOptions,
    bar: Option<indicatif::ProgressBar>,
}

impl Bench<'_> {
    fn caller(&self) -> Result<&ferry_engine::domain::Domain, BenchError> {
        self.sys
            .domain_by_name("caller")
            .ok_or_else(|| BenchError::Run {
                run: "setup".into(),
                why: "no caller domain".into(),
            })
    }

    /// Run `entry` of the caller on `threads` host threads at once and
    /// return the samples it recorded for `slot` (any slot if `None`).
    fn run(
        &mut self,
        what: &str,
        entry: &str,
        args: [u64; 4],
        threads: u64,
        slot: Option<u32>,
    ) -> Result<Vec<u64>, BenchError> {
        let caller = self.caller()?;
        let before = caller.sample_count();
        let outcomes: Vec<ThreadResult> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| match ferry_engine::sandbox::confine_current_thread() {
                        Ok(_) => self.sys.run_thread("caller", entry, &args).result,
                        Err(e) => {
                            log::error!("a bench thread runs nothing: {e}");
                            ThreadResult::NotStarted(NotStarted::NoSandbox)
                        }
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(ThreadResult::NotStarted(NotStarted::Panicked))
                })
                .collect()
        });
        for r in outcomes {
            match r {
                ThreadResult::Returned {
                    status: 0,
                    results: [_, 0],
                } => {}
                other => {
                    return Err(BenchError::Run {
                        run: what.to_owned(),
                        why: format!("{other:?}"),
                    })
                }
            }
        }
        let samples: Vec<u64> = caller
            .samples_since(before)
            .into_iter()
            .filter(|s| slot.is_none_or(|x| s.slot == x))
            .map(|s| s.cycles)
            .collect();
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(what.to_owned());
        }
        Ok(samples)
    }

    /// One floor batch, interleaved with the measurements.
    fn floor_batch(&mut self) -> Result<(), BenchError> {
        let n = (self.opts.samples() / 4).max(50);
        let samples = self.run("floor", "loop_floor", [n, 0, 0, 0], 1, Some(FLOOR_SLOT))?;
        self.floor.extend(samples);
        Ok(())
    }

    /// Warm up: every vCPU and server created, every stack and page touched once.
    fn warm_up(&mut self) -> Result<(), BenchError> {
        for slot in [SLOT_NULL, SLOT_MNULL] {
            self.run(
                "warm-up",
                "loop_call",
                [slot, 200, 0, 0],
                1,
                Some(slot as u32),
            )?;
        }
        for slot in [Dir::InOut.slot(SLOT_SINK), Dir::InOut.slot(SLOT_MSINK)] {
            let args = [slot, 200, 4096, Dir::InOut.code()];
            self.run("warm-up", "loop_call", args, 1, Some(slot as u32))?;
        }
        self.run("warm-up", "loop_floor", [200, 0, 0, 0], 1, Some(FLOOR_SLOT))?;
        Ok(())
    }

    /// Measure every figure of one row, per its schedule, and add them.
    fn measure(&mut self, spec: &FigureSpec) -> Result<(), BenchError> {
        let params: Vec<Option<u64>> = if spec.params.is_empty() {
            vec![None]
        } else {
            spec.params.iter().copied().map(Some).collect()
        };
        let figures: Vec<(Mode, Option<u64>)> = spec
            .modes
            .iter()
            .flat_map(|&m| params.iter().map(move |&p| (m, p)))
            .collect();
        let mut samples = vec![Vec::new(); figures.len()];
        let (rounds, share) = match spec.schedule {
            Schedule::Rounds => (ROUNDS, ROUNDS),
            _ => (1, 1),
        };
        for _ in 0..rounds {
            if spec.schedule == Schedule::Rounds {
                self.floor_batch()?;
            }
            for (acc, &(mode, param)) in samples.iter_mut().zip(&figures) {
                if spec.schedule == Schedule::Batches {
                    self.floor_batch()?;
                }
                acc.extend(self.batch(spec, mode, param, share)?);
            }
        }
        for (s, (mode, param)) in samples.iter().zip(figures) {
            let name = (spec.label)(param.unwrap_or(0));
            self.add(spec, mode, param, name, s);
        }
        Ok(())
    }

    /// One batch of one figure: `1/share` of its samples.
    fn batch(
        &mut self,
        spec: &FigureSpec,
        mode: Mode,
        param: Option<u64>,
        share: u64,
    ) -> Result<Vec<u64>, BenchError> {
        let p = param.unwrap_or(0);
        let threads = match spec.what {
            What::Null => param.unwrap_or(1),
            _ => 1,
        };
        let n = (self.opts.samples() / (spec.share * share * threads)).max(spec.min);
        let what = (spec.label)(p);
        let slot = |migrate, message| {
            if mode == Mode::Message {
                message
            } else {
                migrate
            }
        };
        let profile = spec.profile != Profile::Off && mode == Mode::Migrate;
        self.sys.set_profiling(profile);
        let samples = match spec.what {
            What::Null => {
                let s = slot(SLOT_NULL, SLOT_MNULL);
                self.run(&what, "loop_call", [s, n, 0, 0], threads, Some(s as u32))
            }
            What::Sink(dir) => {
                let s = dir.slot(slot(SLOT_SINK, SLOT_MSINK));
                let args = [s, n, p, dir.code()];
                self.run(&what, "loop_call", args, 1, Some(s as u32))
            }
            What::Relay => {
                let s = slot(SLOT_RELAY, SLOT_MRELAY);
                let per_chain = self.run(&what, "loop_relay", [s, n, p, 0], 1, Some(s as u32));
                per_chain.map(|v| v.iter().map(|c| c / p.max(1)).collect())
            }
            What::RoundRobin => self.run(&what, "loop_rr", [n, p, 0, 0], 1, None),
            What::Function => self.run(&what, "loop_fn", [n, 0, 0, 0], 1, Some(FUNCTION_SLOT)),
            What::Stub => {
                let s = if p == 0 {
                    SLOT_NULL
                } else {
                    Dir::InOut.slot(SLOT_SINK)
                };
                let typed = u64::from(mode == Mode::Typed);
                let args = [s, n, p, typed];
                self.run(&what, "loop_stub", args, 1, Some(GUEST_SIDE_SLOT))
            }
            What::Pipe { pinned } => baseline::pipe_round_trips(n as usize, pinned).map_err(|e| {
                BenchError::Baseline(
                    if pinned {
                        "pipe (pinned)"
                    } else {
                        "pipe (unpinned)"
                    },
                    e,
                )
            }),
            What::VmmWork => Ok(self.work.clone()),
            What::Floor => Ok(self.floor.clone()),
        };
        self.sys.set_profiling(false);
        if profile {
            let work = self.sys.take_work_samples();
            let copies = self.sys.take_copy_samples();
            match (spec.profile, spec.what) {
                (Profile::Work, _) => self.work.extend(work),
                (Profile::Copies, What::Sink(dir)) if dir != Dir::InOut => {
                    let cycles = copies
                        .iter()
                        .map(|c| {
                            if dir == Dir::In {
                                c.in_cycles
                            } else {
                                c.out_cycles
                            }
                        })
                        .collect();
                    self.copies.push((dir, p, cycles));
                }
                _ => {}
            }
        }
        samples
    }

    /// Every ratio against the floor of the whole run (all interleaved
    /// batches pooled), so each figure and the headline use the same floor.
    fn finish_ratios(&mut self, floor: &Stats, tsc_khz: u32) {
        for (f, exits) in self.figures.iter_mut().zip(&self.exits) {
            f.ns = report::NsStats::of(&f.stats, tsc_khz);
            let per = match exits {
                Exits::Two => 2.0,
                Exits::One => 1.0,
                Exits::None => continue,
            };
            f.ratio_to_floor =
                (floor.p50 > 0).then(|| f.stats.p50 as f64 / (per * floor.p50 as f64));
        }
    }

    fn add(
        &mut self,
        spec: &FigureSpec,
        mode: Mode,
        param: Option<u64>,
        name: String,
        samples: &[u64],
    ) {
        let Some(stats) = Stats::from_cycles(samples) else {
            return;
        };
        // The ratio is set once every floor batch is in: see `finish_ratios`.
        self.exits.push(spec.exits);
        let cdf = if spec.cdf {
            stats::cdf(samples, 200)
        } else {
            Vec::new()
        };
        let dir = match spec.what {
            What::Sink(d) => Some(d.name()),
            _ => None,
        };
        self.figures.push(Figure {
            group: spec.group,
            name,
            mode,
            param,
            dir,
            stats,
            ratio_to_floor: None,
            ns: None,
            cdf,
        });
    }

    fn find(&self, g: Group, m: Mode, p: Option<u64>) -> Option<Stats> {
        self.figures
            .iter()
            .find(|f| f.group == g && f.mode == m && f.param == p)
            .map(|f| f.stats)
    }

    /// Host `memcpy` against the VMM's own copies (p50), per large size;
    /// also the ratios of each copy to memcpy.
    fn bandwidth(&self, tsc_khz: u32) -> (Vec<Bandwidth>, Vec<f64>) {
        let mut bandwidth = Vec::new();
        let mut ratios = Vec::new();
        for size in [64 * 1024u64, 1024 * 1024] {
            let reps = if self.opts.quick { 20 } else { 200 };
            let host = baseline::memcpy_bandwidth(size as usize, reps);
            bandwidth.push(Bandwidth {
                name: format!("host memcpy {}", size_name(size)),
                bytes: size,
                bytes_per_sec: host,
            });
            for (dir, _, cycles) in self.copies.iter().filter(|(_, s, _)| *s == size) {
                let Some(p50) = Stats::from_cycles(cycles).map(|s| s.p50) else {
                    continue;
                };
                if tsc_khz == 0 || p50 == 0 {
                    continue;
                }
                let bw = size as f64 * f64::from(tsc_khz) * 1e3 / p50 as f64;
                let what = if *dir == Dir::In {
                    "IN copy-in"
                } else {
                    "OUT copy-back"
                };
                bandwidth.push(Bandwidth {
                    name: format!("Ferry {what} {} (VMM, p50)", size_name(size)),
                    bytes: size,
                    bytes_per_sec: bw,
                });
                if host > 0.0 {
                    ratios.push(bw / host);
                }
            }
        }
        (bandwidth, ratios)
    }

    /// The headline ratios, from the figures measured.
    fn headline(&self, floor: &Stats, copy_ratios: &[f64], tsc_khz: u32) -> Headline {
        let ns = |c: u64| (tsc_khz > 0).then(|| c as f64 * 1e6 / f64::from(tsc_khz));
        let migrate_null = self.find(Group::Null, Mode::Migrate, None);
        let message_null = self.find(Group::Null, Mode::Message, None);
        let p50s = |g: Group, ps: &[u64]| {
            spread(
                ps.iter()
                    .filter_map(|p| self.find(g, Mode::Migrate, Some(*p)))
                    .map(|s| s.p50),
            )
        };
        Headline {
            migrate_vs_floor: migrate_null
                .filter(|_| floor.p50 > 0)
                .map(|s| s.p50 as f64 / (2.0 * floor.p50 as f64)),
            message_vs_migrate: migrate_null
                .zip(message_null)
                .filter(|(a, _)| a.p50 > 0)
                .map(|(a, m)| m.p50 as f64 / a.p50 as f64),
            vmm_work_ns: Stats::from_cycles(&self.work).and_then(|s| ns(s.p50)),
            copy_vs_memcpy: copy_ratios.iter().copied().reduce(f64::min),
            domains_spread: p50s(Group::Domains, &DOMAINS),
            depth_spread: p50s(Group::Depth, &DEPTHS),
        }
    }
}

fn size_name(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn spread(values: impl Iterator<Item = u64>) -> Option<f64> {
    let v: Vec<u64> = values.collect();
    let (min, max) = (v.iter().min()?, v.iter().max()?);
    (*min > 0).then(|| *max as f64 / *min as f64)
}

/// Guest loop runs (progress steps) of a row: its batches and floor batches.
fn steps(spec: &FigureSpec) -> u64 {
    let figures = (spec.modes.len() * spec.params.len().max(1)) as u64;
    let guest = !matches!(spec.what, What::Pipe { .. } | What::VmmWork | What::Floor);
    match spec.schedule {
        Schedule::Rounds => ROUNDS * (figures + 1),
        Schedule::Batches => 2 * figures,
        Schedule::Alone => u64::from(guest) * figures,
    }
}

/// Boot the bench system and measure everything; the report renders as a
/// table (`Display`), JSON and plots.
pub fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    let sys = System::boot(Manifest::from_document(&manifest(), None)?, None)?;
    let bar = opts.progress.then(|| {
        let total = 5 + FIGURES.iter().map(steps).sum::<u64>();
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let mut b = Bench {
        sys: &sys,
        floor: Vec::new(),
        work: Vec::new(),
        copies: Vec::new(),
        figures: Vec::new(),
        exits: Vec::new(),
        opts,
        bar,
    };
    b.warm_up()?;
    for spec in &FIGURES {
        b.measure(spec)?;
    }
    let floor = Stats::from_cycles(&b.floor).unwrap_or_default();
    let tsc_khz = sys.domains().first().map_or(0, |d| d.tsc_khz);
    b.finish_ratios(&floor, tsc_khz);
    if let Some(bar) = &b.bar {
        bar.finish_and_clear();
    }
    let (bandwidth, copy_ratios) = b.bandwidth(tsc_khz);
    let callback = baseline::callback_cost(if opts.quick { 20 } else { 200 })
        .map_err(|e| BenchError::Baseline("call-back context", e))?;
    let headline = b.headline(&floor, &copy_ratios, tsc_khz);
    Ok(BenchReport {
        machine: baseline::machine(tsc_khz),
        quick: opts.quick,
        floor,
        figures: b.figures,
        bandwidth,
        callback: Some(callback),
        headline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_manifest_is_valid() {
        let spec = Manifest::from_document(&manifest(), None).unwrap();
        assert_eq!(spec.domain_index("caller"), Some(0));
        assert_eq!(spec.domains.len(), 3 + 2 * 16 + RR_SLOTS as usize);
        let caller = &spec.domains[0];
        assert_eq!(caller.capabilities.len() as u64, SLOT_MRELAY + 1);
        assert_eq!(caller.capabilities[SLOT_NULL as usize].entry, "null");
        assert_eq!(
            spec.domains[caller.capabilities[SLOT_MRELAY as usize].domain].name,
            "mrelay1"
        );
        let callee = &spec.domains[1];
        assert_eq!((callee.stacks, callee.stack_size), (8, 2304 * 1024));
        assert_eq!(spec.domains[2].ipc, Ipc::Message);
    }

    #[test]
    fn bench_manifest_round_trips_through_toml() {
        let doc = manifest();
        let text = toml::to_string(&doc).unwrap();
        assert_eq!(toml::from_str::<Document>(&text).unwrap(), doc);
        assert_eq!(
            Manifest::parse(&text, None).unwrap(),
            Manifest::from_document(&doc, None).unwrap()
        );
    }

    /// The table covers what the report and the docs promise: 2 × 3 × 6
    /// size figures, every depth, thread count and domain count per mode.
    #[test]
    fn figure_table_covers_every_family() {
        let count = |g: Group| {
            FIGURES
                .iter()
                .filter(|s| s.group == g)
                .map(|s| s.modes.len() * s.params.len().max(1))
                .sum::<usize>()
        };
        assert_eq!(count(Group::Null), 2);
        assert_eq!(count(Group::Size), 2 * 3 * SIZES.len());
        assert_eq!(count(Group::Depth), 2 * DEPTHS.len());
        assert_eq!(count(Group::Threads), 2 * THREADS.len());
        assert_eq!(count(Group::Domains), DOMAINS.len());
        assert_eq!(count(Group::Baseline), 5);
        assert_eq!((sizes(MIGRATE, Dir::Out).label)(4096), "OUT 4 KiB");
        assert_eq!((depths(MESSAGE).label)(8), "depth 8 (per hop)");
    }

    #[test]
    fn spread_is_max_over_min() {
        assert_eq!(spread([10, 11, 12].into_iter()), Some(1.2));
        assert_eq!(spread(std::iter::empty()), None);
    }
}
