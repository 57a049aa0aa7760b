//! Call-backs into a domain the thread is already in (A→B→A, A→B→A→B→A):
//! each runs on a fresh stack and vCPU, and the suspended frame resumes with
//! its whole register state — GPRs, SSE (xmm6, xmm7, MXCSR), x87 control —
//! intact. `regs_check` loads depth-specific patterns, calls, and compares.

use crate::common::{boot, ok, testguest, STACK_KIB};
use ferry_engine::manifest::Document;

fn ping_pong() -> (crate::common::Watchdog, ferry_engine::system::System) {
    let doc = Document::default()
        .domain(testguest("a", &["b.regs_check"]).stacks(4, STACK_KIB))
        .domain(testguest("b", &["a.regs_check"]).stacks(4, STACK_KIB));
    boot("callbacks", doc)
}

#[test]
fn a_b_a_preserves_the_suspended_frames_registers() {
    let (_dog, sys) = ping_pong();
    assert_eq!(ok(&sys.run_thread("a", "regs_check", &[2]).result), [2, 0]);
    assert_eq!(sys.counters().calls(), 2);
}

#[test]
fn a_b_a_b_a_preserves_every_suspended_frame() {
    let (_dog, sys) = ping_pong();
    assert_eq!(ok(&sys.run_thread("a", "regs_check", &[4]).result), [4, 0]);
    assert_eq!(sys.counters().calls(), 4);
    // a held three frames at once, each on its own vCPU and stack.
    let a = sys.domain_by_name("a").unwrap();
    assert!(a.vcpu_count() >= 3, "{}", a.vcpu_count());
    assert_eq!(a.free_stacks(), a.stack_capacity() as usize);
}
