//! Stack-pool policies: `block` makes the caller wait until a stack comes
//! back (and the VMM counts the wait), `fail` answers `NoStack` at once, and
//! a thread never waits for a stack that only it holds.

use crate::common::wait_until;
use crate::common::{boot, ok, testguest, STACK_KIB};
use ferry_engine::manifest::{Document, StackPolicy};
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::thread::ThreadResult;

/// d0's relay calls b's relay; b has a single stack under `policy`.
fn one_stack_callee(
    name: &'static str,
    policy: StackPolicy,
) -> (crate::common::Watchdog, ferry_engine::system::System) {
    let doc = Document::default()
        .domain(testguest("d0", &["b.relay"]))
        .domain(
            testguest("b", &[])
                .stacks(1, STACK_KIB)
                .stack_policy(policy),
        );
    boot(name, doc)
}

#[test]
fn block_policy_waits_for_a_stack_then_succeeds() {
    let (_dog, sys) = one_stack_callee("block_policy_waits", StackPolicy::Block);
    let b = sys.domain_by_name("b").unwrap();
    // Hold b's only stack as another thread would.
    let held = b.take_stack(|| 0).expect("b's stack");
    std::thread::scope(|s| {
        let caller = s.spawn(|| sys.run_thread("d0", "drive_relay", &[1]));
        wait_until("the caller waits for b's stack", || b.stack_waits() == 1);
        assert!(
            !caller.is_finished(),
            "the call must not go through while the stack is out"
        );
        b.give_stack(held);
        let out = caller.join().unwrap();
        assert_eq!(ok(&out.result), [1, 1], "after the wait the call succeeded");
    });
    assert_eq!(sys.counters().refused(ErrorCode::NoStack), 0);
}

#[test]
fn fail_policy_refuses_at_once() {
    let (_dog, sys) = one_stack_callee("fail_policy_refuses", StackPolicy::Fail);
    let b = sys.domain_by_name("b").unwrap();
    let held = b.take_stack(|| 0).expect("b's stack");
    let out = sys.run_thread("d0", "drive_relay", &[1]);
    b.give_stack(held);
    // drive_relay reports its failed step (1) as an application status.
    assert!(
        matches!(out.result, ThreadResult::Returned { status: 1, .. }),
        "{out:?}"
    );
    assert_eq!(sys.counters().refused(ErrorCode::NoStack), 1);
    assert_eq!(b.stack_waits(), 0, "fail never waits");
    // With the stack back, the same call goes through.
    assert_eq!(
        ok(&sys.run_thread("d0", "drive_relay", &[1]).result),
        [1, 1]
    );
}

#[test]
fn a_thread_never_waits_for_a_stack_only_it_holds() {
    // d0 → b → d0 → b: the second entry into b needs b's only stack, which
    // is under the thread's own suspended frame. Waiting would deadlock.
    let doc = Document::default()
        .domain(testguest("d0", &["b.relay"]))
        .domain(
            testguest("b", &["d0.relay"])
                .stacks(1, STACK_KIB)
                .stack_policy(StackPolicy::Block),
        );
    let (_dog, sys) = boot("a_thread_never_waits_for_a_stack_only_it_holds", doc);
    let out = sys.run_thread("d0", "drive_relay", &[3]);
    assert!(
        matches!(out.result, ThreadResult::Returned { status, .. } if status != 0),
        "{out:?}"
    );
    assert_eq!(sys.counters().refused(ErrorCode::NoStack), 1);
    assert_eq!(sys.domain_by_name("b").unwrap().stack_waits(), 0);
    crate::common::assert_all_returned(&sys);
}
