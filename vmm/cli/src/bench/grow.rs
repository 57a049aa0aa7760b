//! `ferry bench --grow` (hidden): what the `grow` stack-pool policy saves
//! and what it costs.
//!
//! - **Footprint at boot** of a lone `testguest` domain whose pool grows
//!   from 1 stack to 16, against the same domain with a fixed pool of 16:
//!   its resident guest memory, its vCPUs, the file descriptors its boot
//!   opened, and the same after one call.
//! - **The first call that grows**, against a call that finds a free stack
//!   (warm) and the first call onto a never-used stack of a fixed pool, each
//!   as a ratio to the exit floor measured in the same systems. Every sample
//!   of a first call needs a pool that has not grown yet, so each is taken
//!   in a system of its own: a `caller` (the `bench` image, timing each call
//!   with `rdtsc`) and the callee `b` (`testguest`), in which a holder thread
//!   spins in `rendezvous` so that b's boot stack and boot vCPU are busy.
//!   The next call into b then needs a new stack and a new vCPU. Grow and
//!   fixed systems take turns, so the host's noise falls on both.

#![expect(
    clippy::cast_precision_loss,
    reason = "figures: counts and cycles far below 2^52"
)]

use super::scale::{batch, run_confined};
use super::stats::Stats;
use super::BenchError;
use ferry_engine::domain::Domain;
use ferry_engine::manifest::{Document, DomainEntry, GrowFallback, System as Manifest};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use serde::Serialize;
use shared_abi::FLOOR_SLOT;
use std::time::{Duration, Instant};

/// Stacks a growing pool may reach, and a fixed pool has.
pub const MAX_STACKS: u32 = 16;
/// KiB per stack.
const STACK_KIB: u64 = 64;
/// Warm calls and floor round trips per system.
const PER_SYSTEM: u64 = 5;
/// How long a holder may take to enter b.
const ENTER_LIMIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct GrowOptions {
    /// Fewer systems (a smoke run).
    pub quick: bool,
}

/// The two pools compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// `stacks = 1`, `stack_policy = "grow"`, `stack_max = 16`.
    Grow,
    /// `stacks = 16`, `stack_policy = "block"`.
    Fixed,
}

impl Pool {
    fn name(self) -> &'static str {
        match self {
            Pool::Grow => "grow 1..16",
            Pool::Fixed => "fixed 16",
        }
    }

    /// Domain `b` with this pool.
    fn domain(self) -> DomainEntry {
        let b = DomainEntry::new("b", "testguest")
            .memory_mib(4)
            .exports(["null", "rendezvous"]);
        match self {
            Pool::Grow => b.stacks(1, STACK_KIB).grow(MAX_STACKS, GrowFallback::Block),
            Pool::Fixed => b.stacks(MAX_STACKS, STACK_KIB),
        }
    }
}

/// One domain's cost, right after boot and after one call.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    /// Which pool.
    pub pool: Pool,
    /// Stacks that exist after boot.
    pub stacks: u32,
    /// vCPUs after boot.
    pub vcpus: u32,
    /// Resident guest memory after boot (KiB).
    pub resident_kib: u64,
    /// File descriptors the boot opened (the VM, its vCPUs, the system's own).
    pub fds: u64,
    /// Resident guest memory after one call (KiB).
    pub resident_kib_after_call: u64,
    /// vCPUs after one call.
    pub vcpus_after_call: u32,
}

/// Everything `ferry bench --grow` measured.
#[derive(Clone, Debug, Serialize)]
pub struct GrowReport {
    /// Guest TSC frequency (kHz; 0 if KVM does not say).
    pub tsc_khz: u32,
    /// Systems booted for the latency figures (half of each pool).
    pub systems: u64,
    /// The boot footprints, grow first.
    pub footprints: Vec<Footprint>,
    /// The first call into a growing pool with no free stack (it grows
    /// the pool and creates a vCPU), in cycles.
    pub grow_first: Stats,
    /// The first call onto a never-used stack of a fixed pool (it creates
    /// a vCPU), in cycles.
    pub fixed_first: Stats,
    /// Calls that find a free stack and an idle vCPU (both pools), in cycles.
    pub warm: Stats,
    /// Null `out` round trips in the same systems, in cycles.
    pub floor: Stats,
}

