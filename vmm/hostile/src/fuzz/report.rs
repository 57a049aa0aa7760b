//! What fuzz batches found: counts by hypercall number, answer and op, the
//! share of calls that entered a callee, throughput, and every violation
//! with what it takes to reproduce it. Reports of many batches (or many
//! host threads) add up with [`Report::merge`].

use super::wire::{self, act, op, Record, NREGS};
use shared_abi::ErrorCode;
use std::fmt::Write as _;
use std::time::Duration;

/// Violations a report keeps in full (all are counted).
pub const KEPT_VIOLATIONS: usize = 100;

/// Error codes a fuzz run provokes and must see (each at least N times):
/// every code the ABI defines that a guest can provoke by itself. Left out:
/// `DomainDead` (10: only a restart that fails, which the fault-injection
/// guest provokes; the fuzz callees always boot), `Restarting` (12: only by
/// timing, when a call arrives while another thread's fault has the callee
/// quarantined; counted, not required) and `Internal` (17: the VMM's own
/// failures, which no guest can cause).
pub const PROVOKED: [ErrorCode; 17] = [
    ErrorCode::BadSlot,
    ErrorCode::TooManyArgs,
    ErrorCode::BadMode,
    ErrorCode::OutOfRange,
    ErrorCode::Overflow,
    ErrorCode::OverlappingOutputs,
    ErrorCode::TooLarge,
    ErrorCode::UnknownHypercall,
    ErrorCode::Fault,
    ErrorCode::NoStack,
    ErrorCode::BadPointer,
    ErrorCode::TooDeep,
    ErrorCode::QuotaExceeded,
    ErrorCode::NoSuchEntry,
    ErrorCode::BootOver,
    ErrorCode::Timeout,
    ErrorCode::CalleeExited,
];

/// One thing that broke the ABI's promises, the oracle's, or the
/// engine's invariants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Seed of the batch.
    pub seed: u64,
    /// Batch number (`Setup::epoch`).
    pub epoch: u64,
    /// Worker (`None`: not about one record, e.g. a canary or a leak).
    pub worker: Option<usize>,
    /// Record index in that worker's stream.
    pub seq: usize,
    /// What was wrong.
    pub what: String,
    /// The record, rendered (empty when not about one record).
    pub record: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.worker {
            Some(w) => write!(
                f,
                "seed {} batch {} worker {w} #{}: {}\n    {}",
                self.seed, self.epoch, self.seq, self.what, self.record
            ),
            None => write!(f, "seed {} batch {}: {}", self.seed, self.epoch, self.what),
        }
    }
}

/// Counts and findings of one or more batches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Batches run.
    pub batches: u64,
    /// Hypercalls the fuzzer sent and the oracle judged.
    pub hypercalls: u64,
    /// Of them, calls that entered a callee.
    pub entered: u64,
    /// Of them, submissions of the request another vCPU was rewriting.
    pub racy: u64,
    /// Of them, answered as the rewritten request (the race was won by
    /// the rewriting vCPU).
    pub raced_other: u64,
    /// Byte flips made by the rewriting vCPUs.
    pub flips: u64,
    /// `Spawn`s accepted (only while a `System::run` is in progress).
    pub spawns_accepted: u64,
    /// Calls that entered a callee with at least one object lent
    /// (`ARG_LEND`, whole pages), as the oracle's model says.
    pub lent_calls: u64,
    /// Stores into a read-only (IN) lease, answered as page faults.
    pub lease_faults: u64,
    /// Hypercalls by `op` number.
    pub by_op: [u64; 13],
    /// Hypercalls the fuzzer sent by number (`[0]`: numbers the ABI does
    /// not know).
    pub by_number: [u64; 10],
    /// Hypercalls the callees made on the fuzzer's behalf, by number, as
    /// the answers show them (`Return`, `Exit`, `Panic`, `Print`, nested
    /// `Call`s).
    pub callee_numbers: [u64; 10],
    /// Answers by status (index = `ErrorCode`, 0 = success).
    pub by_code: [u64; 21],
    /// Answers carrying an application status.
    pub app_statuses: u64,
    /// Refusals inside deep chains, reported up by them (`TooDeep`,
    /// `NoStack`), by code.
    pub nested_codes: [u64; 21],
    /// Violations found (all of them).
    pub violation_count: u64,
    /// The first [`KEPT_VIOLATIONS`] violations.
    pub violations: Vec<Violation>,
    /// Wall-clock time the workers ran.
    pub elapsed: Duration,
    /// Wall-clock time of whole batches: `prepare`, canaries, workers,
    /// settling, reading and judging (what a soak's loop pays per batch).
    pub wall: Duration,
}

