//! Leases (`ARG_LEND`): whole-page objects mapped into the callee for the
//! duration of a call instead of copied. Each test counts the callee's KVM
//! memory slots before and after: a call leaves no mapping behind, on any
//! path. The `leaser` image's `drive` entry makes the call and checks the
//! bytes in the caller (see its module documentation for its status codes).

use crate::common::{boot, ok, settled};
use ferry_engine::domain::{Domain, Health};
use ferry_engine::manifest::{Document, DomainEntry, Ipc, Millis};
use ferry_engine::shared_abi::layout::{LEASE_WINDOW_BASE, LEASE_WINDOW_SIZE};
use ferry_engine::shared_abi::{ErrorCode, APP_ERROR_BASE};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;

const IN: u64 = 1;
const OUT: u64 = 2;
const INOUT: u64 = 3;
const FAULT: u64 = ErrorCode::Fault as u64;
const PAGE: u64 = 4096;

/// Every entry of the `leaser` image.
const ENTRIES: &[&str] = &[
    "drive",
    "drive_nested",
    "drive_flags",
    "sum_in",
    "fill_out",
    "inc_inout",
    "write_in",
    "half_then_fault",
    "hold_fault",
    "hold_spin",
    "touch_last",
    "relay",
];

fn leaser(name: &str, caps: &[&str]) -> DomainEntry {
    DomainEntry::new(name, "leaser")
        .exports(ENTRIES.iter().copied())
        .capabilities(caps.iter().copied())
        .memory_mib(8)
}

/// What `drive` answered.
#[derive(Debug, PartialEq, Eq)]
struct Drive {
    /// The object's address in the callee (success) or CR2 (fault).
    addr: u64,
    /// The call's raw status word.
    code: u64,
    /// Bytes of the object not zero in the caller after the call.
    nonzero: u64,
}

/// `a.drive` on capability `slot` with one object of `len` bytes at byte
/// `offset` of a page-aligned buffer, in `mode`, lent or not.
fn drive(sys: &System, slot: u64, len: u64, mode: u64, lend: bool, offset: u64) -> Drive {
    let out = sys.run_thread(
        "a",
        "drive",
        &[slot, len, mode, u64::from(lend), offset, 0x33],
    );
    let [addr, word] = ok(&out.result);
    Drive {
        addr,
        code: word & 0xffff_ffff,
        nonzero: word >> 32,
    }
}

fn in_window(addr: u64) -> bool {
    (LEASE_WINDOW_BASE..LEASE_WINDOW_BASE + LEASE_WINDOW_SIZE).contains(&addr)
}

/// `d` has only its guest memory's slot: no lease left.
fn no_lease_left(d: &Domain) {
    settled(d);
    assert_eq!(d.memory_slots(), 1, "`{}` still has a lease mapped", d.name);
}

const ROUND_TRIP_CAPS: &[&str] = &["b.sum_in", "b.fill_out", "b.inc_inout"];

#[test]
fn in_out_and_inout_objects_are_lent_and_their_bytes_arrive() {
    let doc = Document::default()
        .domain(leaser("a", ROUND_TRIP_CAPS))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("in_out_and_inout_objects_are_lent", doc);
    let b = sys.domain_by_name("b").unwrap();
    assert_eq!(b.memory_slots(), 1);
    for len in [PAGE, 16 * PAGE, 256 * PAGE] {
        for (slot, mode) in [(0, IN), (1, OUT), (2, INOUT)] {
            // `drive` checks the bytes both ways (status 10..=13 otherwise).
            let d = drive(&sys, slot, len, mode, true, 0);
            assert_eq!(d.code, 0, "len {len} mode {mode}: {d:?}");
            assert!(in_window(d.addr), "lent: the callee saw {:#x}", d.addr);
            no_lease_left(b);
            // The same call without lending: a copy on the callee's stack.
            if len <= 4 * PAGE {
                let c = drive(&sys, slot, len, mode, false, 0);
                assert_eq!(c.code, 0, "copied, len {len} mode {mode}: {c:?}");
                assert!(!in_window(c.addr), "copied: {:#x}", c.addr);
            }
        }
    }
    assert_eq!(b.generation(), 0);
}