fn run_err(run: &str, why: impl std::fmt::Debug) -> BenchError {
    BenchError::Run {
        run: run.to_owned(),
        why: format!("{why:?}"),
    }
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

fn domain<'s>(sys: &'s System, name: &str) -> Result<&'s Domain, BenchError> {
    sys.domain_by_name(name)
        .ok_or_else(|| run_err("setup", format!("no domain `{name}`")))
}

/// Boot `b` alone with `pool` and read its cost.
fn footprint(pool: Pool) -> Result<Footprint, BenchError> {
    let spec = Manifest::from_document(&Document::default().domain(pool.domain()), None)?;
    let fds0 = open_fds();
    let sys = System::boot(spec, None)?;
    let fds = open_fds().saturating_sub(fds0);
    let b = domain(&sys, "b")?;
    let resident = |b: &Domain| b.resident_bytes().map_or(0, |r| r >> 10);
    let (stacks, vcpus, resident_kib) = (b.stack_capacity(), b.vcpu_count(), resident(b));
    match run_confined(&sys, "b", "null", &[]) {
        ThreadResult::Returned { status: 0, .. } => {}
        other => return Err(run_err("footprint call", other)),
    }
    Ok(Footprint {
        pool,
        stacks,
        vcpus,
        resident_kib,
        fds,
        resident_kib_after_call: resident(b),
        vcpus_after_call: b.vcpu_count(),
    })
}

/// The samples of one system: the first call, the warm calls, the floor.
struct Sampled {
    first: Vec<u64>,
    warm: Vec<u64>,
    floor: Vec<u64>,
    tsc_khz: u32,
}

