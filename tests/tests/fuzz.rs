//! The bounded fuzz of `cargo test`: hostile hypercalls from several vCPUs
//! of the `fuzzer` image, every one judged by `ferry_hostile::fuzz`'s
//! oracle, with canaries, system-page snapshots and pool checks after each
//! batch. A test binary of its own: it counts host threads and fds.

mod common;

use ferry_engine::manifest::{Document, DomainEntry, Millis, ThreadEntry};
use ferry_engine::system::System;
use ferry_hostile::fuzz::memory::{canary_ranges, Guard};
use ferry_hostile::fuzz::{Batch, Fuzz, FuzzDomains, Report};
use ferry_hostile::STACKER_ENTRIES;
use std::time::{Duration, Instant};

/// Hypercalls per batch (over 3 workers).
const BATCH: u64 = 3_000;
/// Batches with spawns closed (between two during a `System::run`).
const CLOSED_BATCHES: u64 = 4;
/// Each provokable error code must be seen this often per run.
const EACH_CODE: u64 = 5;

/// The fuzz domains, plus a run-keeper: a `[[thread]]` in `gate` whose
/// nested call waits (asleep) for `hold`'s only stack, which the test
/// holds while a batch runs inside `System::run`.
fn manifest(domains: &FuzzDomains) -> Document {
    let mut doc = Document::default();
    for d in domains.domains() {
        doc = doc.domain(d);
    }
    doc.domain(
        DomainEntry::new("gate", "fuzz-callee")
            .memory_mib(4)
            .stacks(2, 16)
            .exports(["nest"])
            .capabilities(["hold.nest", "gate.nest"]),
    )
    .domain(
        DomainEntry::new("hold", "fuzz-callee")
            .memory_mib(4)
            .stacks(1, 16)
            .limits(Millis::Ms(1000), Millis::unlimited(), 1000)
            .exports(["nest"]),
    )
    .thread(ThreadEntry::new("gate", "nest", &[1, 0]))
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// Names of this process's threads, for a leak message that says which.
fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    names.sort();
    names
}

fn check(b: Batch, what: &str, total: &mut Report) {
    if b.report.violation_count > 0 {
        let log = std::env::temp_dir().join(format!("ferry-fuzz-{what}.log"));
        let _ = std::fs::write(&log, &b.stream);
        let first: Vec<String> = b
            .report
            .violations
            .iter()
            .take(5)
            .map(|v| v.to_string())
            .collect();
        panic!(
            "{what}: {} violations (stream in {}):\n{}",
            b.report.violation_count,
            log.display(),
            first.join("\n")
        );
    }
    total.merge(&b.report);
}

/// One batch inside a `System::run`, so the fuzzer's spawns can be
/// accepted: the run's only manifest thread waits for `hold`'s stack.
fn batch_in_a_run(sys: &System, fuzz: &mut Fuzz<'_>, seed: u64) -> Batch {
    let hold = sys.domain_by_name("hold").expect("hold");
    let gate = sys.domain_by_name("gate").expect("gate");
    let stack = hold.take_stack(|| 0).expect("hold's stack");
    std::thread::scope(|s| {
        let run = s.spawn(|| sys.run());
        let start = Instant::now();
        while gate.active_frames() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the run never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let b = fuzz.spawns_open(true).batch(seed, BATCH).expect("batch");
        fuzz.spawns_open(false);
        hold.give_stack(stack);
        let outcomes = run.join().expect("run");
        for o in &outcomes {
            if o.start == "gate.nest" {
                common::ok(&o.result);
            }
        }
        b
    })
}

/// The tests here count process-wide things: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn vcpus(sys: &System) -> usize {
    sys.domains().iter().map(|d| d.vcpu_count() as usize).sum()
}