#[test]
fn an_object_of_partial_pages_marked_lend_is_copied() {
    let doc = Document::default()
        .domain(leaser("a", ROUND_TRIP_CAPS))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("an_object_of_partial_pages_marked_lend", doc);
    // Not page-aligned; not a whole number of pages; both.
    for (len, offset) in [(PAGE, 8), (PAGE + 100, 0), (100, 16)] {
        for (slot, mode) in [(0, IN), (1, OUT), (2, INOUT)] {
            let d = drive(&sys, slot, len, mode, true, offset);
            assert_eq!(d.code, 0, "{d:?}");
            assert!(!in_window(d.addr), "copied, not lent: {:#x}", d.addr);
        }
    }
    assert_eq!(sys.domain_by_name("b").unwrap().memory_slots(), 1);
}

#[test]
fn a_store_into_an_in_lease_faults_in_the_callee_and_the_caller_gets_the_fault() {
    let doc = Document::default()
        .domain(leaser("a", &["b.write_in"]))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("a_store_into_an_in_lease_faults", doc);
    let b = sys.domain_by_name("b").unwrap();
    // `drive` fails with 13 if the caller's IN object changed.
    let d = drive(&sys, 0, 2 * PAGE, IN, true, 0);
    assert_eq!(d.code, FAULT, "{d:?}");
    assert_eq!(d.addr, LEASE_WINDOW_BASE + 8, "CR2: the stored-to address");
    let f = b.fault().expect("b faulted");
    assert_eq!((f.vector, f.cr2), (14, LEASE_WINDOW_BASE + 8), "{f:?}");
    assert_eq!(f.error_code & 0x7, 0x7, "present, write, user: {f:?}");
    no_lease_left(b);
    assert_eq!(b.health(), Health::Running, "b restarted");
    // A copied IN object is the callee's own copy: the store lands there.
    let c = drive(&sys, 0, 2 * PAGE, IN, false, 0);
    assert_eq!(c.code, 0, "{c:?}");
}

#[test]
fn a_lease_is_gone_after_the_return() {
    let doc = Document::default()
        .domain(leaser("a", &["b.sum_in", "b.inc_inout"]))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("a_lease_is_gone_after_the_return", doc);
    let b = sys.domain_by_name("b").unwrap();
    for (slot, mode) in [(0, IN), (1, INOUT)] {
        let d = drive(&sys, slot, 4 * PAGE, mode, true, 0);
        assert_eq!(d.code, 0, "{d:?}");
        assert!(in_window(d.addr));
        // b reads the address it was lent, in a later call of its own.
        let touched = sys.run_thread("b", "touch_last", &[]);
        match &touched.result {
            ThreadResult::Faulted(f) => {
                assert_eq!((f.vector, f.cr2), (14, d.addr), "{f:?}");
                assert_eq!(f.error_code & 0x1, 0, "not present: {f:?}");
            }
            other => panic!("reading a returned lease did not fault: {other:?}"),
        }
        no_lease_left(b);
    }
}

#[test]
fn an_out_lease_is_zero_filled_and_holds_what_the_callee_wrote_before_its_fault() {
    let doc = Document::default()
        .domain(leaser("a", &["b.half_then_fault", "b.fill_out"]))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("an_out_lease_is_zero_filled", doc);
    let b = sys.domain_by_name("b").unwrap();
    // `fill_out` counts the non-zero bytes it was given: `drive` fails with
    // 11 unless it saw only zeros (the caller's bytes were a pattern).
    assert_eq!(drive(&sys, 1, 2 * PAGE, OUT, true, 0).code, 0);
    // Lent: zero-filled at the call, then the callee wrote the first half
    // (`i ^ 0x33`, zero for 16 of 4096 bytes) and faulted.
    let d = drive(&sys, 0, 2 * PAGE, OUT, true, 0);
    assert_eq!(d.code, FAULT, "{d:?}");
    assert_eq!(d.nonzero, PAGE - 16, "first half written, second half zero");
    no_lease_left(b);
    // Copied: a failed call writes nothing back; the caller's pattern
    // (`i ^ 0x5A`, zero for 32 of 8192 bytes) is intact.
    let c = drive(&sys, 0, 2 * PAGE, OUT, false, 0);
    assert_eq!(c.code, FAULT, "{c:?}");
    assert_eq!(c.nonzero, 2 * PAGE - 32);
}

