//! A message-mode caller's wait for its reply, the budget a served frame
//! inherits, and a first boot bounded by time (issue 8, "Budgets and
//! deadlines"). Deadlines are asserted as "returned `Timeout`" (or as the
//! typed boot error), never as a measured time; the bounds below are only
//! watchdogs against a hang.

use crate::common::{
    assert_all_returned, boot, ok, require_kvm, settled, testguest, Watchdog, SPIN_TIMEOUT,
};
use ferry_engine::domain::{BootFailure, BootProtocol, Health};
use ferry_engine::manifest::{self, Document, DomainEntry, Ipc, Millis};
use ferry_engine::shared_abi::{pseudo_vector, ErrorCode};
use ferry_engine::system::{System, SystemError};
use std::time::{Duration, Instant};

const TIMEOUT: u64 = ErrorCode::Timeout as u64;

/// Wait (bounded, as a watchdog only) until `cond` holds.
fn until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_message_mode_caller_stops_waiting_and_the_late_reply_copies_nothing() {
    // h's only server is held inside `hold_inout` while a's call, with a
    // 50 ms wait limit and an INOUT u64, waits for it.
    let doc = Document::default()
        .domain(testguest("a", &["h.hold_inout"]))
        .domain(testguest("h", &[]).ipc(Ipc::Message).stacks(1, 64).limits(
            Millis::Ms(5000),
            Millis::Ms(2000),
            1000,
        ));
    let (_dog, sys) = boot("a_message_mode_caller_stops_waiting", doc);
    let (a, h) = (
        sys.domain_by_name("a").unwrap(),
        sys.domain_by_name("h").unwrap(),
    );
    let release_h = ok(&sys.run_thread("h", "hold_addr", &[]).result)[0];
    let release_a = ok(&sys.run_thread("a", "hold_addr", &[]).result)[0];
    std::thread::scope(|s| {
        let caller = s.spawn(|| sys.run_thread("a", "late_reply", &[50_000, SPIN_TIMEOUT]));
        // The caller got Timeout while the server still holds its call.
        until("the caller's wait timed out", || {
            sys.counters().refused(ErrorCode::Timeout) >= 1
        });
        assert_eq!(h.active_frames(), 1, "the held callee was not stopped");
        assert_eq!(h.health(), Health::Running);
        // Released: the late server finishes, copies nothing, its reply is dropped.
        ferry_engine::testing::write_guest(h, release_h, &1u64.to_le_bytes()).unwrap();
        until("the late reply was dropped", || {
            sys.counters().late_replies() >= 1
        });
        // The caller checks its object, then makes its next call.
        ferry_engine::testing::write_guest(a, release_a, &1u64.to_le_bytes()).unwrap();
        let out = caller.join().unwrap();
        assert_eq!(
            ok(&out.result),
            [0x1111, 2],
            "first object untouched, second call's own answer: {out:?}"
        );
    });
    assert_eq!(sys.counters().late_replies(), 1);
    assert_eq!(h.generation(), 0, "the callee was not restarted");
    assert!(h.fault().is_none(), "nobody was blamed");
    assert_all_returned(&sys);
}

#[test]
fn a_served_frame_gets_at_most_the_budget_its_caller_asked() {
    // h's default budget is unlimited and its wait limit long: only the
    // caller's 50 ms ask can stop the loop, and then h is stopped (a wait
    // running out would blame nobody).
    let doc = Document::default()
        .domain(testguest("a", &["h.spin_forever"]))
        .domain(testguest("h", &[]).ipc(Ipc::Message).limits(
            Millis::unlimited(),
            Millis::Ms(10_000),
            1000,
        ));
    let (_dog, sys) = boot("a_served_frame_gets_at_most_the_budget_asked", doc);
    let out = sys.run_thread("a", "call_limited", &[50_000, 0]);
    assert_eq!(ok(&out.result)[0], TIMEOUT, "{out:?}");
    let h = sys.domain_by_name("h").unwrap();
    assert_eq!(h.fault().map(|f| f.vector), Some(pseudo_vector::BUDGET));
    settled(h);
    assert_eq!(h.health(), Health::Running);
}

#[test]
fn a_served_frame_inherits_at_most_its_callers_remaining_budget() {
    // a → b (migrate, 50 ms asked) → h (message, budget unlimited): b's
    // call into h asks nothing, yet the served frame gets only what is left
    // of b's budget; h is stopped, b gets Timeout and returns it.
    let doc = Document::default()
        .domain(testguest("a", &["b.forward_note"]))
        .domain(testguest("b", &["h.spin_forever"]))
        .domain(testguest("h", &[]).ipc(Ipc::Message).limits(
            Millis::unlimited(),
            Millis::Ms(10_000),
            1000,
        ));
    let (_dog, sys) = boot("a_served_frame_inherits_its_callers_remainder", doc);
    let out = sys.run_thread("a", "call_limited", &[50_000, 0]);
    let h = sys.domain_by_name("h").unwrap();
    assert_eq!(h.fault().map(|f| f.vector), Some(pseudo_vector::BUDGET));
    assert_eq!(ok(&sys.run_thread("b", "noted", &[]).result), [TIMEOUT, 0]);
    // a's call completed or timed out as a whole; either way b was not stopped.
    assert!(matches!(ok(&out.result)[0], 0 | TIMEOUT), "{out:?}");
    assert_eq!(sys.domain_by_name("b").unwrap().generation(), 0);
    settled(h);
}

#[test]
fn a_first_boot_that_loops_fails_the_systems_boot() {
    let _dog = Watchdog::arm("a_first_boot_that_loops_fails_the_systems_boot");
    require_kvm();
    let doc = Document::default().domain(testguest("ok", &[])).domain(
        DomainEntry::new("looper", "bootloop-first")
            .exports(["null"])
            .limits(Millis::Ms(1000), Millis::Ms(2000), 100),
    );
    let spec = manifest::System::from_document(&doc, None).unwrap();
    match System::boot(spec, None) {
        Err(SystemError::Boot(e)) => {
            assert_eq!(e.domain, "looper");
            assert!(
                matches!(
                    *e.failure,
                    BootFailure::Protocol(BootProtocol::Overran { limit_ms: 100 })
                ),
                "{e:?}"
            );
        }
        Err(e) => panic!("wrong error: {e:?}"),
        Ok(_) => panic!("a system whose first boot loops started"),
    }
}