#[test]
fn hostile_hypercalls_from_several_vcpus_are_answered_as_the_abi_says() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let domains = FuzzDomains::new("fz-");
    let (_dog, sys) = common::boot("fuzz", manifest(&domains));
    let mut fuzz = Fuzz::attach(&sys, &domains).expect("attach");
    let mut total = Report::default();
    // Warm-up: a batch inside a run, so every domain has run once.
    check(batch_in_a_run(&sys, &mut fuzz, 100), "warm-up", &mut total);
    let names_before = thread_names();
    let (threads, fds, vcpus_before) = (
        count_dir("/proc/self/task"),
        count_dir("/proc/self/fd"),
        vcpus(&sys),
    );
    for seed in 1..=CLOSED_BATCHES {
        let b = fuzz.batch(seed, BATCH).expect("batch");
        check(b, "closed", &mut total);
    }
    check(batch_in_a_run(&sys, &mut fuzz, 101), "in-a-run", &mut total);
    common::assert_all_returned(&sys);
    // At most as many as before: a thread of an earlier test's system (its
    // VMs' kernel workers end after the VM fds close) may still have been
    // exiting when the first count was taken.
    // A thread still on its way out (a spawned guest thread's host thread
    // after its join, a kernel worker) shows for a moment: a leaked one
    // stays, so look again for up to two seconds before calling it a leak.
    let mut now = count_dir("/proc/self/task");
    for _ in 0..20 {
        if now <= threads {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = count_dir("/proc/self/task");
    }
    assert!(
        now <= threads,
        "host threads leaked: {threads} → {now}: {names_before:?} → {:?}",
        thread_names()
    );
    // One fd per vCPU: the deep domains may still create theirs lazily.
    let new_vcpus = vcpus(&sys) - vcpus_before;
    assert_eq!(count_dir("/proc/self/fd"), fds + new_vcpus, "fds leaked");

    println!("{}", total.summary());
    assert!(
        total.hypercalls >= 10_000,
        "{} hypercalls",
        total.hypercalls
    );
    assert!(
        total.entered_share() >= 0.20,
        "only {:.1}% entered a callee",
        100.0 * total.entered_share()
    );
    assert_eq!(
        total.missing_codes(EACH_CODE),
        vec![],
        "codes seen < {EACH_CODE} times"
    );
    assert_eq!(
        total.unused_numbers(1),
        Vec::<u64>::new(),
        "hypercall numbers unused"
    );
    assert!(total.by_number[0] > 0, "no unknown hypercall number");
    // The deep domains' pools grow under the fuzzer's nesting (`grow`,
    // fallback `fail`), and never past their maximum.
    for name in domains.deep() {
        let d = sys.domain_by_name(&name).expect("deep domain");
        assert!(d.stacks_grown() > 0, "`{name}` never grew");
        assert!(
            d.stack_capacity() <= d.stack_max(),
            "`{name}` grew past its max"
        );
    }
    assert!(total.racy > 0 && total.flips > 0, "no race");
    // Leases are in the mix: calls entered with objects lent, and stores
    // into IN leases answered as faults (every batch also checked that no
    // lease's memory slot was left behind).
    assert!(total.lent_calls > 0, "no call lent an object");
    assert!(total.lease_faults > 0, "no store into an IN lease");
    assert!(
        total.spawns_accepted > 0,
        "no spawn accepted inside the run"
    );
}

/// The canary check fails on a real VM when a guard page of a stack gets
/// one byte written behind the guest's back.
#[test]
fn a_write_into_a_guard_page_breaks_a_canary() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let domains = FuzzDomains::new("fz-");
    let (_dog, sys) = common::boot("canary", manifest(&domains));
    let d = sys.domain_by_name("fz-callee").expect("callee");
    let guard = Guard::arm(d, 7).expect("arm");
    assert_eq!(guard.check(d, 8).expect("check"), Vec::<String>::new());
    let guard_page = canary_ranges(&d.layout)
        .into_iter()
        .find(|&(a, l)| l == 4096 && a == d.layout.stack_bottom(1) - 4096)
        .expect("a stack guard page");
    ferry_engine::testing::write_guest(d, guard_page.0 + 100, &[0x5a]).expect("write");
    let found = guard.check(d, 8).expect("check");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("canary"), "{found:?}");
    // A GDT descriptor's limit changed is found too (its accessed/busy
    // bits alone would not be).
    ferry_engine::testing::write_guest(d, 0x1000 + 0x28, &[0x00]).expect("write");
    assert_eq!(guard.check(d, 8).expect("check").len(), 2);
}

