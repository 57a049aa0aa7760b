//! `ferry bench --scale`: what N domains cost, for N from 16 to 4,096 —
//! domains booted per second, resident memory per domain, the null call's
//! ratio to the exit floor into one domain picked at random among the N,
//! and a restart's cost. It extends the 2–64 callee-domain round-robin
//! figure of the plain `ferry bench` to thousands of domains.
//!
//! Each N is a system of its own: a `caller` (the `bench` image) holding
//! one capability, to `null` of a callee picked at random; a `crash`
//! domain (`testguest`, faulted with `ud2` to time restarts); and N − 2
//! small `bench` callees (4 MiB, 2 stacks of 16 KiB). Floor batches and
//! call batches take turns on one thread, as in the plain bench.

#![expect(
    clippy::cast_precision_loss,
    reason = "figures: counts and cycles far below 2^52"
)]

use super::stats::Stats;
use super::BenchError;
use ferry_engine::domain::Domain;
use ferry_engine::manifest::{Document, DomainEntry, System as Manifest};
use ferry_engine::system::System;
use ferry_engine::thread::{NotStarted, ThreadResult};
use serde::Serialize;
use shared_abi::FLOOR_SLOT;
use std::time::{Duration, Instant};

/// The domain counts of a full run.
pub const FULL: [u64; 5] = [16, 64, 256, 1024, 4096];
/// Those of `--quick`.
pub const QUICK: [u64; 3] = [16, 64, 256];

/// Guest memory of every small domain (MiB).
const SMALL_MIB: u64 = 4;
/// Rounds of floor batch + call batch per N.
const ROUNDS: u64 = 10;
/// The most host memory a run may plan to use, as a share of what the
/// host has available when the N starts.
const MEMORY_SHARE: f64 = 0.7;
/// How long a restart may take before the bench gives up on it.
const RESTART_LIMIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct ScaleOptions {
    /// N = 16, 64, 256 and fewer samples.
    pub quick: bool,
    /// Skip every N above this (for tests; `None`: no cap).
    pub max_domains: Option<u64>,
}

/// The figures at one N.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleRow {
    /// Domains in the system (caller, crash domain and callees).
    pub domains: u64,
    /// Wall time of `System::boot` (ms): the median of `boots` boots.
    pub boot_ms: f64,
    /// Boots of this N whose median `boot_ms` is (see `boots_for`).
    pub boots: usize,
    /// Domains booted per second.
    pub domains_per_s: f64,
    /// Boot time per domain (µs).
    pub boot_us_per_domain: f64,
    /// Growth of the process's resident memory over the boot, per domain (KiB).
    pub resident_kib_per_domain: f64,
    /// The callee the caller's capability names.
    pub callee: String,
    /// Null call+return into it (TSC cycles, guest `rdtsc`).
    pub null: Stats,
    /// Floor batches interleaved with the calls (TSC cycles).
    pub floor: Stats,
    /// `null.p50 / floor.p50`.
    pub ratio: f64,
    /// Fault of the crash domain → it is running again, median (µs).
    pub restart_us: f64,
    /// Restarts timed.
    pub restarts: usize,
}

/// An N the run did not boot, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// The domain count.
    pub domains: u64,
    /// Why (one sentence).
    pub why: String,
}

/// A whole `--scale` run.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleReport {
    /// Host TSC rate (kHz) of the run.
    pub tsc_khz: u32,
    /// Host threads the boot used.
    pub boot_threads: usize,
    /// One row per N booted.
    pub rows: Vec<ScaleRow>,
    /// The N not booted.
    pub skipped: Vec<Skipped>,
}

