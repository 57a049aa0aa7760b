//! CPU budgets, wall-clock wait limits and restarts off the caller's path
//! (issue 8). Deadlines are asserted as "returned `Timeout`", never as a
//! measured time; the bounds below are only watchdogs against a hang.

use crate::common::{boot, ok, testguest, SPIN_TIMEOUT};
use ferry_engine::domain::{Domain, Health};
use ferry_engine::manifest::{Document, DomainEntry, Millis};
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::thread::ThreadResult;
use std::time::{Duration, Instant};

const TIMEOUT: u64 = ErrorCode::Timeout as u64;

/// Wait (bounded, as a watchdog only) until `d` is in `health`.
fn wait_for(d: &Domain, health: Health) {
    let start = Instant::now();
    while d.health() != health {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "`{}` never became {health:?} (is {:?})",
            d.name,
            d.health()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait (bounded) until `d` has `n` frames inside.
fn wait_frames(d: &Domain, n: u32) {
    let start = Instant::now();
    while d.active_frames() != n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "`{}` never had {n} frames",
            d.name
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A `testguest` domain with the given budget and wait limit in ms.
fn limited(name: &str, caps: &[&str], budget_ms: u64, wait_ms: u64) -> DomainEntry {
    testguest(name, caps).limits(Millis::Ms(budget_ms), Millis::Ms(wait_ms), 1000)
}

#[test]
fn a_callee_looping_forever_times_out_and_its_domain_restarts() {
    let doc = Document::default()
        .domain(testguest("a", &["b.spin_forever", "b.bump"]))
        .domain(limited("b", &[], 100, 2000));
    let (_dog, sys) = boot("a_callee_looping_forever_times_out", doc);
    let out = sys.run_thread("a", "call_limited", &[]);
    assert_eq!(ok(&out.result)[0], TIMEOUT, "{out:?}");
    let b = sys.domain_by_name("b").unwrap();
    // The callee was stopped: its domain restarts, and serves again.
    assert_eq!(b.fault().map(|f| f.vector), Some(0x105), "{:?}", b.fault());
    let again = sys.run_thread("b", "bump", &[]);
    assert_eq!(ok(&again.result), [1, 1], "restarted once, counter fresh");
    assert_eq!(b.health(), Health::Running);
}

#[test]
fn a_smaller_budget_asked_by_the_caller_is_honoured() {
    // b's default is unlimited; the caller asks for 50 ms.
    let doc = Document::default()
        .domain(testguest("a", &["b.spin_forever"]))
        .domain(testguest("b", &[]).limits(Millis::unlimited(), Millis::Ms(2000), 1000));
    let (_dog, sys) = boot("a_smaller_budget_asked_by_the_caller", doc);
    let out = sys.run_thread("a", "call_limited", &[50_000, 0]);
    assert_eq!(ok(&out.result)[0], TIMEOUT, "{out:?}");
    wait_for(sys.domain_by_name("b").unwrap(), Health::Running);
}

#[test]
fn a_budget_running_out_three_frames_deep_stops_only_the_running_domain() {
    // a → b → c with c looping: the budget of a's call (100 ms) runs out in c.
    let doc = Document::default()
        .domain(testguest("a", &["b.forward_note"]))
        .domain(testguest("b", &["c.spin_forever"]))
        .domain(testguest("c", &[]));
    let (_dog, sys) = boot("a_budget_running_out_three_frames_deep", doc);
    let out = sys.run_thread("a", "call_limited", &[100_000, 0]);
    // a's call timed out, whatever b answered within its grace.
    assert_eq!(ok(&out.result)[0], TIMEOUT, "{out:?}");
    let (b, c) = (
        sys.domain_by_name("b").unwrap(),
        sys.domain_by_name("c").unwrap(),
    );
    // b got Timeout for its own call, cleaned up and returned: not stopped.
    assert_eq!(ok(&sys.run_thread("b", "noted", &[]).result), [TIMEOUT, 0]);
    assert_eq!(b.health(), Health::Running);
    assert_eq!(b.generation(), 0, "b was not restarted");
    // c, running when the budget ran out, was stopped and restarted.
    assert_eq!(c.fault().map(|f| f.vector), Some(0x105));
    assert_eq!(ok(&sys.run_thread("c", "bump", &[]).result), [1, 1]);
}

#[test]
fn a_restart_whose_boot_loops_leaves_the_domain_dead_after_the_callers_answer() {
    let doc = Document::default()
        .domain(testguest("a", &["bl.crash"]))
        .domain(
            DomainEntry::new("bl", "bootloop")
                .exports(["null", "crash"])
                .limits(Millis::Ms(1000), Millis::Ms(2000), 300),
        );
    let (_dog, sys) = boot("a_restart_whose_boot_loops", doc);
    let bl = sys.domain_by_name("bl").unwrap();
    let out = sys.run_thread("a", "forward", &[]);
    // The faulting caller has its Fault answer while the restart still runs
    // (it loops until its 300 ms run out, on the restarter thread).
    assert!(
        matches!(out.result, ThreadResult::Returned { status, .. } if status == ErrorCode::Fault as u64),
        "{out:?}"
    );
    assert_ne!(
        bl.health(),
        Health::Dead,
        "the answer came before the restart ended"
    );
    wait_for(bl, Health::Dead);
    let later = sys.run_thread("a", "forward", &[]);
    assert!(
        matches!(later.result, ThreadResult::Returned { status, .. } if status == ErrorCode::DomainDead as u64),
        "{later:?}"
    );
}

#[test]
fn a_wait_limit_times_out_the_waiter_and_blames_no_one() {
    // `h` has one stack; a holder keeps it while `w` waits for it under
    // `block` with a 50 ms wait limit.
    let doc = Document::default()
        .domain(testguest("holder", &["h.hold"]))
        .domain(testguest("w", &["h.null"]))
        .domain(limited("h", &[], 5000, 50).stacks(1, 64));
    let (_dog, sys) = boot("a_wait_limit_times_out_the_waiter", doc);
    let h = sys.domain_by_name("h").unwrap();
    let release = {
        // Read the release flag's address without taking h's only stack later.
        let r = sys.run_thread("h", "hold_addr", &[]);
        ok(&r.result)[0]
    };
    std::thread::scope(|s| {
        let holder = s.spawn(|| sys.run_thread("holder", "forward", &[SPIN_TIMEOUT]));
        wait_frames(h, 1);
        let out = sys.run_thread("w", "forward", &[]);
        assert!(
            matches!(out.result, ThreadResult::Returned { status, .. } if status == TIMEOUT),
            "{out:?}"
        );
        // The healthy holder was not stopped.
        assert_eq!(h.health(), Health::Running);
        ferry_engine::testing::write_guest(h, release, &1u64.to_le_bytes()).unwrap();
        assert_eq!(ok(&holder.join().unwrap().result), [1, 0]);
    });
    assert_eq!(h.generation(), 0);
    assert!(h.fault().is_none(), "nobody was blamed");
}

#[test]
fn a_callee_waiting_long_on_the_wall_clock_is_not_stopped_by_its_budget() {
    // `c` (budget 50 ms of CPU) calls into `h`, whose only stack a holder
    // keeps for a while: c waits, using no CPU, far longer than 50 ms of
    // wall time (h's wait limit is 20 s), then completes.
    let doc = Document::default()
        .domain(testguest("holder", &["h.hold"]))
        .domain(testguest("a", &["c.forward"]))
        .domain(limited("c", &["h.null"], 50, 20_000))
        .domain(limited("h", &[], 5000, 20_000).stacks(1, 64));
    let (_dog, sys) = boot("a_callee_waiting_long_on_the_wall_clock", doc);
    let (c, h) = (
        sys.domain_by_name("c").unwrap(),
        sys.domain_by_name("h").unwrap(),
    );
    let release = ok(&sys.run_thread("h", "hold_addr", &[]).result)[0];
    std::thread::scope(|s| {
        let holder = s.spawn(|| sys.run_thread("holder", "forward", &[SPIN_TIMEOUT]));
        wait_frames(h, 1);
        let caller = s.spawn(|| sys.run_thread("a", "call_limited", &[]));
        // The caller is inside c, waiting for h's stack.
        let start = Instant::now();
        while h.stack_waits() == 0 {
            assert!(start.elapsed() < Duration::from_secs(20), "never waited");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Well past c's CPU budget on the wall clock.
        std::thread::sleep(Duration::from_millis(300));
        ferry_engine::testing::write_guest(h, release, &1u64.to_le_bytes()).unwrap();
        assert_eq!(ok(&holder.join().unwrap().result), [1, 0]);
        let out = caller.join().unwrap();
        assert_eq!(ok(&out.result)[0], 0, "the call completed: {out:?}");
    });
    assert_eq!(c.generation(), 0);
    assert!(c.fault().is_none(), "c was not stopped");
}

#[test]
fn two_threads_in_a_block_stack_deadlock_both_return() {
    // x and y have one stack each; a thread in x calls y while a thread in
    // y calls x, each holding its own domain's only stack.
    let doc = Document::default()
        .domain(limited("x", &["y.null"], 5000, 100).stacks(1, 64))
        .domain(limited("y", &["x.null"], 5000, 100).stacks(1, 64));
    let (_dog, sys) = boot("two_threads_in_a_block_stack_deadlock", doc);
    let (x, y) = (
        sys.domain_by_name("x").unwrap(),
        sys.domain_by_name("y").unwrap(),
    );
    let rx = ok(&sys.run_thread("x", "hold_addr", &[]).result)[0];
    let ry = ok(&sys.run_thread("y", "hold_addr", &[]).result)[0];
    std::thread::scope(|s| {
        let t1 = s.spawn(|| sys.run_thread("x", "hold_forward", &[SPIN_TIMEOUT]));
        let t2 = s.spawn(|| sys.run_thread("y", "hold_forward", &[SPIN_TIMEOUT]));
        wait_frames(x, 1);
        wait_frames(y, 1);
        ferry_engine::testing::write_guest(x, rx, &1u64.to_le_bytes()).unwrap();
        ferry_engine::testing::write_guest(y, ry, &1u64.to_le_bytes()).unwrap();
        let (o1, o2) = (t1.join().unwrap(), t2.join().unwrap());
        // Each waited for the other's stack; the wait limit ended both
        // waits (at least one got Timeout; the other may then have found
        // the stack given back).
        let words = [ok(&o1.result)[0], ok(&o2.result)[0]];
        assert!(words.contains(&TIMEOUT), "{o1:?} {o2:?}");
        assert!(words.iter().all(|w| *w == TIMEOUT || *w == 0), "{words:?}");
    });
    assert!(
        x.fault().is_none() && y.fault().is_none(),
        "nobody was blamed"
    );
}