#[test]
fn a_callee_fault_with_a_lease_outstanding_leaves_no_slot_and_the_restarted_callee_borrows_again() {
    let doc = Document::default()
        .domain(leaser("a", &["b.hold_fault", "b.inc_inout"]))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("a_callee_fault_with_a_lease_outstanding", doc);
    let b = sys.domain_by_name("b").unwrap();
    for mode in [IN, INOUT] {
        let d = drive(&sys, 0, 8 * PAGE, mode, true, 0);
        assert_eq!(d.code, FAULT, "{d:?}");
        no_lease_left(b);
    }
    assert_eq!(b.generation(), 2, "restarted after each fault");
    let d = drive(&sys, 1, 8 * PAGE, INOUT, true, 0);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(in_window(d.addr));
    no_lease_left(b);
}

#[test]
fn a_budget_running_out_with_a_lease_outstanding_leaves_no_slot() {
    let doc = Document::default()
        .domain(leaser("a", &["b.hold_spin", "b.sum_in"]))
        .domain(leaser("b", &[]).limits(Millis::Ms(100), Millis::Ms(2000), 1000));
    let (_dog, sys) = boot("a_budget_running_out_with_a_lease", doc);
    let b = sys.domain_by_name("b").unwrap();
    let d = drive(&sys, 0, 16 * PAGE, INOUT, true, 0);
    assert_eq!(d.code, ErrorCode::Timeout as u64, "{d:?}");
    no_lease_left(b);
    let again = drive(&sys, 1, 16 * PAGE, IN, true, 0);
    assert_eq!(again.code, 0, "{again:?}");
    no_lease_left(b);
}

#[test]
fn a_message_mode_callee_gets_a_copy_of_an_object_marked_lend() {
    let doc = Document::default()
        .domain(leaser("a", ROUND_TRIP_CAPS))
        .domain(leaser("b", &[]).ipc(Ipc::Message));
    let (_dog, sys) = boot("a_message_mode_callee_gets_a_copy", doc);
    for (slot, mode) in [(0, IN), (1, OUT), (2, INOUT)] {
        let d = drive(&sys, slot, 4 * PAGE, mode, true, 0);
        assert_eq!(d.code, 0, "{d:?}");
        assert!(!in_window(d.addr), "copied: {:#x}", d.addr);
    }
    assert_eq!(sys.domain_by_name("b").unwrap().memory_slots(), 1);
}

#[test]
fn lent_objects_larger_than_the_lease_window_are_refused() {
    let doc = Document::default()
        .domain(leaser("a", &["b.sum_in"]).memory_mib(80))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("lent_objects_larger_than_the_lease_window", doc);
    let d = drive(&sys, 0, LEASE_WINDOW_SIZE + PAGE, IN, true, 0);
    assert_eq!(d.code, ErrorCode::TooLarge as u64, "{d:?}");
    let fits = drive(&sys, 0, LEASE_WINDOW_SIZE, IN, true, 0);
    assert_eq!(fits.code, 0, "{fits:?}");
    assert_eq!(sys.domain_by_name("b").unwrap().memory_slots(), 1);
}

/// `a.drive_nested` on slot 0 (`b.relay`, which passes the object on to
/// its slot 0 as `relay_mode`, lent if `relay_lend`).
fn drive_nested(sys: &System, len: u64, mode: u64, relay_mode: u64, relay_lend: bool) -> Drive {
    let args = [0, len, mode, relay_mode, u64::from(relay_lend)];
    let [addr, word] = ok(&sys.run_thread("a", "drive_nested", &args).result);
    Drive {
        addr,
        code: word & 0xffff_ffff,
        nonzero: word >> 32,
    }
}