/// A line of `/proc/meminfo` or `/proc/self/status`, in KiB.
fn kib_field(file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A cheap random number (the run's pick of a callee need not be secure).
fn random_below(n: u64) -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % n.max(1)
}

/// The system of `n` domains, with the caller's callee `d<pick>`.
fn manifest(n: u64, pick: u64) -> Document {
    let small = |name: String| {
        DomainEntry::new(name, "bench")
            .memory_mib(SMALL_MIB)
            .stacks(2, 16)
            .exports(["null", "loop_call", "loop_floor"])
    };
    let mut doc = Document::default()
        .domain(small("caller".into()).capabilities([format!("d{pick}.null")]))
        .domain(
            DomainEntry::new("crash", "testguest")
                .memory_mib(SMALL_MIB)
                .stacks(2, 16)
                .exports(["ud2"]),
        );
    for i in 0..n.saturating_sub(2) {
        doc = doc.domain(small(format!("d{i}")));
    }
    doc
}

/// Run `entry` of `domain` on a confined host thread of its own.
pub(super) fn run_confined(sys: &System, domain: &str, entry: &str, args: &[u64]) -> ThreadResult {
    std::thread::scope(|s| {
        s.spawn(|| match ferry_engine::sandbox::confine_current_thread() {
            Ok(_) => sys.run_thread(domain, entry, args).result,
            Err(e) => {
                log::error!("a bench thread runs nothing: {e}");
                ThreadResult::NotStarted(NotStarted::NoSandbox)
            }
        })
        .join()
        .unwrap_or(ThreadResult::NotStarted(NotStarted::Panicked))
    })
}

fn run_err(run: &str, why: impl std::fmt::Debug) -> BenchError {
    BenchError::Run {
        run: run.to_owned(),
        why: format!("{why:?}"),
    }
}

/// `n` iterations of the caller's `entry` on `slot`, samples of `want`.
pub(super) fn batch(
    sys: &System,
    caller: &Domain,
    entry: &str,
    args: &[u64],
    want: u32,
) -> Result<Vec<u64>, BenchError> {
    let before = caller.sample_count();
    match run_confined(sys, "caller", entry, args) {
        ThreadResult::Returned {
            status: 0,
            results: [_, 0],
        } => {}
        other => return Err(run_err(&format!("{entry} {args:?}"), other)),
    }
    Ok(caller
        .samples_since(before)
        .into_iter()
        .filter(|s| s.slot == want)
        .map(|s| s.cycles)
        .collect())
}

/// Fault the crash domain `count` times and time each until it runs again,
/// all from one confined host thread: creating a thread maps and protects
/// its stack, and every `mprotect`/`munmap` in a process with N VMs runs N
/// KVM MMU notifiers, which would be timed instead of the restart.
fn restarts_timed(sys: &System, count: usize) -> Result<Vec<f64>, BenchError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ferry_engine::sandbox::confine_current_thread()
                .map_err(|e| run_err("restart", format!("no sandbox: {e}")))?;
            (0..count)
                .map(|_| restart_once(sys).map(|d| d.as_secs_f64() * 1e6))
                .collect()
        })
        .join()
        .unwrap_or_else(|_| Err(run_err("restart", "the bench thread panicked")))
    })
}