/// Throughput for docs/RELIABILITY.md (not part of `cargo test`): batches
/// of 6,000 for about `FERRY_FUZZ_SECONDS` (default 60) seconds, with the
/// same oracle; prints the report. `cargo test -p ferry-tests --test fuzz
/// -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement, run by hand"]
fn throughput() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seconds: u64 = std::env::var("FERRY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let domains = FuzzDomains::new("fz-");
    let (_dog, sys) = common::boot_for(
        "throughput",
        manifest(&domains),
        Duration::from_secs(seconds + 120),
    );
    let mut fuzz = Fuzz::attach(&sys, &domains).expect("attach");
    let mut total = Report::default();
    let start = Instant::now();
    let mut seed = 1000;
    while start.elapsed() < Duration::from_secs(seconds) {
        check(
            fuzz.batch(seed, 6_000).expect("batch"),
            "throughput",
            &mut total,
        );
        seed += 1;
    }
    println!("{}", total.summary());
}

/// KiB of each thread's window stack in the mapped fuzz.
const MAPPED_WINDOW_KIB: u64 = 256;
/// Random operations per host thread per mapping variant.
const MAPPED_OPS: u64 = 300;

/// The mapped-mode fuzz system: a relay ring mapped → pool → mapped →
/// (back to the first), callers of `inc_inout` in both modes, a caller
/// forging its stack pointer, and a mapped domain that faults.
fn mapped_manifest(mapping: ferry_engine::manifest::Mapping) -> Document {
    use ferry_engine::manifest::{StackMode, StacksEntry};
    let stacker = |name: &str, mode: StackMode, cap: &str| {
        DomainEntry::new(name, "stacker")
            .exports(STACKER_ENTRIES.iter().copied())
            .capabilities([cap])
            .stack(mode)
    };
    let (m, p) = (StackMode::Mapped, StackMode::Pool);
    let mut doc = Document {
        stacks: Some(StacksEntry {
            mapping,
            window_kib: MAPPED_WINDOW_KIB,
        }),
        ..Document::default()
    };
    for d in [
        stacker("mf-ring-a", m, "mf-ring-b.relay").stacks(32, 16),
        // Room for most chains of both threads (the rest get `NoStack`).
        stacker("mf-ring-b", p, "mf-ring-c.relay").stacks(32, 16),
        stacker("mf-ring-c", m, "mf-ring-a.relay").stacks(32, 16),
        stacker("mf-pass", m, "mf-inc.inc_inout"),
        stacker("mf-pool-pass", p, "mf-inc.inc_inout"),
        stacker("mf-inc", m, "mf-inc.null"),
        stacker("mf-rsp", m, "mf-inc.null"),
        stacker("mf-fwd", m, "mf-fault.fault"),
        stacker("mf-fault", m, "mf-inc.null"),
    ] {
        doc = doc.domain(d);
    }
    doc
}

