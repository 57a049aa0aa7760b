//! The fuzz oracle: hostile hypercalls from the `fuzzer` image, sent from
//! several vCPUs of one domain at once, each judged on the host.
//!
//! The fuzzer (`images/fuzzer`) issues every hypercall number with random
//! registers, requests and argument lists naming every region of its
//! memory map and beyond (system pages, guard pages, stacks, heap, image,
//! past the end of memory, wrapping and huge lengths, overlapping outputs,
//! every mode value, random slots), requests another vCPU is rewriting,
//! random `Spawn`s, prints of hostile text, and calls into `fuzz-callee`
//! domains that check their objects, return any status, exit, panic,
//! fault, spin past their budget, and nest until `TooDeep` or `NoStack`.
//! It records each (request, answer) pair in a ring in its memory.
//!
//! After a batch the host reads the rings and judges every record against
//! the ABI ([`oracle`]), and checks the memory of every fuzz domain: system
//! pages against their state before the batch, and canaries the host wrote
//! into the null page, unused system pages, guard pages, stack bottoms and
//! heap pages ([`memory`]); then that every stack and vCPU is back in its
//! pool. Nothing here trusts what the guest wrote: addresses are checked
//! before any read.
//!
//! Use: put [`FuzzDomains::domains`] in a manifest (names prefixed, so they
//! sit beside other domains), boot it, then [`Fuzz::attach`] and call
//! [`Fuzz::batch`] as often as you like from one host thread; merge the
//! [`Report`]s. A failing batch's [`Batch::stream`] is the hypercall stream
//! to log: races between vCPUs do not replay from a seed.

pub mod memory;
pub mod oracle;
pub mod report;
#[path = "../../../images/fuzzer/src/wire.rs"]
pub mod wire;

pub use report::{render, Report, Violation, KEPT_VIOLATIONS, PROVOKED};

use ferry_engine::domain::{Domain, Health};
use ferry_engine::manifest::{Document, DomainEntry, GrowFallback};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use memory::Guard;
use oracle::{judge, Context};
use std::time::{Duration, Instant};
use wire::{Directory, Record, Region, Setup, MAX_WORKERS, RING_LEN};
use zerocopy::FromBytes;

/// Why a batch could not be run (a finding of the batch is a
/// [`Violation`] in its report instead).
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("the system has no domain `{0}` (put `FuzzDomains::domains` in its manifest)")]
    NoDomain(String),
    #[error("`{domain}`: guest memory {addr:#x}+{len:#x} cannot be read or written")]
    Memory { domain: String, addr: u64, len: u64 },
    #[error("the fuzzer's `prepare` did not answer a directory: {0}")]
    Prepare(String),
    #[error("the fuzzer's directory is invalid: {0}")]
    Directory(String),
    #[error("{workers} workers asked; 1..={MAX_WORKERS} allowed")]
    Workers { workers: u32 },
    #[error("cannot write the manifest fragment")]
    Toml(#[source] toml::ser::Error),
}

/// The fuzz domains of a manifest: the fuzzer, the callee it calls, and two
/// deep domains that call each other. Every name starts with `prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzDomains {
    /// Prefix of every domain name (e.g. `"fz-"`).
    pub prefix: String,
    /// Worker threads per batch (1..=4): that many vCPUs of the fuzzer run
    /// at once. Races need at least 2.
    pub workers: u32,
}

/// Stacks of the fuzzer: a worker each, two spawned threads and one spare.
const FUZZER_STACKS: u32 = 7;
/// Stacks of the callee: a worker each (none nests in it) and two spare.
const CALLEE_STACKS: u32 = 6;
const _: () = assert!(MAX_WORKERS == 4);
/// How long a batch waits for the fuzz domains to settle (resets done,
/// spawned threads gone) before it reports a leak.
const SETTLE: Duration = Duration::from_secs(10);

