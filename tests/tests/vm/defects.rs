//! Engine defects, each reproduced the way it hurt, then shown fixed.

use crate::common::{boot, ok, testguest, STACK_KIB};
use ferry_engine::domain::Health;
use ferry_engine::manifest::{Document, Ipc, StackPolicy};
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::thread::ThreadResult;

/// A vCPU creation that fails used to leave its slot counted as created, so
/// every later reset found "a vCPU still out" and declared the domain dead.
/// Now the slot is lost (KVM keeps its id) but no longer counted as live:
/// the caller gets `Internal`, and the next restart succeeds.
#[test]
fn a_failed_vcpu_creation_does_not_kill_later_restarts() {
    let doc = Document::default()
        .domain(testguest("driver", &["target.ud2", "target.sites"]))
        .domain(testguest("target", &["target.bump"]).stacks(3, STACK_KIB));
    let (_dog, sys) = boot("a_failed_vcpu_creation", doc);
    let target = sys.domain_by_name("target").unwrap();
    let before = target.vcpu_count();
    // target.forward holds the boot vCPU; its nested call into target.bump
    // needs a second one, whose creation fails.
    ferry_engine::testing::fail_next_vcpu_creations(target, 1);
    let out = sys.run_thread("target", "forward", &[]);
    assert!(
        matches!(out.result, ThreadResult::Returned { status, .. } if status == ErrorCode::Internal as u64),
        "{out:?}"
    );
    assert_eq!(target.vcpu_count(), before, "the lost slot is not live");
    // A fault, and the reset that used to find a vCPU "still out".
    assert_eq!(
        ok(&sys.run_thread("driver", "drive_fault", &[0]).result),
        [6, 0]
    );
    crate::common::settled(target);
    assert_eq!(target.health(), Health::Running);
    assert_eq!(target.generation(), 1);
    // And the domain still nests: a new vCPU in the next slot.
    assert_eq!(ok(&sys.run_thread("target", "forward", &[]).result), [1, 1]);
    crate::common::assert_all_returned(&sys);
}

/// A message-mode call refused by the server side (here: its callee has no
/// free stack under `fail`) used to count as a call *and* a refusal, while
/// migrate mode counted only calls that entered their callee. Both count
/// alike now: a refusal, no call.
#[test]
fn both_ipc_paths_count_a_refused_call_alike() {
    for ipc in [Ipc::Migrate, Ipc::Message] {
        let doc = Document::default()
            .domain(testguest("driver", &["b.null"]))
            .domain(
                testguest("b", &[])
                    .ipc(ipc)
                    .stacks(1, STACK_KIB)
                    .stack_policy(StackPolicy::Fail),
            );
        let (_dog, sys) = boot("both_ipc_paths_count_alike", doc);
        let callee = sys.domain_by_name("b").unwrap();
        let held = callee.take_stack(|| 0).expect("b's one stack");
        let out = sys.run_thread("driver", "forward", &[]);
        assert!(
            matches!(out.result, ThreadResult::Returned { status, .. } if status == ErrorCode::NoStack as u64),
            "{ipc:?}: {out:?}"
        );
        assert_eq!(
            sys.counters().calls(),
            0,
            "{ipc:?}: a refused call is no call"
        );
        assert_eq!(sys.counters().refused(ErrorCode::NoStack), 1, "{ipc:?}");
        callee.give_stack(held);
        assert_eq!(ok(&sys.run_thread("driver", "forward", &[]).result), [0, 0]);
        assert_eq!(sys.counters().calls(), 1, "{ipc:?}: the call that entered");
    }
}
