//! `ferry bench`: migration latency measured against the exit floor and
//! the alternatives, on the same machine, in the same run.
//!
//! Every guest-side figure is timed inside the calling guest with `rdtsc`
//! (one sample per call, written to the guest's sample ring, read by the VMM
//! after each batch — no exit per sample). Floor batches (null `out` round
//! trips) are interleaved with the call batches, on the same thread, so the
//! ratio to the floor compares like with like on a noisy host.

pub mod baseline;
pub mod json;
pub mod plot;
pub mod report;
pub mod stats;
pub mod table;

use ferry_engine::manifest::System as Manifest;
use ferry_engine::system::{System, SystemError};
use ferry_engine::thread::{NotStarted, ThreadResult};
use report::{Bandwidth, BenchReport, Figure, Group, Headline, Mode};
use shared_abi::{FLOOR_SLOT, FUNCTION_SLOT};
use stats::Stats;
use std::fmt::Write as _;

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

/// Rounds in which the parameters of a "should be constant" figure (depth,
/// domains) take turns.
const ROUNDS: u64 = 10;

const RR_SLOTS: u64 = 64;
/// Capability slots of the `caller` domain after the 64 round-robin ones.
const SLOT_NULL: u64 = RR_SLOTS;
const SLOT_SINK: u64 = RR_SLOTS + 1;
const SLOT_RELAY: u64 = RR_SLOTS + 2;
const SLOT_MNULL: u64 = RR_SLOTS + 3;
const SLOT_MSINK: u64 = RR_SLOTS + 4;
const SLOT_MRELAY: u64 = RR_SLOTS + 5;

/// Memory (MiB), stacks and stack size (KiB) of a bench domain.
type Size = (u64, u32, u64);

fn domain(
    out: &mut String,
    name: &str,
    (memory_mib, stacks, stack_kib): Size,
    ipc: &str,
    caps: &[String],
) {
    let exports = "\"null\", \"sink\", \"relay\", \"loop_call\", \"loop_relay\", \"loop_rr\", \"loop_floor\", \"loop_fn\"";
    let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
    let _ = write!(
        out,
        "[[domain]]\nname = \"{name}\"\nimage = \"bench\"\nmemory_mib = {memory_mib}\nstacks = {stacks}\nstack_kib = {stack_kib}\nipc = \"{ipc}\"\nexports = [{exports}]\ncapabilities = [{}]\n\n",
        caps.join(", ")
    );
}

/// The bench system: a caller; a migrate-mode and a message-mode callee
/// with stacks big enough for 1 MiB objects; two 16-deep relay chains (one
/// per mode); 64 small domains for the round-robin figure.
pub fn manifest() -> String {
    let mut m = String::new();
    let mut caps: Vec<String> = (1..=RR_SLOTS).map(|i| format!("rr{i}.null")).collect();
    caps.extend(
        [
            "callee.null",
            "callee.sink",
            "relay1.relay",
            "mcallee.null",
            "mcallee.sink",
            "mrelay1.relay",
        ]
        .map(String::from),
    );
    domain(&mut m, "caller", (24, 12, 64), "migrate", &caps);
    // 8 stacks of 2304 KiB: budget (half a stack) holds a 1 MiB object.
    domain(&mut m, "callee", (40, 8, 2304), "migrate", &[]);
    domain(&mut m, "mcallee", (40, 8, 2304), "message", &[]);
    for (prefix, ipc) in [("relay", "migrate"), ("mrelay", "message")] {
        for i in 1..=16 {
            let next = if i < 16 {
                vec![format!("{prefix}{}.relay", i + 1)]
            } else {
                Vec::new()
            };
            domain(&mut m, &format!("{prefix}{i}"), (4, 2, 16), ipc, &next);
        }
    }
    for i in 1..=RR_SLOTS {
        domain(&mut m, &format!("rr{i}"), (4, 2, 16), "migrate", &[]);
    }
    m
}

/// Runs guest loops on the bench system and collects their samples.
struct Bench<'a> {
    sys: &'a System,
    floor: Vec<u64>,
    figures: Vec<Figure>,
    /// Exits per sample of each figure (parallel to `figures`).
    exits: Vec<Exits>,
    opts: BenchOptions,
    bar: Option<indicatif::ProgressBar>,
}

/// What identifies a figure.
struct Key {
    group: Group,
    name: String,
    mode: Mode,
    param: Option<u64>,
    dir: Option<&'static str>,
}

/// What a figure's ratio is against.
#[derive(Clone, Copy)]
enum Exits {
    Two,
    One,
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
                .map(|_| s.spawn(|| self.sys.run_thread("caller", entry, &args).result))
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