/// What the mapped fuzz saw: answers by operation and status.
#[derive(Default)]
struct MappedTally {
    by: std::collections::BTreeMap<(&'static str, u64), u64>,
    problems: Vec<String>,
}

/// One random operation of the mapped fuzz on `sys`, judged: exact
/// answers where the ABI fixes them (a stack object passes in place into a
/// mapped callee and is copied out of a pool caller; a stack pointer
/// outside the window is `BadStack`; the real one is accepted), else
/// the answer must be one of the allowed ones.
fn mapped_op(sys: &System, r: u64, t: &mut MappedTally) {
    use ferry_engine::shared_abi::layout::{STACK_WINDOW_BASE, STACK_WINDOW_SIZE};
    use ferry_engine::shared_abi::ErrorCode;
    use ferry_engine::thread::ThreadResult;
    use ferry_hostile::fuzz::wire::mix;
    let in_window =
        |a: u64| (STACK_WINDOW_BASE..STACK_WINDOW_BASE + STACK_WINDOW_SIZE).contains(&a);
    let pick = |k: u64, n: u64| mix(r ^ k) % n;
    let raw = |c: ErrorCode| 0x8000 | c as u64;
    let (what, domain, entry, args): (&'static str, &str, &str, Vec<u64>) = match pick(0, 8) {
        0 => (
            "relay",
            match pick(1, 3) {
                0 => "mf-ring-a",
                1 => "mf-ring-b",
                _ => "mf-ring-c",
            },
            "relay",
            vec![pick(2, 80)],
        ),
        1 => ("pass_stack", "mf-pass", "pass_stack", vec![pick(2, 4097)]),
        2 => ("pass_heap", "mf-pass", "pass_heap", vec![pick(2, 8192)]),
        3 => (
            "call_n",
            "mf-pass",
            "call_n",
            vec![pick(2, 8), pick(3, 4097)],
        ),
        4 => {
            let rsp = match pick(2, 5) {
                0 => 0,
                1 => STACK_WINDOW_BASE + pick(3, STACK_WINDOW_SIZE),
                2 => pick(3, 1 << 30),
                3 => mix(r ^ 9),
                _ => STACK_WINDOW_BASE - 8 * pick(3, 64),
            };
            ("bad_rsp", "mf-rsp", "bad_rsp", vec![rsp])
        }
        5 => {
            let addr = match pick(2, 3) {
                0 => STACK_WINDOW_BASE + pick(3, STACK_WINDOW_SIZE),
                // Below the image (system pages: refused). Not the image
                // or heap: an INOUT copy-back there would overwrite the
                // caller's own code, a fault of its own making.
                1 => pick(3, 0x20_0000),
                _ => mix(r ^ 9),
            };
            (
                "raw_desc",
                "mf-pass",
                "raw_desc",
                vec![addr, pick(4, 1 << 16)],
            )
        }
        6 => (
            "forward-fault",
            "mf-fwd",
            "forward",
            // kinds: ud2, divide, wild store, stack overflow (on the window
            // stack), panic, load from a random address.
            vec![pick(2, 6), STACK_WINDOW_BASE + pick(3, STACK_WINDOW_SIZE)],
        ),
        _ => (
            "pool_pass_stack",
            "mf-pool-pass",
            "pass_stack",
            vec![pick(2, 4097)],
        ),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sys.run_thread(domain, entry, &args).result
    }));
    let result = match outcome {
        Ok(r) => r,
        Err(_) => {
            t.problems
                .push(format!("{what} {args:x?}: the VMM panicked"));
            return;
        }
    };
    let (status, results) = match result {
        ThreadResult::Returned { status, results } => (status, results),
        other => {
            t.problems
                .push(format!("{what} {args:x?}: the caller ended {other:?}"));
            return;
        }
    };
    // The ops that report a nested call's raw answer are counted by it.
    let key = if matches!(what, "bad_rsp" | "raw_desc" | "forward-fault") && status == 0 {
        results[0]
    } else {
        status
    };
    *t.by.entry((what, key)).or_default() += 1;
    // `stacker` answers its own statuses (`0x8000 | code`, 2, 3) as the
    // thread's status word, which the VMM reports as they are.
    let app = |s: u64| s;
    let fine = match what {
        // A ring of up to 80 calls: done, or stopped by the depth limit,
        // a full pool or window, or the budget of a long chain. Never
        // `Internal`: this test found frames handing their stack back before
        // their vCPU, so a call that took the freed stack found every vCPU
        // slot taken (`ENOSPC`, answered `Internal`); the vCPU now goes back
        // first, and a domain out of vCPU slots answers `NoStack`.
        "relay" => {
            status == 0
                || [
                    ErrorCode::TooDeep,
                    ErrorCode::NoStack,
                    ErrorCode::TooLarge,
                    ErrorCode::Timeout,
                ]
                .iter()
                .any(|&c| status == app(raw(c)))
        }
        // In place: the callee saw the caller's own window address.
        "pass_stack" => {
            status == 0 && in_window(results[1]) && results[0] == results[1]
                || status == app(raw(ErrorCode::TooLarge))
        }
        // Copied out of a pool caller's stack into the mapped callee.
        "pool_pass_stack" => {
            status == 0 && !in_window(results[1]) && in_window(results[0])
                || args[0] == 0 && status == 0
        }
        "pass_heap" => status == 0 || status == app(raw(ErrorCode::TooLarge)),
        "call_n" => status == 0 && results[0] == args[0] && results[1] == 0,
        "bad_rsp" => {
            let rsp = args[0];
            status == 0
                && if rsp == 0 {
                    results[0] == 0
                } else if in_window(rsp) {
                    results[0] == 0 || results[0] == ErrorCode::BadStack as u64
                } else {
                    results[0] == ErrorCode::BadStack as u64
                }
        }
        // Any range: refused with a range code, or copied/passed in place
        // into `inc_inout` (which answers 2 for an empty object).
        "raw_desc" => {
            status == 0
                && (results[0] == 0
                    || results[0] == app(2)
                    || [
                        ErrorCode::OutOfRange,
                        ErrorCode::Overflow,
                        ErrorCode::TooLarge,
                    ]
                    .iter()
                    .any(|&c| results[0] == c as u64))
        }
        // The callee faults (or, restarting from the last one, refuses).
        "forward-fault" => {
            status == 0
                && (results[0] == ErrorCode::Fault as u64
                    || results[0] == ErrorCode::Restarting as u64)
        }
        _ => false,
    };
    if !fine {
        t.problems.push(format!(
            "{what} in {domain} {args:x?}: status {status:#x} results {results:x?}"
        ));
    }
}

