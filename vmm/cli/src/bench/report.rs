//! What `ferry bench` measured, in one serialisable structure: the table on
//! stdout, `--json` and `--plot` all render this and nothing else.

use super::stats::Stats;
use serde::Serialize;

/// How a call was carried out (or what a baseline is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ferry's migrating thread.
    Migrate,
    /// Ferry's message-passing mode (server threads).
    Message,
    /// One null `out` round trip: the exit floor.
    Floor,
    /// A Linux pipe ping-pong between two processes on one CPU.
    PipePinned,
    /// The same, unpinned.
    PipeUnpinned,
    /// A plain function call inside one guest.
    Function,
    /// The VMM's own work per call+return (host cycles between `KVM_RUN`s).
    Vmm,
    /// A call made through the raw API (descriptors built by hand).
    Raw,
    /// The same call made through a typed interface's generated stub.
    Typed,
}

/// Which figure family a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Null call+return — the headline.
    Null,
    /// One object of `param` bytes, direction `dir`.
    Size,
    /// A chain of `param` hops; the stats are per hop.
    Depth,
    /// `param` threads calling into one domain at once.
    Threads,
    /// Round robin over `param` callee domains.
    Domains,
    /// Baselines and the floor.
    Baseline,
    /// The caller's own cycles per call outside the `Call` exit: the raw
    /// API against a typed stub (`param` = object bytes, 0 = null call).
    Stub,
}

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// Family.
    pub group: Group,
    /// Human name, e.g. "IN 4 KiB".
    pub name: String,
    /// How it was carried out.
    pub mode: Mode,
    /// Size in bytes, depth, threads or domains (by group).
    pub param: Option<u64>,
    /// "in", "out" or "inout" for size figures.
    pub dir: Option<&'static str>,
    /// The statistics, in TSC cycles.
    pub stats: Stats,
    /// The same statistics in nanoseconds (at the guest TSC rate), when known.
    pub ns: Option<NsStats>,
    /// `p50 / (2 × floor p50)` for figures that take two exits per sample
    /// (call+return), `p50 / floor p50` for one-exit or exit-free ones.
    pub ratio_to_floor: Option<f64>,
    /// Empirical CDF points `(quantile, cycles)`, kept for the CDF plot
    /// (null call per mode, floor, pipe); empty otherwise.
    pub cdf: Vec<(f64, u64)>,
}

/// [`Stats`] converted to nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct NsStats {
    /// Smallest sample.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl NsStats {
    /// `s` at `tsc_khz` (`None` if the rate is unknown).
    pub fn of(s: &Stats, tsc_khz: u32) -> Option<Self> {
        let ns = |c: u64| c as f64 * 1e6 / f64::from(tsc_khz);
        (tsc_khz > 0).then(|| Self {
            min: ns(s.min),
            p50: ns(s.p50),
            p90: ns(s.p90),
            p99: ns(s.p99),
            max: ns(s.max),
        })
    }
}

/// A bandwidth measurement: copies through Ferry vs host `memcpy`.
#[derive(Clone, Debug, Serialize)]
pub struct Bandwidth {
    /// What was copied, e.g. "IN 64 KiB (migrate)" or "host memcpy 64 KiB".
    pub name: String,
    /// Bytes per copy.
    pub bytes: u64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
}

/// The cost of the two ways to keep a suspended frame's context across a
/// call back into its domain (A→B→A), measured here.
#[derive(Clone, Debug, Serialize)]
pub struct CallbackCost {
    /// Save + restore through ioctls (GET/SET REGS, SREGS, FPU): cycles, p50.
    pub save_restore_p50: u64,
    /// A separate vCPU per (thread, domain, depth): per call 0 extra
    /// ioctls; its one-time creation cost in cycles, p50.
    pub vcpu_create_p50: u64,
}

/// The machine the figures came from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// KVM module flavour if known (e.g. "kvm_pvm").
    pub kvm: String,
    /// Guest TSC frequency in kHz (converts cycles to ns).
    pub tsc_khz: u32,
}

/// The headline ratios, each as measured (the targets are in BENCHMARKS.md).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Headline {
    /// Null call+return p50 / (2 × floor p50). Target ≤ 1.05.
    pub migrate_vs_floor: Option<f64>,
    /// Message-mode null p50 / migrate null p50. Target ≥ 1.5.
    pub message_vs_migrate: Option<f64>,
    /// VMM work per call+return, p50, in ns. Target ≤ 1000.
    pub vmm_work_ns: Option<f64>,
    /// Ferry IN copy bandwidth / host memcpy bandwidth at 64 KiB and 1 MiB
    /// (the smaller of the two). Target ≥ 0.5.
    pub copy_vs_memcpy: Option<f64>,
    /// max/min of null-call p50 over 2..64 callee domains. Target ≤ 1.1 (±10%).
    pub domains_spread: Option<f64>,
    /// max/min of per-hop p50 over depths 1..16. Target ≈ 1.
    pub depth_spread: Option<f64>,
}

/// Everything one `ferry bench` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: Machine,
    /// Whether `--quick` (fewer samples).
    pub quick: bool,
    /// The floor, from all interleaved floor batches.
    pub floor: Stats,
    /// Every figure, in the order measured.
    pub figures: Vec<Figure>,
    /// Copy bandwidths.
    pub bandwidth: Vec<Bandwidth>,
    /// Call-back context options.
    pub callback: Option<CallbackCost>,
    /// The headline ratios.
    pub headline: Headline,
}

impl BenchReport {
    /// Cycles to nanoseconds at the guest TSC rate (`None` if unknown).
    pub fn ns(&self, cycles: u64) -> Option<f64> {
        (self.machine.tsc_khz > 0).then(|| cycles as f64 * 1e6 / f64::from(self.machine.tsc_khz))
    }
}