impl FuzzDomains {
    /// The fuzz domains named `{prefix}fuzzer`, `{prefix}callee`,
    /// `{prefix}deep-a`, `{prefix}deep-b`, with 3 workers.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            workers: 3,
        }
    }

    /// The fuzzer domain's name.
    pub fn fuzzer(&self) -> String {
        format!("{}fuzzer", self.prefix)
    }

    /// The checking/hostile callee's name.
    pub fn callee(&self) -> String {
        format!("{}callee", self.prefix)
    }

    /// The deep domains' names.
    pub fn deep(&self) -> [String; 2] {
        [
            format!("{}deep-a", self.prefix),
            format!("{}deep-b", self.prefix),
        ]
    }

    /// The manifest fragment: four `[[domain]]` tables.
    pub fn domains(&self) -> Vec<DomainEntry> {
        let [a, b] = self.deep();
        let callee = self.callee();
        let deep = |me: &str, other: &str| {
            // A growing pool (1 stack at boot, up to DEEP_STACKS, then
            // `fail`): the fuzzer's nesting grows it, and a chain that holds
            // DEEP_STACKS frames still gets `NoStack`, as from a fixed pool.
            DomainEntry::new(me, "fuzz-callee")
                .memory_mib(4)
                .stacks(1, 8)
                .grow(wire::DEEP_STACKS, GrowFallback::Fail)
                .exports(["nest"])
                .capabilities([format!("{other}.nest"), format!("{me}.nest")])
        };
        vec![
            DomainEntry::new(self.fuzzer(), "fuzzer")
                .memory_mib(16)
                .stacks(FUZZER_STACKS, 64)
                .max_spawned(2)
                .exports(["prepare", "work", "spawned"])
                .capabilities([
                    format!("{callee}.check"),
                    format!("{callee}.hostile"),
                    format!("{a}.nest"),
                ]),
            DomainEntry::new(callee, "fuzz-callee")
                .memory_mib(4)
                .stacks(CALLEE_STACKS, 16)
                .exports(["check", "hostile"]),
            deep(&a, &b),
            deep(&b, &a),
        ]
    }

    /// The same fragment as TOML text.
    pub fn toml(&self) -> Result<String, FuzzError> {
        let doc = Document {
            domains: self.domains(),
            ..Document::default()
        };
        toml::to_string(&doc).map_err(FuzzError::Toml)
    }
}

/// One batch's findings.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Counts and violations.
    pub report: Report,
    /// The hypercall stream, one record per line, when the batch found a
    /// violation (else empty): what to write to a log file.
    pub stream: String,
}

/// The fuzz domains of a booted system, ready to run batches.
pub struct Fuzz<'s> {
    sys: &'s System,
    fuzzer: &'s Domain,
    callee: &'s Domain,
    deep: [&'s Domain; 2],
    workers: usize,
    spawns_open: bool,
    keep_stream: bool,
    epoch: u64,
    /// Each fuzz domain's KVM memory slots when attached (no lease live):
    /// after every batch they must be back to this.
    memory_slots: [usize; 4],
}

fn domain<'s>(sys: &'s System, name: &str) -> Result<&'s Domain, FuzzError> {
    sys.domain_by_name(name)
        .ok_or_else(|| FuzzError::NoDomain(name.to_string()))
}

impl<'s> Fuzz<'s> {
    /// Find the fuzz domains `domains` named in `sys`.
    pub fn attach(sys: &'s System, domains: &FuzzDomains) -> Result<Self, FuzzError> {
        if domains.workers == 0 || domains.workers as usize > MAX_WORKERS {
            return Err(FuzzError::Workers {
                workers: domains.workers,
            });
        }
        let [a, b] = domains.deep();
        let mut fuzz = Self {
            sys,
            fuzzer: domain(sys, &domains.fuzzer())?,
            callee: domain(sys, &domains.callee())?,
            deep: [domain(sys, &a)?, domain(sys, &b)?],
            workers: domains.workers as usize,
            spawns_open: false,
            keep_stream: false,
            epoch: 0,
            memory_slots: [0; 4],
        };
        fuzz.memory_slots = fuzz.all().map(Domain::memory_slots);
        Ok(fuzz)
    }

    /// Say whether a `System::run` is in progress during the batches (then
    /// the fuzzer's `Spawn`s may be accepted; else all are refused).
    pub fn spawns_open(&mut self, open: bool) -> &mut Self {
        self.spawns_open = open;
        self
    }