/// Mapped stack mode under random calls from two host threads at once,
/// for both variants: relay rings mapped → pool → mapped, stack and heap
/// objects, forged stack pointers, hostile descriptors, faults in mapped
/// frames (stack overflow on the window included). Every answer is judged
/// ([`mapped_op`]); afterwards every window slot is free again, no domain
/// has the window or a lease mapped (memory slots back to 1), no frame is
/// left and every stack is back.
#[test]
fn mapped_stacks_under_random_calls_answer_as_allowed_and_leak_nothing() {
    use ferry_engine::manifest::Mapping;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (v, mapping) in [Mapping::Premapped, Mapping::OnCall]
        .into_iter()
        .enumerate()
    {
        let (_dog, sys) = common::boot("mapped-fuzz", mapped_manifest(mapping));
        let free = sys.window_free_slots().expect("a window");
        let tallies: Vec<MappedTally> = std::thread::scope(|s| {
            let sys = &sys;
            let workers: Vec<_> = (0..2u64)
                .map(|w| {
                    s.spawn(move || {
                        let mut t = MappedTally::default();
                        for i in 0..MAPPED_OPS {
                            let r = ferry_hostile::fuzz::wire::mix((v as u64) << 40 | w << 32 | i);
                            mapped_op(sys, r, &mut t);
                        }
                        t
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|h| h.join().expect("worker"))
                .collect()
        });
        let mut by = std::collections::BTreeMap::new();
        let mut problems = Vec::new();
        for t in tallies {
            for (k, n) in t.by {
                *by.entry(k).or_insert(0) += n;
            }
            problems.extend(t.problems);
        }
        println!("{mapping:?}: {by:?}");
        assert_eq!(
            problems.len(),
            0,
            "{mapping:?}: {:#?}",
            &problems[..problems.len().min(10)]
        );
        for d in sys.domains() {
            common::settled(d);
        }
        assert_eq!(
            sys.window_free_slots(),
            Some(free),
            "{mapping:?}: a window slot leaked"
        );
        for d in sys.domains() {
            assert_eq!(
                d.window_slots_mapped(),
                0,
                "{mapping:?}: {} still maps the window",
                d.name
            );
            assert_eq!(
                d.memory_slots(),
                1,
                "{mapping:?}: {} has a slot left",
                d.name
            );
            assert_eq!(d.active_frames(), 0, "{mapping:?}: {}", d.name);
            assert_eq!(
                d.free_stacks(),
                d.stack_capacity() as usize,
                "{mapping:?}: {}",
                d.name
            );
        }
        // The checks were reached: in-place passes, accepted and refused
        // stack pointers, faults in mapped frames.
        use ferry_engine::shared_abi::ErrorCode;
        let seen = |what: &str, s: u64| by.contains_key(&(what, s));
        for what in [
            "relay",
            "pass_stack",
            "pool_pass_stack",
            "bad_rsp",
            "call_n",
        ] {
            assert!(seen(what, 0), "{mapping:?}: no successful {what}");
        }
        assert!(
            seen("bad_rsp", ErrorCode::BadStack as u64),
            "{mapping:?}: no BadStack"
        );
        assert!(
            seen("forward-fault", ErrorCode::Fault as u64),
            "{mapping:?}: no fault"
        );
    }
}