    /// One floor batch, interleaved before every measurement.
    fn floor_batch(&mut self) -> Result<(), BenchError> {
        let n = (self.opts.samples() / 4).max(50);
        let samples = self.run("floor", "loop_floor", [n, 0, 0, 0], 1, Some(FLOOR_SLOT))?;
        self.floor.extend(samples);
        Ok(())
    }

    /// Every ratio against the floor of the whole run (all interleaved
    /// batches pooled), so each figure and the headline use the same floor.
    fn finish_ratios(&mut self, floor: &Stats, tsc_khz: u32) {
        for (f, exits) in self.figures.iter_mut().zip(&self.exits) {
            f.ns = report::NsStats::of(&f.stats, tsc_khz);
            let per = match exits {
                Exits::Two => 2.0,
                Exits::One => 1.0,
            };
            f.ratio_to_floor =
                (floor.p50 > 0).then(|| f.stats.p50 as f64 / (per * floor.p50 as f64));
        }
    }

    fn add(&mut self, key: Key, samples: &[u64], exits: Exits, keep_cdf: bool) {
        let Key {
            group,
            name,
            mode,
            param,
            dir,
        } = key;
        let Some(stats) = Stats::from_cycles(samples) else {
            return;
        };
        // The ratio is set once every floor batch is in: see `finish_ratios`.
        self.exits.push(exits);
        let ratio = None;
        let cdf = if keep_cdf {
            stats::cdf(samples, 200)
        } else {
            Vec::new()
        };
        self.figures.push(Figure {
            group,
            name,
            mode,
            param,
            dir,
            stats,
            ratio_to_floor: ratio,
            ns: None,
            cdf,
        });
    }

