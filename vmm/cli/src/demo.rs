//! The demo: a client stores, reads, deletes and hashes values through
//! migrating calls into `kv` (which logs each put into `logger`) and
//! `hasher`. The VMM — not the client — judges the results: it keeps its own
//! model of the store from the bytes it copied, recomputes every digest from
//! the bytes it copied into `hasher`, and counts the log lines. The engine
//! hands the referee those bytes as it copied them (kept at the copy), so a
//! guest rewriting an object from a second vCPU cannot fool it.

use client_api::WorkloadError;
use ferry_engine::ids::{DomainId, Slot};
use ferry_engine::manifest::System as Manifest;
use ferry_engine::observe::{CallEvent, CallObserver};
use ferry_engine::stats::LatencySummary;
use ferry_engine::system::{System, SystemError, ThreadOutcome};
use ferry_engine::thread::ThreadResult;
use ferry_interface::AppError;
use kv_api::KvError;
use sha2::{Digest, Sha256};
use shared_abi::{ErrorCode, APP_ERROR_BASE};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// The status word of kv's `NotFound`, as the engine reports it.
const KV_NOT_FOUND: u64 = APP_ERROR_BASE + KvError::NotFound as u64;
/// How many values the client hashes.
pub const HASHED_VALUES: u64 = 100;

#[derive(Default)]
struct Tally {
    model: HashMap<Vec<u8>, Vec<u8>>,
    puts: u64,
    gets: u64,
    gets_missing: u64,
    deletes: u64,
    hashes: u64,
    log_lines: u64,
    bad_slot: u64,
    other_refusals: u64,
    mismatches: Vec<String>,
}

/// The VMM-side checker, installed as the system's call observer.
#[derive(Default)]
pub struct Checker {
    tally: Mutex<Tally>,
}

/// A short, printable rendering of guest bytes: text if it is text, else hex.
fn show(b: &[u8]) -> String {
    let head = b.get(..b.len().min(24)).unwrap_or(b);
    let more = if b.len() > head.len() { "…" } else { "" };
    match std::str::from_utf8(head) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s}{more}"),
        _ => format!(
            "0x{}{more} ({} bytes)",
            head.iter().map(|x| format!("{x:02x}")).collect::<String>(),
            b.len()
        ),
    }
}

impl CallObserver for Checker {
    fn completed(&self, ev: &CallEvent<'_>) {
        let Ok(mut t) = self.tally.lock() else { return };
        let obj = |i: usize| ev.objects.get(i);
        match (ev.callee_name, ev.entry) {
            ("kv", "put") if ev.status == 0 => {
                if let (Some(k), Some(v)) = (obj(0), obj(1)) {
                    t.model.insert(k.input.clone(), v.input.clone());
                    t.puts += 1;
                }
            }
            ("kv", "get") => {
                let Some(key) = obj(0).map(|k| k.input.clone()) else {
                    return;
                };
                let expected = t.model.get(&key).cloned();
                t.gets += 1;
                match (ev.status, expected) {
                    (0, Some(want)) => {
                        let len = usize::try_from(ev.results[0]).unwrap_or(usize::MAX);
                        let got = obj(1).and_then(|v| v.output.get(..len));
                        if got != Some(want.as_slice()) {
                            t.mismatches.push(format!(
                                "get `{}`: kv answered {:?}, the model holds {:?}",
                                show(&key),
                                got.map(show),
                                show(&want)
                            ));
                        }
                    }
                    (KV_NOT_FOUND, None) => t.gets_missing += 1,
                    (s, want) => t.mismatches.push(format!(
                        "get `{}`: status {s:#x}, the model {}",
                        show(&key),
                        if want.is_some() {
                            "has it"
                        } else {
                            "has no such key"
                        }
                    )),
                }
            }
            ("kv", "delete") => {
                let Some(key) = obj(0).map(|k| k.input.clone()) else {
                    return;
                };
                let had = t.model.remove(&key).is_some();
                t.deletes += 1;
                if had != (ev.status == 0) {
                    t.mismatches.push(format!(
                        "delete `{}`: status {:#x} but the model {} it",
                        show(&key),
                        ev.status,
                        if had { "had" } else { "did not have" }
                    ));
                }
            }
            ("hasher", "sha256") if ev.status == 0 => {
                if let (Some(data), Some(digest)) = (obj(0), obj(1)) {
                    t.hashes += 1;
                    let want = Sha256::digest(&data.input);
                    if digest.output.as_slice() != want.as_slice() {
                        t.mismatches.push(format!(
                            "sha256 of {} bytes: hasher answered a wrong digest",
                            data.input.len()
                        ));
                    }
                }
            }
            ("logger", "append") if ev.status == 0 => t.log_lines += 1,
            _ => {}
        }
    }