    /// Keep every batch's hypercall stream, not only failing ones'.
    pub fn keep_stream(&mut self, keep: bool) -> &mut Self {
        self.keep_stream = keep;
        self
    }

    fn all(&self) -> [&'s Domain; 4] {
        [self.fuzzer, self.callee, self.deep[0], self.deep[1]]
    }

    /// Run one batch of about `count` hostile hypercalls (split over the
    /// workers, at most [`RING_LEN`] each) from seed `seed`, on this host
    /// thread and `workers - 1` scoped ones, and judge it.
    pub fn batch(&mut self, seed: u64, count: u64) -> Result<Batch, FuzzError> {
        let batch_started = Instant::now();
        self.epoch += 1;
        let epoch = self.epoch;
        let (dir_at, dir) = self.prepare()?;
        let per = count
            .div_ceil(self.workers as u64)
            .clamp(1, RING_LEN as u64);
        let l = self.fuzzer.layout;
        let budget = |d: &Domain| d.layout.stack_size / 2;
        let setup = Setup {
            magic: wire::MAGIC,
            epoch,
            seed,
            workers: self.workers as u64,
            count: per,
            domain_id: u64::from(self.fuzzer.id.raw()),
            image_end: l.image_end,
            stack_count: u64::from(l.stack_count),
            stack_size: l.stack_size,
            memory_size: l.memory_size,
            budgets: [
                budget(self.callee),
                budget(self.callee),
                budget(self.deep[0]),
                0,
            ],
            race_variant: wire::mix(seed ^ epoch) % wire::RACE_VARIANTS.len() as u64,
            spawns_open: u64::from(self.spawns_open),
        };
        memory::write_obj(self.fuzzer, dir.setup, &setup)?;
        let tag = wire::mix(seed ^ 0x0ca4_a41e ^ epoch);
        let mut guards = Vec::with_capacity(4);
        for d in self.all() {
            guards.push(Guard::arm(d, tag ^ u64::from(d.id.raw()))?);
        }
        let generations_before = self.all().map(Domain::generation);

        let started = Instant::now();
        let outcomes = self.run_workers();
        let elapsed = started.elapsed();

        let mut report = Report {
            batches: 1,
            elapsed,
            ..Report::default()
        };
        let violation = |what: String| Violation {
            seed,
            epoch,
            worker: None,
            seq: 0,
            what,
            record: String::new(),
        };
        for (w, o) in outcomes.iter().enumerate() {
            match o {
                Ok(ThreadResult::Returned { status: 0, results }) if results[0] == per => {}
                Ok(other) => report.violate(violation(format!("worker {w} ended {other:?}"))),
                Err(p) => report.violate(violation(format!("worker {w}: the VMM panicked: {p}"))),
            }
        }
        for v in self.settle() {
            report.violate(violation(v));
        }
        let generations_after = self.all().map(Domain::generation);
        let ctx = Context {
            region: Region::of(&l),
            slots: wire::SLOTS,
            budgets: setup.budgets,
            scratch: std::array::from_fn(|w| dir.scratch + w as u64 * wire::SCRATCH_LEN),
            race_out: (dir.race_out, dir.race_out + wire::RACE_OUT_LEN),
            spawn_entries: self.fuzzer.entries.len() as u64,
            spawns_open: self.spawns_open,
            generations: [
                (generations_before[1], generations_after[1]),
                (generations_before[1], generations_after[1]),
                (generations_before[2], generations_after[2]),
                (0, 0),
            ],
            callee_image: (shared_abi::layout::IMAGE_BASE, self.callee.layout.image_end),
        };
        if generations_after[0] != generations_before[0] {
            report.violate(violation("the fuzzer domain itself restarted".into()));
        }
        for d in &self.deep {
            if d.generation() != 0 {
                report.violate(violation(format!("`{}` restarted", d.name)));
            }
        }
        let mut stream = String::new();
        for w in 0..self.workers {
            let records = self.read_ring(&dir, w)?;
            if records.len() as u64 != per {
                report.violate(violation(format!(
                    "worker {w} wrote {} records of {per}",
                    records.len()
                )));
            }
            for (seq, rec) in records.iter().enumerate() {
                self.count(&mut report, &ctx, w, seq, rec, seed, epoch);
            }
            if self.keep_stream || report.violation_count > 0 {
                for (seq, rec) in records.iter().enumerate() {
                    stream.push_str(&render(w, seq, rec));
                    stream.push('\n');
                }
            }
        }
        let flips = memory::read_obj::<Directory>(self.fuzzer, dir_at)?.flips;
        report.flips = flips;
        for (g, d) in guards.iter().zip(self.all()) {
            for v in g.check(d, 16)? {
                report.violate(violation(v));
            }
        }
        let zone = memory::read(self.fuzzer, dir.canary, wire::CANARY_LEN)?;
        if zone != memory::pattern_bytes(wire::CANARY_TAG, dir.canary, wire::CANARY_LEN) {
            report.violate(violation(
                "the fuzzer's .bss canary zone was written".into(),
            ));
        }
        if report.violation_count > 0 && stream.is_empty() {
            for w in 0..self.workers {
                for (seq, rec) in self.read_ring(&dir, w)?.iter().enumerate() {
                    stream.push_str(&render(w, seq, rec));
                    stream.push('\n');
                }
            }
        }
        report.wall = batch_started.elapsed();
        Ok(Batch { report, stream })
    }