    /// A loop of calls on `slot` with one object of `size` bytes in `dir`.
    fn calls(
        &mut self,
        what: &str,
        slot: u64,
        size: u64,
        dir: u64,
        threads: u64,
    ) -> Result<Vec<u64>, BenchError> {
        self.floor_batch()?;
        let n = (self.opts.samples() / threads).max(10);
        self.run(
            what,
            "loop_call",
            [slot, n, size, dir],
            threads,
            Some(slot as u32),
        )
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

/// Boot the bench system and measure everything; the report renders as a
/// table (`Display`), JSON and plots.
pub fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    let spec = Manifest::parse(&manifest(), None)?;
    let sys = System::boot(spec, None)?;
    let total = 2 * ROUNDS
        + 2 * (SIZES.len() as u64 * 3)
        + 2 * DEPTHS.len() as u64
        + 2 * THREADS.len() as u64
        + DOMAINS.len() as u64
        + 1;
    let bar = opts.progress.then(|| {
        let bar = indicatif::ProgressBar::new(total * 2);
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
        figures: Vec::new(),
        exits: Vec::new(),
        opts,
        bar,
    };

    // Warm up: every vCPU and server created, every stack and page touched once.
    for slot in [SLOT_NULL, SLOT_MNULL, SLOT_SINK, SLOT_MSINK] {
        b.run(
            "warm-up",
            "loop_call",
            [slot, 200, 4096, 3],
            1,
            Some(slot as u32),
        )?;
    }
    b.run("warm-up", "loop_floor", [200, 0, 0, 0], 1, Some(FLOOR_SLOT))?;

    // The headline: null call+return, both modes taking turns in rounds
    // with the floor; VMM work measured directly on the migrate batches.
    let (mut null, mut mnull) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let n = (opts.samples() / ROUNDS).max(10);
        b.floor_batch()?;
        sys.set_profiling(true);
        null.extend(b.run(
            "null migrate",
            "loop_call",
            [SLOT_NULL, n, 0, 0],
            1,
            Some(SLOT_NULL as u32),
        )?);
        sys.set_profiling(false);
        mnull.extend(b.run(
            "null message",
            "loop_call",
            [SLOT_MNULL, n, 0, 0],
            1,
            Some(SLOT_MNULL as u32),
        )?);
    }
    let work = sys.take_work_samples();
    let _ = sys.take_copy_samples();
    for (mode, samples) in [(Mode::Migrate, &null), (Mode::Message, &mnull)] {
        let key = Key {
            group: Group::Null,
            name: "null call+return".into(),
            mode,
            param: None,
            dir: None,
        };
        b.add(key, samples, Exits::Two, true);
    }

    // Argument sizes, each direction, both modes. In migrate mode the VMM
    // also times its own copies (host TSC), for the bandwidth figures.
    let mut copy_cycles: Vec<(&'static str, u64, Vec<u64>)> = Vec::new();
    for (mode, slot) in [(Mode::Migrate, SLOT_SINK), (Mode::Message, SLOT_MSINK)] {
        for (dir_code, dir) in [(1, "in"), (2, "out"), (3, "inout")] {
            for size in SIZES {
                let name = format!("{} {}", dir.to_uppercase(), size_name(size));
                sys.set_profiling(mode == Mode::Migrate);
                let s = b.calls(&name, slot, size, dir_code, 1)?;
                sys.set_profiling(false);
                let copies = sys.take_copy_samples();
                let _ = sys.take_work_samples();
                if dir != "inout" && size >= 64 * 1024 {
                    let cycles = copies
                        .iter()
                        .map(|c| {
                            if dir == "in" {
                                c.in_cycles
                            } else {
                                c.out_cycles
                            }
                        })
                        .collect();
                    copy_cycles.push((dir, size, cycles));
                }
                b.add(
                    Key {
                        group: Group::Size,
                        name,
                        mode,
                        param: Some(size),
                        dir: Some(dir),
                    },
                    &s,
                    Exits::Two,
                    false,
                );
            }
        }
    }

    // Nesting depth: time per hop. Depths take turns in rounds, so each
    // sees the same mix of the host's fast and slow phases.
    for (mode, slot) in [(Mode::Migrate, SLOT_RELAY), (Mode::Message, SLOT_MRELAY)] {
        let mut per_hop: Vec<Vec<u64>> = vec![Vec::new(); DEPTHS.len()];
        for _ in 0..ROUNDS {
            b.floor_batch()?;
            for (acc, depth) in per_hop.iter_mut().zip(DEPTHS) {
                let n = (opts.samples() / 2 / ROUNDS).max(5);
                let s = b.run(
                    &format!("depth {depth}"),
                    "loop_relay",
                    [slot, n, depth, 0],
                    1,
                    Some(slot as u32),
                )?;
                acc.extend(s.iter().map(|c| c / depth));
            }
        }
        for (samples, depth) in per_hop.iter().zip(DEPTHS) {
            let key = Key {
                group: Group::Depth,
                name: format!("depth {depth} (per hop)"),
                mode,
                param: Some(depth),
                dir: None,
            };
            b.add(key, samples, Exits::Two, false);
        }
    }

    // Concurrency: threads calling into one domain at once.
    for (mode, slot) in [(Mode::Migrate, SLOT_NULL), (Mode::Message, SLOT_MNULL)] {
        for threads in THREADS {
            let s = b.calls(&format!("{threads} threads"), slot, 0, 0, threads)?;
            b.add(
                Key {
                    group: Group::Threads,
                    name: format!("{threads} threads"),
                    mode,
                    param: Some(threads),
                    dir: None,
                },
                &s,
                Exits::Two,
                false,
            );
        }
    }

    // Round robin over callee domains, in rounds like the depths.
    let mut rr: Vec<Vec<u64>> = vec![Vec::new(); DOMAINS.len()];
    for _ in 0..ROUNDS {
        b.floor_batch()?;
        for (acc, k) in rr.iter_mut().zip(DOMAINS) {
            let n = (opts.samples() / ROUNDS).max(10);
            acc.extend(b.run(&format!("{k} domains"), "loop_rr", [n, k, 0, 0], 1, None)?);
        }
    }
    for (samples, k) in rr.iter().zip(DOMAINS) {
        let key = Key {
            group: Group::Domains,
            name: format!("{k} callee domains"),
            mode: Mode::Migrate,
            param: Some(k),
            dir: None,
        };
        b.add(key, samples, Exits::Two, false);
    }

    // In-guest baselines: a plain function call.
    let f = b.run(
        "function call",
        "loop_fn",
        [opts.samples(), 0, 0, 0],
        1,
        Some(FUNCTION_SLOT),
    )?;
    b.add(
        Key {
            group: Group::Baseline,
            name: "plain function call (in guest)".into(),
            mode: Mode::Function,
            param: None,
            dir: None,
        },
        &f,
        Exits::One,
        false,
    );

    // Host baselines: pipes, VMM work, memcpy, call-back context.
    let n = opts.samples() as usize;
    let pinned = baseline::pipe_round_trips(n, true)
        .map_err(|e| BenchError::Baseline("pipe (pinned)", e))?;
    b.add(
        Key {
            group: Group::Baseline,
            name: "pipe ping-pong, 2 processes, same CPU".into(),
            mode: Mode::PipePinned,
            param: None,
            dir: None,
        },
        &pinned,
        Exits::One,
        true,
    );
    let unpinned = baseline::pipe_round_trips(n, false)
        .map_err(|e| BenchError::Baseline("pipe (unpinned)", e))?;
    b.add(
        Key {
            group: Group::Baseline,
            name: "pipe ping-pong, 2 processes, unpinned".into(),
            mode: Mode::PipeUnpinned,
            param: None,
            dir: None,
        },
        &unpinned,
        Exits::One,
        true,
    );
    b.add(
        Key {
            group: Group::Baseline,
            name: "VMM work per call+return (host)".into(),
            mode: Mode::Vmm,
            param: None,
            dir: None,
        },
        &work,
        Exits::One,
        false,
    );
    let floor = Stats::from_cycles(&b.floor).unwrap_or_default();
    b.add(
        Key {
            group: Group::Baseline,
            name: "floor: null out round trip".into(),
            mode: Mode::Floor,
            param: None,
            dir: None,
        },
        &b.floor.clone(),
        Exits::One,
        true,
    );
    let tsc_khz = sys.domains().first().map_or(0, |d| d.tsc_khz);
    b.finish_ratios(&floor, tsc_khz);
    if let Some(bar) = &b.bar {
        bar.finish_and_clear();
    }

    let find = |g: Group, m: Mode, p: Option<u64>, d: Option<&str>| {
        b.figures
            .iter()
            .find(|f| f.group == g && f.mode == m && f.param == p && f.dir == d)
            .map(|f| f.stats)
    };
    let mut bandwidth = Vec::new();
    let mut copy_ratios = Vec::new();
    for size in [64 * 1024u64, 1024 * 1024] {
        let host = baseline::memcpy_bandwidth(size as usize, if opts.quick { 20 } else { 200 });
        bandwidth.push(Bandwidth {
            name: format!("host memcpy {}", size_name(size)),
            bytes: size,
            bytes_per_sec: host,
        });
        for (dir, _, cycles) in copy_cycles.iter().filter(|(_, s, _)| *s == size) {
            let Some(p50) = Stats::from_cycles(cycles).map(|s| s.p50) else {
                continue;
            };
            if tsc_khz == 0 || p50 == 0 {
                continue;
            }
            let bw = size as f64 * f64::from(tsc_khz) * 1e3 / p50 as f64;
            let what = if *dir == "in" {
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
                copy_ratios.push(bw / host);
            }
        }
    }
    let callback = baseline::callback_cost(if opts.quick { 20 } else { 200 })
        .map_err(|e| BenchError::Baseline("call-back context", e))?;

    let ns = |c: u64| (tsc_khz > 0).then(|| c as f64 * 1e6 / f64::from(tsc_khz));
    let migrate_null = find(Group::Null, Mode::Migrate, None, None);
    let message_null = find(Group::Null, Mode::Message, None, None);
    let headline = Headline {
        migrate_vs_floor: migrate_null
            .filter(|_| floor.p50 > 0)
            .map(|s| s.p50 as f64 / (2.0 * floor.p50 as f64)),
        message_vs_migrate: migrate_null
            .zip(message_null)
            .filter(|(a, _)| a.p50 > 0)
            .map(|(a, m)| m.p50 as f64 / a.p50 as f64),
        vmm_work_ns: Stats::from_cycles(&work).and_then(|s| ns(s.p50)),
        copy_vs_memcpy: copy_ratios.iter().copied().reduce(f64::min),
        domains_spread: spread(
            DOMAINS
                .iter()
                .filter_map(|k| find(Group::Domains, Mode::Migrate, Some(*k), None))
                .map(|s| s.p50),
        ),
        depth_spread: spread(
            DEPTHS
                .iter()
                .filter_map(|d| find(Group::Depth, Mode::Migrate, Some(*d), None))
                .map(|s| s.p50),
        ),
    };
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
        let spec = Manifest::parse(&manifest(), None).unwrap();
        assert_eq!(spec.domain_index("caller"), Some(0));
        let caller = &spec.domains[0];
        assert_eq!(caller.capabilities.len() as u64, SLOT_MRELAY + 1);
        assert_eq!(caller.capabilities[SLOT_NULL as usize].entry, "null");
        assert_eq!(
            spec.domains[caller.capabilities[SLOT_MRELAY as usize].domain].name,
            "mrelay1"
        );
    }

    #[test]
    fn spread_is_max_over_min() {
        assert_eq!(spread([10, 11, 12].into_iter()), Some(1.2));
        assert_eq!(spread(std::iter::empty()), None);
    }
}