/// One system with `pool`: hold b's boot stack, time the call that needs
/// a new stack, then warm calls and floor round trips.
fn one_system(pool: Pool) -> Result<Sampled, BenchError> {
    let doc = Document::default()
        .domain(
            DomainEntry::new("caller", "bench")
                .memory_mib(4)
                .stacks(2, 16)
                .exports(["loop_call", "loop_floor"])
                .capabilities(["b.null"]),
        )
        .domain(pool.domain());
    let sys = System::boot(Manifest::from_document(&doc, None)?, None)?;
    let caller = domain(&sys, "caller")?;
    let b = domain(&sys, "b")?;
    // ~10 s of spinning at most: the release comes within milliseconds.
    let timeout = u64::from(caller.tsc_khz).max(3_000_000) * 10_000;
    std::thread::scope(|s| {
        let holder = s.spawn(|| run_confined(&sys, "b", "rendezvous", &[2, timeout]));
        let t0 = Instant::now();
        while b.active_frames() == 0 {
            if t0.elapsed() > ENTER_LIMIT || holder.is_finished() {
                return Err(run_err("hold", "the holder never entered b"));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let measured = (|| {
            let first = batch(&sys, caller, "loop_call", &[0, 1, 0, 0], 0)?;
            let warm = batch(&sys, caller, "loop_call", &[0, PER_SYSTEM, 0, 0], 0)?;
            let floor = batch(
                &sys,
                caller,
                "loop_floor",
                &[PER_SYSTEM, 0, 0, 0],
                FLOOR_SLOT,
            )?;
            Ok::<_, BenchError>(Sampled {
                first,
                warm,
                floor,
                tsc_khz: caller.tsc_khz,
            })
        })();
        // The second arrival releases the holder (on a stack the first call left free).
        let released = run_confined(&sys, "b", "rendezvous", &[2, timeout]);
        let held = holder
            .join()
            .map_err(|_| run_err("hold", "the holder panicked"))?;
        for r in [&released, &held] {
            if !matches!(r, ThreadResult::Returned { status: 0, .. }) {
                return Err(run_err("release", r));
            }
        }
        let sampled = measured?;
        let grown = b.stacks_grown();
        let want = u64::from(pool == Pool::Grow);
        if grown != want || b.vcpu_count() != 2 || sampled.first.len() != 1 {
            return Err(run_err(
                "first call",
                format!(
                    "{}: grew {grown} times (want {want}), {} vCPUs (want 2), {} samples",
                    pool.name(),
                    b.vcpu_count(),
                    sampled.first.len()
                ),
            ));
        }
        Ok(sampled)
    })
}

/// Run every figure.
pub fn run(opts: GrowOptions) -> Result<GrowReport, BenchError> {
    let footprints = vec![footprint(Pool::Grow)?, footprint(Pool::Fixed)?];
    let systems: u64 = if opts.quick { 40 } else { 400 };
    let (mut grow_first, mut fixed_first, mut warm, mut floor) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tsc_khz = 0;
    for i in 0..systems {
        let pool = if i % 2 == 0 { Pool::Grow } else { Pool::Fixed };
        let s = one_system(pool)?;
        match pool {
            Pool::Grow => grow_first.extend(s.first),
            Pool::Fixed => fixed_first.extend(s.first),
        }
        tsc_khz = s.tsc_khz;
        warm.extend(s.warm);
        floor.extend(s.floor);
    }
    let stats =
        |what: &str, v: &[u64]| Stats::from_cycles(v).ok_or_else(|| run_err(what, "no samples"));
    Ok(GrowReport {
        tsc_khz,
        systems,
        footprints,
        grow_first: stats("grow first", &grow_first)?,
        fixed_first: stats("fixed first", &fixed_first)?,
        warm: stats("warm", &warm)?,
        floor: stats("floor", &floor)?,
    })
}

impl std::fmt::Display for GrowReport {
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
            "ferry bench --grow: a domain of {MAX_STACKS} stacks of {STACK_KIB} KiB, grown on demand from 1 or fixed"
        )?;
        writeln!(
            f,
            "{:<12} {:>7} {:>6} {:>13} {:>9} {:>20} {:>17}",
            "pool",
            "stacks",
            "vCPUs",
            "resident KiB",
            "boot fds",
            "resident after call",
            "vCPUs after call"
        )?;
        for p in &self.footprints {
            writeln!(
                f,
                "{:<12} {:>7} {:>6} {:>13} {:>9} {:>20} {:>17}",
                p.pool.name(),
                p.stacks,
                p.vcpus,
                p.resident_kib,
                p.fds,
                p.resident_kib_after_call,
                p.vcpus_after_call
            )?;
        }
        writeln!(
            f,
            "\nlatency ({} systems, grow and fixed in turn; guest rdtsc)",
            self.systems
        )?;
        writeln!(
            f,
            "{:<34} {:>6} {:>9} {:>9} {:>10}",
            "call", "count", "p50 µs", "p99 µs", "p50/floor"
        )?;
        let floor = self.floor.p50.max(1) as f64;
        for (name, s) in [
            ("floor (null out round trip)", &self.floor),
            ("warm: a free stack, an idle vCPU", &self.warm),
            ("grow: first call that grows", &self.grow_first),
            ("fixed: first call on a new stack", &self.fixed_first),
        ] {
            writeln!(
                f,
                "{:<34} {:>6} {:>9} {:>9} {:>10.2}",
                name,
                s.count,
                us(s.p50),
                us(s.p99),
                s.p50 as f64 / floor
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both pools describe the same domain but for the pool: the same
    /// layout (stack_max stacks reserved), different boot reservations.
    #[test]
    fn the_two_pools_differ_only_in_their_boot_reservation() {
        let spec = |p: Pool| {
            Manifest::from_document(&Document::default().domain(p.domain()), None)
                .unwrap()
                .domains
                .remove(0)
        };
        let (g, f) = (spec(Pool::Grow), spec(Pool::Fixed));
        assert_eq!((g.stacks, g.stack_max), (1, MAX_STACKS));
        assert_eq!((f.stacks, f.stack_max), (MAX_STACKS, MAX_STACKS));
        assert_eq!((g.memory, g.stack_size), (f.memory, f.stack_size));
        assert_eq!(
            ferry_engine::domain::vcpu_capacity(&g),
            ferry_engine::domain::vcpu_capacity(&f)
        );
    }
}