    #[allow(clippy::too_many_arguments)]
    fn count(
        &self,
        report: &mut Report,
        ctx: &Context,
        w: usize,
        seq: usize,
        rec: &Record,
        seed: u64,
        epoch: u64,
    ) {
        let v = judge(ctx, w, rec);
        report.hypercalls += 1;
        report.entered += u64::from(v.entered);
        report.lent_calls += u64::from(v.lent);
        report.lease_faults += u64::from(v.lease_fault);
        report.racy += u64::from(rec.flags & wire::flag::RACY != 0);
        report.raced_other += u64::from(v.alternative);
        if let Some(c) = report.by_op.get_mut(usize::try_from(rec.op).unwrap_or(0)) {
            *c += 1;
        }
        let number = u32::try_from(rec.regs_in[wire::RAX])
            .ok()
            .filter(|n| (1..=9).contains(n))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        report.by_number[number] += 1;
        if number == shared_abi::Hypercall::Spawn as usize && rec.regs_out[wire::RAX] == 0 {
            report.spawns_accepted += 1;
        }
        for (a, b) in report.callee_numbers.iter_mut().zip(v.callee_numbers) {
            *a += b;
        }
        if let Some(c) = v.code {
            report.by_code[c] += 1;
        }
        report.app_statuses += u64::from(v.app);
        if let Some(c) = v.nested {
            report.nested_codes[c] += 1;
        }
        for what in v.problems {
            report.violate(Violation {
                seed,
                epoch,
                worker: Some(w),
                seq,
                what,
                record: render(w, seq, rec),
            });
        }
    }

    /// Run `prepare` in the fuzzer and read the directory it answers.
    fn prepare(&self) -> Result<(u64, Directory), FuzzError> {
        let out = self
            .sys
            .run_thread(&self.fuzzer.name, "prepare", &[0, wire::PREPARE_MAGIC]);
        let addr = match out.result {
            ThreadResult::Returned {
                status: 0,
                results: [addr, wire::MAGIC],
            } => addr,
            other => return Err(FuzzError::Prepare(format!("{other:?}"))),
        };
        let dir: Directory = memory::read_obj(self.fuzzer, addr)?;
        let l = self.fuzzer.layout;
        let region = Region::of(&l);
        let rings = RING_LEN as u64 * MAX_WORKERS as u64 * std::mem::size_of::<Record>() as u64;
        let fits = [
            (dir.setup, std::mem::size_of::<Setup>() as u64),
            (dir.rings, rings),
            (dir.written, 8 * MAX_WORKERS as u64),
            (dir.scratch, wire::SCRATCH_LEN * MAX_WORKERS as u64),
            (dir.canary, wire::CANARY_LEN),
            (dir.race_out, wire::RACE_OUT_LEN),
        ]
        .iter()
        .all(|&(a, n)| region.contains(a, n));
        if dir.magic != wire::MAGIC || !fits {
            return Err(FuzzError::Directory(format!("{dir:x?}")));
        }
        Ok((addr, dir))
    }

