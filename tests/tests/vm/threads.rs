//! Many threads: two inside one domain at once (each on its own vCPU and
//! stack), `spawn` within and over the quota, `exit` from depth (only the
//! bottom frame ends the thread).

use crate::common::{boot, ok, testguest, SPIN_TIMEOUT, STACK_KIB};
use ferry_engine::manifest::{Document, ThreadEntry};
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::thread::ThreadResult;

#[test]
fn two_threads_inside_one_domain_at_once() {
    // Two threads migrate into b's `rendezvous`, which completes only once
    // both are inside b at the same time.
    let thread = |d: &str| ThreadEntry::new(d, "forward", &[2, SPIN_TIMEOUT]);
    let doc = Document::default()
        .domain(testguest("a1", &["b.rendezvous"]))
        .domain(testguest("a2", &["b.rendezvous"]))
        .domain(testguest("b", &[]).stacks(2, STACK_KIB))
        .thread(thread("a1"))
        .thread(thread("a2"));
    let (_dog, sys) = boot("two_threads_inside_one_domain_at_once", doc);
    let outcomes = sys.run();
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert_eq!(ok(&o.result)[0], 2, "both arrived: {o:?}");
    }
    assert_ne!(outcomes[0].thread, outcomes[1].thread);
    assert!(
        sys.domain_by_name("b").unwrap().vcpu_count() >= 2,
        "each thread ran on its own vCPU of b"
    );
}

fn spawner(name: &'static str, n: u64, quota: u32) -> Vec<ferry_engine::system::ThreadOutcome> {
    let doc = Document::default()
        .domain(testguest("a", &[]).stacks(4, STACK_KIB).max_spawned(quota))
        .thread(ThreadEntry::new("a", "spawner", &[n]));
    let (_dog, sys) = boot(name, doc);
    sys.run()
}

#[test]
fn spawn_within_the_quota() {
    let outcomes = spawner("spawn_within_the_quota", 2, 2);
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert_eq!(ok(&outcomes[0].result), [2, 0], "both spawns succeeded");
    let mut children: Vec<u64> = outcomes[1..].iter().map(|o| ok(&o.result)[0]).collect();
    children.sort_unstable();
    assert_eq!(children, [0, 1], "each child ran with its own argument");
    assert!(outcomes[1..].iter().all(|o| o.start == "a.spawned_child"));
}

#[test]
fn spawn_over_the_quota_is_refused() {
    let outcomes = spawner("spawn_over_the_quota_is_refused", 3, 2);
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert_eq!(
        ok(&outcomes[0].result),
        [2, ErrorCode::QuotaExceeded as u64]
    );
}

/// ABI 4: `Exit` below the bottom frame ends only that frame; the caller
/// (here `forward`, which returns the raw status as its own) resumes with
/// `CalleeExited`. From the bottom frame `Exit` still ends the thread.
#[test]
fn exit_from_depth_ends_only_the_callee_frame_and_frees_every_stack() {
    let doc = Document::default()
        .domain(testguest("d0", &["b.exit_now"]))
        .domain(testguest("b", &[]));
    let (_dog, sys) = boot("exit_from_depth", doc);
    let out = sys.run_thread("d0", "forward", &[77]);
    assert_eq!(
        out.result,
        ThreadResult::Returned {
            status: ErrorCode::CalleeExited as u64,
            results: [0, 0]
        }
    );
    crate::common::assert_all_returned(&sys);
    let out = sys.run_thread("b", "exit_now", &[77]);
    assert_eq!(out.result, ThreadResult::Exited { code: 77 });
    crate::common::assert_all_returned(&sys);
}