impl Report {
    /// Add `other`'s counts and violations to this report.
    pub fn merge(&mut self, other: &Report) {
        self.batches += other.batches;
        self.hypercalls += other.hypercalls;
        self.entered += other.entered;
        self.racy += other.racy;
        self.raced_other += other.raced_other;
        self.flips += other.flips;
        self.spawns_accepted += other.spawns_accepted;
        self.lent_calls += other.lent_calls;
        self.lease_faults += other.lease_faults;
        add(&mut self.by_op, &other.by_op);
        add(&mut self.by_number, &other.by_number);
        add(&mut self.callee_numbers, &other.callee_numbers);
        add(&mut self.by_code, &other.by_code);
        add(&mut self.nested_codes, &other.nested_codes);
        self.app_statuses += other.app_statuses;
        self.violation_count += other.violation_count;
        let room = KEPT_VIOLATIONS.saturating_sub(self.violations.len());
        self.violations
            .extend(other.violations.iter().take(room).cloned());
        self.elapsed += other.elapsed;
        self.wall += other.wall;
    }

    /// Record a violation.
    pub fn violate(&mut self, v: Violation) {
        self.violation_count += 1;
        if self.violations.len() < KEPT_VIOLATIONS {
            self.violations.push(v);
        }
    }

    /// Judged hypercalls per second of worker wall-clock time.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.hypercalls as f64 / s
        } else {
            0.0
        }
    }

    /// Judged hypercalls per second of whole-batch wall-clock time.
    pub fn end_to_end_rate(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 {
            self.hypercalls as f64 / s
        } else {
            0.0
        }
    }

    /// Share of hypercalls that entered a callee.
    pub fn entered_share(&self) -> f64 {
        if self.hypercalls == 0 {
            0.0
        } else {
            self.entered as f64 / self.hypercalls as f64
        }
    }

    /// How often code `c` was seen, directly or from inside a deep chain.
    pub fn seen(&self, c: ErrorCode) -> u64 {
        let i = c as usize;
        self.by_code.get(i).copied().unwrap_or(0) + self.nested_codes.get(i).copied().unwrap_or(0)
    }

    /// The [`PROVOKED`] codes seen fewer than `n` times.
    pub fn missing_codes(&self, n: u64) -> Vec<ErrorCode> {
        PROVOKED
            .iter()
            .copied()
            .filter(|&c| self.seen(c) < n)
            .collect()
    }

    /// Hypercall numbers 1..=9 used fewer than `n` times (by the fuzzer or
    /// by the callees on its behalf).
    pub fn unused_numbers(&self, n: u64) -> Vec<u64> {
        (1..10u64)
            .filter(|&k| {
                let i = usize::try_from(k).unwrap_or(0);
                self.by_number[i] + self.callee_numbers[i] < n
            })
            .collect()
    }

    /// The report for people: a few lines.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fuzz: {} hypercalls in {} batches, {:.1} s in workers ({:.0}/s), {:.1} s in all ({:.0}/s); {} entered a callee ({:.1}%); {} raced ({} answered as rewritten, {} flips); {} violations",
            self.hypercalls,
            self.batches,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.wall.as_secs_f64(),
            self.end_to_end_rate(),
            self.entered,
            100.0 * self.entered_share(),
            self.racy,
            self.raced_other,
            self.flips,
            self.violation_count
        );
        let _ = writeln!(
            s,
            "  leases: {} calls entered with objects lent, {} stores into IN leases faulted",
            self.lent_calls, self.lease_faults
        );
        let ops: Vec<String> = (1..op::NAMES.len())
            .map(|i| format!("{} {}", op::NAMES[i], self.by_op[i]))
            .collect();
        let _ = writeln!(s, "  by op: {}", ops.join(", "));
        let names = [
            "unknown", "Hello", "Ready", "Print", "Call", "Return", "Nop", "Panic", "Exit", "Spawn",
        ];
        let numbers: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    "{} {}+{}",
                    names[i], self.by_number[i], self.callee_numbers[i]
                )
            })
            .collect();
        let _ = writeln!(s, "  by number (fuzzer+callees): {}", numbers.join(", "));
        let codes: Vec<String> = (0..21)
            .filter(|&i| self.by_code[i] + self.nested_codes[i] > 0)
            .map(|i| {
                let name = u32::try_from(i)
                    .ok()
                    .and_then(|c| ErrorCode::try_from(c).ok())
                    .map_or_else(|| "Ok".to_string(), |c| format!("{c:?}"));
                if self.nested_codes[i] > 0 {
                    format!("{name} {}+{} nested", self.by_code[i], self.nested_codes[i])
                } else {
                    format!("{name} {}", self.by_code[i])
                }
            })
            .collect();
        let _ = write!(
            s,
            "  by answer: {}, app status {}",
            codes.join(", "),
            self.app_statuses
        );
        s
    }
}

fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// One record as a line of a log: who sent what, what came back, and the
/// request (the used descriptors) for calls.
pub fn render(worker: usize, seq: usize, rec: &Record) -> String {
    let mut s = String::new();
    let name = usize::try_from(rec.op)
        .ok()
        .and_then(|i| op::NAMES.get(i))
        .copied()
        .unwrap_or("?");
    let _ = write!(s, "w{worker} #{seq} {name}");
    if rec.op == op::HOSTILE {
        let a = usize::try_from(rec.req.scalars[0]).unwrap_or(0);
        let _ = write!(s, "({})", act::NAMES.get(a).copied().unwrap_or("?"));
    }
    if rec.flags != 0 {
        let _ = write!(s, " flags={:#x}", rec.flags);
    }
    let regs = |v: &[u64; NREGS]| {
        v.iter()
            .zip(wire::REG_NAMES)
            .map(|(x, n)| format!("{n}={x:#x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = write!(
        s,
        " | in {} | out {} | tag={:#x} in_digest={:#x} post={:#x} detail={:#x} cycles={}",
        regs(&rec.regs_in),
        regs(&rec.regs_out),
        rec.tag,
        rec.in_digest,
        rec.post,
        rec.detail,
        rec.cycles
    );
    if rec.regs_in[0] == shared_abi::Hypercall::Call as u64 {
        let r = &rec.req;
        let _ = write!(
            s,
            " | req slot={} nargs={} scalars={:x?}",
            r.slot, r.nargs, r.scalars
        );
        let n = usize::try_from(r.nargs)
            .unwrap_or(0)
            .min(shared_abi::MAX_ARGS);
        for (i, d) in r.args.iter().take(n).enumerate() {
            let _ = write!(
                s,
                " [{i}] {:#x}+{:#x} mode={} flags={:#x}",
                d.addr, d.len, d.mode, d.flags
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_keeps_violations_bounded() {
        let mut a = Report {
            hypercalls: 3,
            entered: 1,
            ..Report::default()
        };
        a.by_code[4] = 2;
        let mut b = a.clone();
        for i in 0..KEPT_VIOLATIONS + 5 {
            b.violate(Violation {
                seed: 1,
                epoch: 1,
                worker: Some(0),
                seq: i,
                what: "x".into(),
                record: String::new(),
            });
        }
        a.merge(&b);
        assert_eq!(a.hypercalls, 6);
        assert_eq!(a.by_code[4], 4);
        assert_eq!(a.violation_count, (KEPT_VIOLATIONS + 5) as u64);
        assert_eq!(a.violations.len(), KEPT_VIOLATIONS);
        assert_eq!(a.seen(ErrorCode::OutOfRange), 4);
        assert!(a.missing_codes(1).contains(&ErrorCode::BadSlot));
        assert!(!a.missing_codes(1).contains(&ErrorCode::OutOfRange));
    }
}