    /// The workers: worker 0 on this host thread, the others on scoped
    /// ones; a panic on any (the VMM's) is caught and reported.
    fn run_workers(&self) -> Vec<Result<ThreadResult, String>> {
        let name = &self.fuzzer.name;
        // Every worker runs guest code, so each runs on a thread of its own
        // confined like the engine's threads (the caller stays as it is: it
        // only starts and joins them).
        let work = |w: usize| {
            ferry_engine::sandbox::confine_current_thread()
                .map_err(|e| format!("cannot confine fuzz worker {w}: {e}"))?;
            let args = [w as u64, wire::WORK_MAGIC];
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.sys.run_thread(name, "work", &args).result
            }))
            .map_err(|p| panic_text(&*p))
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.workers)
                .map(|w| {
                    std::thread::Builder::new()
                        .name(format!("fuzz-w{w}"))
                        .spawn_scoped(s, move || work(w))
                })
                .collect();
            workers
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join().unwrap_or_else(|p| Err(panic_text(&*p))),
                    Err(e) => Err(format!("cannot start a worker thread: {e}")),
                })
                .collect()
        })
    }

    /// Wait (bounded) until every fuzz domain runs again with no frame in
    /// it and no spawned thread left; then every stack and vCPU must be in
    /// its pool. Returns what did not come back.
    fn settle(&self) -> Vec<String> {
        let start = Instant::now();
        let idle = |d: &Domain| {
            d.health() == Health::Running && d.active_frames() == 0 && d.spawned_threads() == 0
        };
        while !self.all().iter().all(|d| idle(d)) && start.elapsed() < SETTLE {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut bad = Vec::new();
        for (d, &slots) in self.all().iter().zip(&self.memory_slots) {
            if d.memory_slots() != slots {
                bad.push(format!(
                    "leak: `{}` has {} KVM memory slots, {slots} before (a lease left behind)",
                    d.name,
                    d.memory_slots()
                ));
            }
        }
        for d in self.all() {
            if d.health() != Health::Running {
                bad.push(format!("`{}` is {:?} after the batch", d.name, d.health()));
            }
            let (free, all) = (d.free_stacks(), d.stack_capacity() as usize);
            if free != all || d.active_frames() != 0 {
                bad.push(format!(
                    "leak: `{}` has {free} of {all} stacks back, {} frames inside",
                    d.name,
                    d.active_frames()
                ));
            }
            if d.idle_vcpus() != d.vcpu_count() as usize {
                bad.push(format!(
                    "leak: `{}` has {} of {} vCPUs idle",
                    d.name,
                    d.idle_vcpus(),
                    d.vcpu_count()
                ));
            }
        }
        bad
    }

    fn read_ring(&self, dir: &Directory, w: usize) -> Result<Vec<Record>, FuzzError> {
        let written: u64 = memory::read_obj(self.fuzzer, dir.written + 8 * w as u64)?;
        let n = written.min(RING_LEN as u64);
        let size = std::mem::size_of::<Record>() as u64;
        let base = dir.rings + w as u64 * RING_LEN as u64 * size;
        let bytes = memory::read(self.fuzzer, base, n * size)?;
        Ok(bytes
            .chunks_exact(std::mem::size_of::<Record>())
            .filter_map(|c| Record::read_from_bytes(c).ok())
            .collect())
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Run one batch of `count` hypercalls with seed `seed` on the fuzz
/// domains `domains` of `sys` (a fresh [`Fuzz`] each time: for a loop, keep
/// one [`Fuzz`] instead).
pub fn run_batch(
    sys: &System,
    domains: &FuzzDomains,
    seed: u64,
    count: u64,
) -> Result<Batch, FuzzError> {
    Fuzz::attach(sys, domains)?.batch(seed, count)
}