/// a → b.relay → c.`entry`: the object a lends to b is lent on to c.
fn nested(name: &'static str, entry: &str) -> (crate::common::Watchdog, System) {
    let doc = Document::default()
        .domain(leaser("a", &["b.relay"]))
        .domain(leaser("b", &[&format!("c.{entry}")]))
        .domain(leaser("c", &[]));
    boot(name, doc)
}

#[test]
fn a_lease_is_lent_on_to_a_further_callee_without_a_copy() {
    for (entry, mode) in [("sum_in", IN), ("fill_out", OUT), ("inc_inout", INOUT)] {
        let (_dog, sys) = nested("a_lease_is_lent_on", entry);
        // `drive` checks the bytes in a: c's work arrived through b's lease.
        let d = drive_nested(&sys, 8 * PAGE, mode, mode, true);
        assert_eq!(d.code, 0, "{entry}: {d:?}");
        assert!(in_window(d.addr), "c saw its own lease: {:#x}", d.addr);
        for name in ["b", "c"] {
            no_lease_left(sys.domain_by_name(name).unwrap());
        }
    }
}

#[test]
fn a_read_only_lease_is_lent_on_read_only_or_not_at_all() {
    let (_dog, sys) = nested("a_read_only_lease_is_lent_on_read_only", "write_in");
    // b lends its IN lease on as IN: c's store faults in c.
    let d = drive_nested(&sys, 2 * PAGE, IN, IN, true);
    let relayed = APP_ERROR_BASE + 1000 + FAULT;
    assert_eq!(d.code, relayed, "b's call faulted in c: {d:?}");
    let f = sys.domain_by_name("c").unwrap().fault().expect("c faulted");
    assert_eq!((f.vector, f.error_code & 0x7), (14, 0x7), "{f:?}");
    // b asks to lend its read-only lease on as INOUT or OUT: refused.
    let out_of_range = APP_ERROR_BASE + 1000 + ErrorCode::OutOfRange as u64;
    for mode in [INOUT, OUT] {
        let d = drive_nested(&sys, 2 * PAGE, IN, mode, true);
        assert_eq!(d.code, out_of_range, "mode {mode}: {d:?}");
    }
    // Or to copy it (not lent): refused too, the VMM copies only from a
    // caller's own memory.
    let d = drive_nested(&sys, 2 * PAGE, IN, IN, false);
    assert_eq!(d.code, out_of_range, "copy of a lease: {d:?}");
    for name in ["b", "c"] {
        no_lease_left(sys.domain_by_name(name).unwrap());
    }
}

