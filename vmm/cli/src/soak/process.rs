//! What the VMM process holds (host threads, file descriptors, memory maps,
//! resident memory), read from `/proc/self`, and the bounds a soak holds it
//! to: the figures after boot plus what the manifest lets grow.

use ferry_engine::system::System;
use std::fmt;

/// One reading of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Host threads (`/proc/self/task`).
    pub threads: u64,
    /// Open file descriptors (`/proc/self/fd`).
    pub fds: u64,
    /// Memory maps (lines of `/proc/self/maps`).
    pub maps: u64,
    /// Resident memory in KiB (`VmRSS`).
    pub rss_kib: u64,
}

impl Usage {
    /// Read it now; `None` if `/proc` cannot be read.
    pub fn now() -> Option<Self> {
        let count = |dir: &str| std::fs::read_dir(dir).ok().map(|d| d.count() as u64);
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        Some(Self {
            threads: count("/proc/self/task")?,
            fds: count("/proc/self/fd")?,
            maps: maps.lines().count() as u64,
            rss_kib,
        })
    }

    /// Each figure at most `bound`'s; the ones over it, named.
    pub fn over(&self, bound: &Usage) -> Vec<String> {
        let mut over = Vec::new();
        let mut check = |what: &str, got: u64, max: u64| {
            if got > max {
                over.push(format!("{what} {got} > bound {max}"));
            }
        };
        check("host threads", self.threads, bound.threads);
        check("file descriptors", self.fds, bound.fds);
        check("memory maps", self.maps, bound.maps);
        check("RSS KiB", self.rss_kib, bound.rss_kib);
        over
    }
}

/// The names of the process's host threads, sorted (to name what a
/// thread-count leak left behind).
pub fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} threads, {} fds, {} maps, RSS {:.1} MiB",
            self.threads,
            self.fds,
            self.maps,
            self.rss_kib as f64 / 1024.0
        )
    }
}

/// Host-side memory a soak may use beyond guest memory: the referee's model,
/// the oracle's records and the allocator's arenas (measured: a 60 s soak
/// stays well inside it).
const HOST_HEAP_KIB: u64 = 64 * 1024;
/// Maps the allocator may add (one arena per thread that allocates, up to
/// glibc's 8 × cores, each a map and its guard) plus the logger's buffers.
const ALLOCATOR_MAPS: u64 = 64;

/// Bounds for a system booted from its manifest, given the reading after
/// boot and the host threads the soak itself adds (`workers`).
///
/// - threads: after boot, plus the workers, plus every domain's
///   `max_spawned` (bounded by the manifest's `max_spawned_total`);
/// - fds: after boot, plus each domain's vCPUs not yet created (one fd
///   each, created lazily up to the domain's vCPU capacity);
/// - maps: after boot, plus one `kvm_run` map per vCPU not yet created,
///   two per host thread that may start (stack and guard), and the
///   allocator's arenas;
/// - RSS: after boot, plus every domain's guest memory (touched lazily,
///   up to its size) and a fixed allowance for host-side data.
pub fn bounds(sys: &System, after_boot: &Usage, workers: u64) -> Usage {
    let spec = sys.spec();
    let spawned: u64 = spec.domains.iter().map(|d| u64::from(d.max_spawned)).sum();
    let spawned = spawned.min(u64::from(spec.max_spawned_total));
    let vcpus_to_come: u64 = sys
        .domains()
        .iter()
        .map(|d| (d.vcpu_capacity() as u64).saturating_sub(u64::from(d.vcpu_count())))
        .sum();
    let guest_kib: u64 = spec.domains.iter().map(|d| d.memory / 1024).sum();
    let threads = after_boot.threads + workers + spawned;
    Usage {
        threads,
        fds: after_boot.fds + vcpus_to_come,
        maps: after_boot.maps + vcpus_to_come + 2 * (workers + spawned) + ALLOCATOR_MAPS,
        rss_kib: after_boot.rss_kib + guest_kib + HOST_HEAP_KIB,
    }
}

/// Stacks and vCPUs not back in their pools, and frames still inside a
/// domain, once every thread has ended: each is a leak.
pub fn pool_leaks(sys: &System) -> Vec<String> {
    let mut leaks = Vec::new();
    for d in sys.domains() {
        let (free, all) = (d.free_stacks(), d.stack_capacity() as usize);
        if free != all {
            leaks.push(format!("{}: {free} of {all} stacks back", d.name));
        }
        let (idle, live) = (d.idle_vcpus(), d.vcpu_count() as usize);
        if idle != live {
            leaks.push(format!("{}: {idle} of {live} vCPUs back", d.name));
        }
        if d.active_frames() != 0 {
            leaks.push(format!(
                "{}: {} frames still inside",
                d.name,
                d.active_frames()
            ));
        }
    }
    leaks
}