    fn refused(&self, _caller: DomainId, _slot: Slot, code: ErrorCode) {
        if let Ok(mut t) = self.tally.lock() {
            if code == ErrorCode::BadSlot {
                t.bad_slot += 1;
            } else {
                t.other_refusals += 1;
            }
        }
    }
}

/// One check and whether it held.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
}

/// What the demo did and found.
pub struct DemoReport {
    /// Each thread's outcome.
    pub threads: Vec<ThreadOutcome>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Up to 10 mismatches, verbatim.
    pub mismatches: Vec<String>,
    /// Latency as the guests measured it.
    pub latency: LatencySummary,
    /// Calls that entered a callee.
    pub calls: u64,
}

impl DemoReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// Boot `spec` (the demo manifest or a variant), run the client with `keys`
/// keys and judge the results.
pub fn run(mut spec: Manifest, keys: u64) -> Result<DemoReport, SystemError> {
    for t in &mut spec.threads {
        if t.args.is_empty() {
            t.args.push(keys);
        } else if let Some(a) = t.args.first_mut() {
            *a = keys;
        }
    }
    let spec_threads = spec.threads.len() as u64;
    let checker = Arc::new(Checker::default());
    let sys = System::boot(spec, Some(checker.clone()))?;
    let threads = sys.run();
    let latency = sys.latency();
    let faults = sys.faults();
    let t = checker
        .tally
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    let n = spec_threads;
    let deleted = n * keys.div_ceil(10);
    let mut checks = Vec::new();
    let mut check = |what: String, ok: bool| checks.push(Check { what, ok });
    let all_ok = threads
        .iter()
        .all(|o| matches!(o.result, ThreadResult::Returned { status: 0, .. }));
    let phases: Vec<String> = threads
        .iter()
        .filter_map(|o| match o.result {
            ThreadResult::Returned { status, .. } => status.checked_sub(APP_ERROR_BASE),
            _ => None,
        })
        .filter_map(|code| u32::try_from(code).ok().and_then(WorkloadError::from_code))
        .map(|e| format!("{e:?}"))
        .collect();
    check(
        format!(
            "every thread returned success ({} threads at once){}",
            threads.len(),
            if phases.is_empty() {
                String::new()
            } else {
                format!("; failed phases: {}", phases.join(", "))
            }
        ),
        all_ok && threads.len() as u64 == n,
    );
    check(
        format!("kv stored {} keys (VMM saw {} puts)", n * keys, t.puts),
        t.puts == n * keys,
    );
    check(
        format!(
            "every get matched the VMM's model ({} gets, {} mismatches)",
            t.gets,
            t.mismatches.len()
        ),
        t.mismatches.is_empty() && t.gets >= n * keys,
    );
    check(
        format!(
            "deleted keys are gone ({} deletes, {} gets found nothing)",
            t.deletes, t.gets_missing
        ),
        t.deletes == deleted && t.gets_missing == deleted,
    );
    check(
        format!(
            "every digest matched SHA-256 of the copied bytes ({} hashed)",
            t.hashes
        ),
        t.hashes == n * HASHED_VALUES.min(keys),
    );
    check(
        format!("logger holds one line per put ({} lines)", t.log_lines),
        t.log_lines == t.puts,
    );
    check(
        format!(
            "each thread's call outside the client's capabilities was refused ({} BadSlot)",
            t.bad_slot
        ),
        t.bad_slot == n,
    );
    check(
        format!("no other call was refused ({})", t.other_refusals),
        t.other_refusals == 0,
    );
    check(
        format!("no domain faulted ({})", faults.len()),
        faults.is_empty(),
    );
    check(
        "the exit floor was measured".to_owned(),
        latency.floor_p50().is_some(),
    );
    for f in &faults {
        log::error!("{f}");
    }
    Ok(DemoReport {
        threads,
        checks,
        mismatches: t.mismatches.into_iter().take(10).collect(),
        latency,
        calls: sys.counters().calls(),
    })
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Ferry demo: client → kv → logger, client → hasher ({} migrating calls)",
            self.calls
        )?;
        for t in &self.threads {
            writeln!(f, "  {}", t.summary(self.latency.tsc_khz))?;
        }
        writeln!(f, "checks (made by the VMM from the bytes it copied):")?;
        for c in &self.checks {
            writeln!(f, "  [{}] {}", if c.ok { "ok" } else { "FAIL" }, c.what)?;
        }
        for m in &self.mismatches {
            writeln!(f, "  mismatch: {m}")?;
        }
        writeln!(f)?;
        write!(f, "{}", self.latency)?;
        writeln!(
            f,
            "(p50/floor = call median / (2 × floor median): a call+return is two exits)"
        )?;
        writeln!(
            f,
            "{}",
            if self.passed() {
                "demo: all checks passed"
            } else {
                "demo: CHECKS FAILED"
            }
        )
    }
}