/// Fault the crash domain (on the calling, confined thread) and time until
/// it runs again.
fn restart_once(sys: &System) -> Result<Duration, BenchError> {
    let crash = sys
        .domain_by_name("crash")
        .ok_or_else(|| run_err("restart", "no crash domain"))?;
    let resets = crash.resets();
    let t0 = Instant::now();
    match sys.run_thread("crash", "ud2", &[]).result {
        ThreadResult::Faulted(_) => {}
        other => return Err(run_err("restart", other)),
    }
    while crash.resets() == resets {
        if t0.elapsed() > RESTART_LIMIT {
            return Err(run_err("restart", "the crash domain did not come back"));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    Ok(t0.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Boots of an N-domain system whose median is reported: enough that
/// about 1,024 domains boot in all, at most 5.
fn boots_for(n: u64) -> usize {
    usize::try_from((1024 / n.max(1)).clamp(1, 5)).unwrap_or(1)
}

/// Boot `n` domains and measure every figure.
fn one(n: u64, quick: bool) -> Result<(ScaleRow, u32), BenchError> {
    let pick = random_below(n.saturating_sub(2));
    let spec = Manifest::from_document(&manifest(n, pick), None)?;
    // A small N boots in a few milliseconds, where one hiccup of this
    // shared host decides the figure: boot it several times (each system
    // dropped before the next) and keep the median; the last boot is the
    // one measured for memory and calls.
    let boots = boots_for(n);
    let mut times = Vec::with_capacity(boots);
    for _ in 1..boots {
        let t0 = Instant::now();
        let sys = System::boot(spec.clone(), None)?;
        times.push(t0.elapsed());
        drop(sys);
    }
    let rss0 = kib_field("/proc/self/status", "VmRSS:").unwrap_or(0);
    let t0 = Instant::now();
    let sys = System::boot(spec, None)?;
    times.push(t0.elapsed());
    let rss1 = kib_field("/proc/self/status", "VmRSS:").unwrap_or(0);
    times.sort();
    let boot = times.get(times.len() / 2).copied().unwrap_or_default();
    let caller = sys
        .domain_by_name("caller")
        .ok_or_else(|| run_err("setup", "no caller"))?;
    let samples: u64 = if quick { 100 } else { 500 };
    // Warm up: the callee's vCPU and stack, the floor path.
    batch(&sys, caller, "loop_call", &[0, 50, 0, 0], 0)?;
    batch(&sys, caller, "loop_floor", &[50, 0, 0, 0], FLOOR_SLOT)?;
    let (mut calls, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        floor.extend(batch(
            &sys,
            caller,
            "loop_floor",
            &[samples / ROUNDS * 2, 0, 0, 0],
            FLOOR_SLOT,
        )?);
        calls.extend(batch(
            &sys,
            caller,
            "loop_call",
            &[0, samples / ROUNDS * 2, 0, 0],
            0,
        )?);
    }
    let null = Stats::from_cycles(&calls).ok_or_else(|| run_err("null", "no samples"))?;
    let floor = Stats::from_cycles(&floor).ok_or_else(|| run_err("floor", "no samples"))?;
    let restarts = if quick { 3 } else { 7 };
    let times = restarts_timed(&sys, restarts)?;
    let secs = boot.as_secs_f64().max(1e-9);
    let tsc_khz = caller.tsc_khz;
    let row = ScaleRow {
        domains: n,
        boot_ms: secs * 1e3,
        boots,
        domains_per_s: n as f64 / secs,
        boot_us_per_domain: secs * 1e6 / n as f64,
        resident_kib_per_domain: rss1.saturating_sub(rss0) as f64 / n as f64,
        callee: format!("d{pick}"),
        ratio: null.p50 as f64 / (floor.p50.max(1)) as f64,
        null,
        floor,
        restart_us: median(times),
        restarts,
    };
    Ok((row, tsc_khz))
}

/// Run every N (within `max_domains` and the host's memory), each system
/// dropped before the next boots.
pub fn run(opts: ScaleOptions) -> Result<ScaleReport, BenchError> {
    let all: &[u64] = if opts.quick { &QUICK } else { &FULL };
    let mut rows: Vec<ScaleRow> = Vec::new();
    let mut skipped = Vec::new();
    let mut tsc_khz = 0;
    for &n in all {
        if opts.max_domains.is_some_and(|m| n > m) {
            skipped.push(Skipped {
                domains: n,
                why: "above --max-domains".into(),
            });
            continue;
        }
        // Plan with the last N's resident memory per domain (the guest
        // memory size before the first): stop before the host runs out.
        let per_kib = rows.last().map_or((SMALL_MIB << 10) as f64, |r| {
            r.resident_kib_per_domain.max(64.0)
        });
        let need_kib = per_kib * n as f64;
        if let Some(avail) = kib_field("/proc/meminfo", "MemAvailable:") {
            if need_kib > avail as f64 * MEMORY_SHARE {
                skipped.push(Skipped {
                    domains: n,
                    why: format!(
                        "would need about {:.1} GiB resident ({:.0} KiB per domain), more than {:.0}% of the {:.1} GiB available",
                        need_kib / 1048576.0,
                        per_kib,
                        MEMORY_SHARE * 100.0,
                        avail as f64 / 1048576.0
                    ),
                });
                continue;
            }
        }
        match one(n, opts.quick) {
            Ok((row, khz)) => {
                rows.push(row);
                tsc_khz = khz;
            }
            Err(BenchError::Boot(e)) => {
                skipped.push(Skipped {
                    domains: n,
                    why: format!("{:#}", anyhow::Error::from(e)),
                });
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(ScaleReport {
        tsc_khz,
        boot_threads: ferry_engine::parallel::workers_for(usize::MAX),
        rows,
        skipped,
    })
}

impl std::fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |c: u64| {
            if self.tsc_khz > 0 {
                format!("{:.1}", c as f64 * 1e3 / f64::from(self.tsc_khz))
            } else {
                format!("{c} cyc")
            }
        };
        writeln!(
            f,
            "ferry bench --scale: boot on {} threads; null call into a random one of the N, against the floor in the same run",
            self.boot_threads
        )?;
        writeln!(
            f,
            "{:>7} {:>10} {:>10} {:>12} {:>13} {:>10} {:>10} {:>7} {:>12}",
            "domains",
            "boot ms",
            "domains/s",
            "µs/domain",
            "KiB/domain",
            "null µs",
            "floor µs",
            "ratio",
            "restart µs"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>7} {:>10.1} {:>10.0} {:>12.0} {:>13.0} {:>10} {:>10} {:>7.2} {:>12.0}",
                r.domains,
                r.boot_ms,
                r.domains_per_s,
                r.boot_us_per_domain,
                r.resident_kib_per_domain,
                us(r.null.p50),
                us(r.floor.p50),
                r.ratio,
                r.restart_us
            )?;
        }
        for s in &self.skipped {
            writeln!(f, "{:>7} skipped: {}", s.domains, s.why)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_has_n_domains_and_one_capability_to_the_pick() {
        let spec = Manifest::from_document(&manifest(16, 5), None).expect("valid");
        assert_eq!(spec.domains.len(), 16);
        let caller = spec.domains.first().expect("caller");
        assert_eq!(caller.capabilities.len(), 1);
        let target = caller.capabilities.first().expect("one");
        assert_eq!(
            spec.domains.get(target.domain).map(|d| d.name.as_str()),
            Some("d5")
        );
    }

    #[test]
    fn random_picks_stay_below_the_bound() {
        assert!((0..100).all(|_| random_below(7) < 7));
        assert_eq!(random_below(0), 0);
    }
}