#[test]
fn a_caller_going_down_while_its_object_is_lent_leaves_no_slot_in_the_callee() {
    let doc = Document::default()
        .domain(leaser("a", &["b.hold_spin"]))
        .domain(leaser("b", &[]).limits(Millis::Ms(300), Millis::Ms(2000), 1000));
    let (_dog, sys) = boot("a_caller_going_down_while_its_object_is_lent", doc);
    let (a, b) = (
        sys.domain_by_name("a").unwrap(),
        sys.domain_by_name("b").unwrap(),
    );
    std::thread::scope(|s| {
        let lender = s.spawn(|| {
            sys.run_thread("a", "drive", &[0, 4 * PAGE, INOUT, 1, 0, 0])
                .result
        });
        // The lease is there while b holds it: a second slot.
        let start = std::time::Instant::now();
        while b.memory_slots() != 2 {
            assert!(start.elapsed() < std::time::Duration::from_secs(20));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Another thread brings the lender down meanwhile (`hold_fault`
        // with no object: a `ud2` in a).
        let faulted = sys.run_thread("a", "hold_fault", &[]);
        assert!(
            matches!(faulted.result, ThreadResult::Faulted(_)),
            "{faulted:?}"
        );
        // b's budget runs out; the chain unwinds past the quarantined a.
        match lender.join().unwrap() {
            ThreadResult::Faulted(_) => {}
            other => panic!("the lending thread was not unwound: {other:?}"),
        }
    });
    no_lease_left(b);
    settled(a);
    assert_eq!(a.generation(), 1, "a restarted once its last frame left");
}

#[test]
fn two_threads_lending_into_one_callee_at_once_get_a_lease_each() {
    let doc = Document::default()
        .domain(leaser("a", &["b.hold_spin"]))
        .domain(
            leaser("b", &[])
                .stacks(3, 64)
                .limits(Millis::Ms(300), Millis::Ms(2000), 1000),
        );
    let (_dog, sys) = boot("two_threads_lending_into_one_callee", doc);
    let b = sys.domain_by_name("b").unwrap();
    let sys = &sys;
    std::thread::scope(|s| {
        let lenders: Vec<_> = [3 * PAGE, 5 * PAGE]
            .into_iter()
            .map(|len| s.spawn(move || sys.run_thread("a", "drive", &[0, len, INOUT, 1, 0, 0])))
            .collect();
        // Both held at once: two leases side by side in b's window.
        let start = std::time::Instant::now();
        while b.memory_slots() != 3 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "never two leases at once"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for l in lenders {
            let out = l.join().unwrap();
            let [_, word] = ok(&out.result);
            // Its own budget ran out (or the other's stopped b first).
            let code = word & 0xffff_ffff;
            assert!(
                code == ErrorCode::Timeout as u64 || code == FAULT,
                "{out:?}"
            );
        }
    });
    no_lease_left(b);
}

#[test]
fn a_descriptor_with_any_flag_but_arg_lend_is_refused() {
    let doc = Document::default()
        .domain(leaser("a", &["b.sum_in"]))
        .domain(leaser("b", &[]));
    let (_dog, sys) = boot("a_descriptor_with_any_flag_but_arg_lend", doc);
    let word = |flags: u64| ok(&sys.run_thread("a", "drive_flags", &[0, flags]).result)[1];
    assert_eq!(word(0), 0);
    assert_eq!(word(1), 0, "ARG_LEND alone");
    for flags in [2, 3, 0x8000_0000, 0xffff_ffff] {
        assert_eq!(word(flags), ErrorCode::BadMode as u64, "flags {flags:#x}");
    }
    assert_eq!(sys.domain_by_name("b").unwrap().memory_slots(), 1);
}

/// Lease against copy, for a person to read (not a check: it asserts only
/// that every call succeeded). Run by hand, in release:
/// `cargo test --release -p ferry-tests --test vm lease_against_copy -- --ignored --nocapture`.
/// Prints the median call latency (µs, the caller's own `rdtsc` around the
/// `Call` hypercall) per size, mode and path, in rounds interleaved with the
/// exit floor, and each median as a ratio to the floor of its round.
#[test]
#[ignore = "a measurement, run by hand in release"]
fn lease_against_copy() {
    use ferry_engine::shared_abi::FLOOR_SLOT;
    const SIZES: [u64; 4] = [4 << 10, 64 << 10, 1 << 20, 16 << 20];
    const ROUNDS: u64 = 5;
    let bench = |name: &str| {
        DomainEntry::new(name, "bench")
            .exports([
                "null",
                "sink_in",
                "sink_out",
                "sink_inout",
                "loop_lend",
                "loop_floor",
            ])
            .huge_pages(true)
    };
    let doc = Document::default()
        .domain(
            bench("caller")
                .capabilities(["callee.sink_in", "callee.sink_out", "callee.sink_inout"])
                .memory_mib(64),
        )
        // Stacks for a 16 MiB copy: the budget is half a stack.
        .domain(bench("callee").stacks(2, 40 << 10).memory_mib(96));
    let (_dog, sys) = crate::common::boot_for(
        "lease_against_copy",
        doc,
        std::time::Duration::from_secs(600),
    );
    let caller = sys.domain_by_name("caller").unwrap();
    let khz = f64::from(caller.tsc_khz.max(1));
    let median = |mut v: Vec<u64>| -> f64 {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0) as f64 * 1000.0 / khz
    };
    let samples = |slot: u32, run: &dyn Fn()| -> Vec<u64> {
        let since = caller.sample_count();
        run();
        caller
            .samples_since(since)
            .into_iter()
            .filter(|s| s.slot == slot)
            .map(|s| s.cycles)
            .collect()
    };
    println!("size      mode   copy µs  lease µs   copy/floor  lease/floor  (medians of {ROUNDS} rounds)");
    for size in SIZES {
        let n = if size >= 1 << 20 { 6 } else { 40 };
        for (slot, mode, name) in [(0u32, 1u64, "IN"), (1, 2, "OUT"), (2, 3, "INOUT")] {
            let (mut copy, mut lease, mut floor_r) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let floor = samples(FLOOR_SLOT, &|| {
                    ok(&sys.run_thread("caller", "loop_floor", &[n]).result);
                });
                let one = |copy_flag: u64| {
                    samples(slot, &|| {
                        let args = [u64::from(slot), n, size, mode, copy_flag];
                        let [done, first_err] =
                            ok(&sys.run_thread("caller", "loop_lend", &args).result);
                        assert_eq!((done, first_err), (n, 0), "size {size} mode {mode}");
                    })
                };
                copy.push(median(one(1)));
                lease.push(median(one(0)));
                floor_r.push(median(floor));
            }
            let med = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let ratio =
                |v: &[f64]| -> f64 { med(v.iter().zip(&floor_r).map(|(x, f)| x / f).collect()) };
            println!(
                "{:>8}  {name:<5} {:>8.1}  {:>8.1}   {:>10.2}  {:>11.2}",
                size,
                med(copy.clone()),
                med(lease.clone()),
                ratio(&copy),
                ratio(&lease)
            );
        }
    }
    assert_eq!(sys.domain_by_name("callee").unwrap().memory_slots(), 1);
}

