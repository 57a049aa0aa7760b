//! Only a thread's bottom frame may `Exit` (ABI 4). From any other frame —
//! a direct callee, the inner A of A→B→A, a message-mode callee — `Exit`
//! ends just that frame: its stack and vCPU go back, its domain keeps
//! serving (no quarantine, no restart), and the frame below resumes with
//! `CalleeExited` and frees what it holds. On the old rule the whole thread
//! ended at the first such `Exit` and the callers' frames were abandoned.

use crate::common::{assert_all_returned, boot, ok, testguest};
use ferry_engine::domain::Health;
use ferry_engine::manifest::{Document, Ipc};
use ferry_engine::shared_abi::{ErrorCode, APP_ERROR_BASE};
use ferry_engine::system::System;

const CALLEE_EXITED: u64 = ErrorCode::CalleeExited as u64;

/// Every domain of `sys` still serves in its first generation: an `Exit`
/// quarantines nothing.
fn assert_nothing_restarted(sys: &System) {
    assert!(sys.faults().is_empty(), "{:?}", sys.faults());
    for d in sys.domains() {
        assert_eq!(d.health(), Health::Running, "{}", d.name);
        assert_eq!(d.generation(), 0, "{}", d.name);
    }
    assert_all_returned(sys);
}

#[test]
fn exit_in_a_callee_resumes_the_caller_which_frees_its_memory_1000_times() {
    let doc = Document::default()
        .domain(testguest("a", &["b.exit_now"]))
        .domain(testguest("b", &[]));
    let (_dog, sys) = boot("exit_in_a_callee_resumes_the_caller", doc);
    // 1,000 × (64 KiB allocated and a lock taken across the call): an
    // abandoned frame would end the thread at once (old rule), and a frame
    // that never freed would exhaust a's 16 MiB.
    let out = sys.run_thread("a", "drive_exit", &[1000, CALLEE_EXITED]);
    assert_eq!(ok(&out.result), [1000, 0], "{out:?}");
    assert_eq!(out.time.calls, 1000);
    assert_nothing_restarted(&sys);
    // b keeps serving, on the vCPUs the exiting frames gave back.
    assert_eq!(ok(&sys.run_thread("b", "echo", &[3, 4]).result), [3, 4]);
    assert!(sys.domain_by_name("b").unwrap().vcpu_count() <= 2);
}

#[test]
fn exit_in_the_inner_a_of_a_b_a_resumes_b() {
    // a.drive_exit → b.forward → a.exit_now: the inner A frame ends, b's
    // `forward` resumes with CalleeExited and returns it as its own status
    // (20), which a sees as the application error APP_ERROR_BASE + 20.
    let doc = Document::default()
        .domain(testguest("a", &["b.forward"]))
        .domain(testguest("b", &["a.exit_now"]));
    let (_dog, sys) = boot("exit_in_the_inner_a_of_a_b_a_resumes_b", doc);
    let want = APP_ERROR_BASE + CALLEE_EXITED;
    let out = sys.run_thread("a", "drive_exit", &[200, want]);
    assert_eq!(ok(&out.result), [200, 0], "{out:?}");
    assert_eq!(out.time.calls, 400);
    assert_nothing_restarted(&sys);
}

fn message_mode(name: &'static str, inner: bool) {
    let (a, b, want) = if inner {
        // a → b.forward (served) → a.exit_now (on b's server thread).
        (
            testguest("a", &["b.forward"]),
            testguest("b", &["a.exit_now"]).ipc(Ipc::Message),
            APP_ERROR_BASE + CALLEE_EXITED,
        )
    } else {
        // a → b.exit_now (served): the served chain's bottom frame exits.
        (
            testguest("a", &["b.exit_now"]),
            testguest("b", &[]).ipc(Ipc::Message),
            CALLEE_EXITED,
        )
    };
    let doc = Document::default().domain(a).domain(b);
    let (_dog, sys) = boot(name, doc);
    let out = sys.run_thread("a", "drive_exit", &[100, want]);
    assert_eq!(ok(&out.result), [100, 0], "{out:?}");
    assert_nothing_restarted(&sys);
    // And it still serves (again, without restarting).
    let out = sys.run_thread("a", "drive_exit", &[1, want]);
    assert_eq!(ok(&out.result), [1, 0], "{out:?}");
    assert_nothing_restarted(&sys);
}

#[test]
fn exit_in_a_message_mode_callee_answers_callee_exited() {
    message_mode("exit_in_a_message_mode_callee", false);
}

#[test]
fn exit_deeper_in_a_served_chain_resumes_the_served_frame() {
    message_mode("exit_deeper_in_a_served_chain", true);
}