/// As [`lease_against_copy`], with callees that touch every byte of the
/// object (`leaser`'s `sum_in`, `fill_out`, `inc_inout`): a lease then
/// also pays the callee's first touch of each lent page, a copy does not
/// (its stack pages are warm). Same command, `lease_against_copy_touched`.
#[test]
#[ignore = "a measurement, run by hand in release"]
fn lease_against_copy_touched() {
    const SIZES: [u64; 4] = [4 << 10, 64 << 10, 1 << 20, 16 << 20];
    const ROUNDS: u64 = 5;
    let doc = Document::default()
        .domain(leaser("a", ROUND_TRIP_CAPS).memory_mib(64).huge_pages(true))
        .domain(
            leaser("b", &[])
                .stacks(2, 40 << 10)
                .memory_mib(96)
                .huge_pages(true),
        );
    let (_dog, sys) = crate::common::boot_for(
        "lease_against_copy_touched",
        doc,
        std::time::Duration::from_secs(600),
    );
    let a = sys.domain_by_name("a").unwrap();
    let khz = f64::from(a.tsc_khz.max(1));
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("size      mode   copy µs  lease µs  (callee touches every byte; medians)");
    for size in SIZES {
        let n = if size >= 1 << 20 { 3 } else { 10 };
        for (slot, mode, name) in [(0u64, IN, "IN"), (1, OUT, "OUT"), (2, INOUT, "INOUT")] {
            let (mut copy, mut lease) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS * n {
                for (lend, into) in [(false, &mut copy), (true, &mut lease)] {
                    let since = a.sample_count();
                    let d = drive(&sys, slot, size, mode, lend, 0);
                    assert_eq!(d.code, 0, "size {size} mode {mode} lend {lend}: {d:?}");
                    let s = a.samples_since(since);
                    let cycles = s.iter().find(|s| u64::from(s.slot) == slot).unwrap().cycles;
                    into.push(cycles as f64 * 1000.0 / khz);
                }
            }
            println!(
                "{:>8}  {name:<5} {:>8.1}  {:>8.1}",
                size,
                med(copy),
                med(lease)
            );
        }
    }
}
