//! Behaviour the suite did not check before: CR2 and the error code where
//! the caller receives them, `TooDeep`, `NoSuchEntry`, message-mode
//! `NoStack`, a caller's memory untouched by a callee that wrote its
//! objects and then faulted, and `ThreadTime`'s exact `calls` and `runs`.

use crate::common::{boot, ok, testguest};
use ferry_engine::manifest::{Document, Ipc, ThreadEntry};
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::system::System;

/// `probe`'s picks (see the testguest table).
const VECTOR_AND_RIP: u64 = 1;
const ERROR_CODE_AND_CR2: u64 = 2;

fn probe(sys: &System, pick: u64) -> [u64; 2] {
    ok(&sys.run_thread("driver", "probe", &[0, pick]).result)
}

#[test]
fn the_caller_receives_the_error_code_and_cr2_of_a_page_fault() {
    let doc = Document::default()
        .domain(testguest("driver", &["target.wild_write"]))
        .domain(testguest("target", &[]));
    let (_dog, sys) = boot("the_caller_receives_error_code_and_cr2", doc);
    let site = ok(&sys.run_thread("target", "sites", &[2]).result)[0];
    assert_eq!(probe(&sys, VECTOR_AND_RIP), [14, site]);
    let [error_code, cr2] = probe(&sys, ERROR_CODE_AND_CR2);
    assert_eq!(cr2, 0x0000_7fff_dead_0000);
    // Not present (bit 0 clear), a write (bit 1), from user mode (bit 2).
    assert_eq!(error_code & 0b111, 0b110, "error code {error_code:#x}");
    // The caller got exactly what the VMM recorded.
    let f = &sys.faults()[0];
    assert_eq!((f.error_code, f.cr2), (error_code, cr2));
}

#[test]
fn the_64th_frame_on_a_host_thread_is_too_deep() {
    // A ring d0 → d1 → d2 → d0 … of `deep`: frame k has depth k and lives in
    // d(k mod 3), so d0 holds 22 of 64 frames.
    let ring = |name: &str, next: &str| testguest(name, &[&format!("{next}.deep")]).stacks(22, 16);
    let doc = Document::default()
        .domain(ring("d0", "d1"))
        .domain(ring("d1", "d2"))
        .domain(ring("d2", "d0"));
    let (_dog, sys) = boot("the_64th_frame_is_too_deep", doc);
    // 64 frames (depths 0..=63) fit; the leaf reports its depth.
    assert_eq!(ok(&sys.run_thread("d0", "deep", &[63]).result), [0, 63]);
    // The frame at depth 63 may not call: TooDeep, reported from there.
    assert_eq!(
        ok(&sys.run_thread("d0", "deep", &[64]).result),
        [ErrorCode::TooDeep as u64, 63]
    );
    crate::common::assert_all_returned(&sys);
}

#[test]
fn spawn_with_an_entry_index_outside_the_table_is_no_such_entry() {
    // 1000 is past the table; 2^32 would alias entry 0 if truncated.
    let doc = Document::default()
        .domain(testguest("a", &[]))
        .thread(ThreadEntry::new("a", "spawn_raw", &[1000]))
        .thread(ThreadEntry::new("a", "spawn_raw", &[1 << 32]));
    let (_dog, sys) = boot("spawn_with_a_bad_entry_index", doc);
    let outcomes = sys.run();
    assert_eq!(outcomes.len(), 2, "nothing was spawned: {outcomes:?}");
    for o in &outcomes {
        assert_eq!(ok(&o.result), [ErrorCode::NoSuchEntry as u64, 0], "{o:?}");
    }
}

#[test]
fn message_mode_no_stack_when_the_thread_holds_every_server() {
    // d0.deep → b.deep (b's only server) → d0.deep (on that server's host
    // thread) → b.deep: the thread already occupies b's one server, so the
    // frame at depth 2 gets NoStack at once, under the default `block`.
    let doc = Document::default()
        .domain(testguest("d0", &["b.deep"]))
        .domain(
            testguest("b", &["d0.deep"])
                .stacks(1, crate::common::STACK_KIB)
                .ipc(Ipc::Message),
        );
    let (_dog, sys) = boot("message_mode_no_stack", doc);
    assert_eq!(
        ok(&sys.run_thread("d0", "deep", &[10]).result),
        [ErrorCode::NoStack as u64, 2]
    );
    crate::common::assert_all_returned(&sys);
}

fn untouched(name: &'static str, ipc: Ipc) {
    let doc = Document::default()
        .domain(testguest("driver", &["target.scribble_then_fault"]))
        .domain(testguest("target", &[]).ipc(ipc));
    let (_dog, sys) = boot(name, doc);
    // The callee wrote 0xEE into its OUT and INOUT copies, then faulted:
    // not one byte of the caller's buffers changed.
    assert_eq!(
        ok(&sys.run_thread("driver", "drive_untouched", &[]).result),
        [ErrorCode::Fault as u64, 0],
        "{ipc:?}"
    );
}

#[test]
fn a_callee_fault_leaves_the_callers_objects_untouched() {
    untouched("a_callee_fault_leaves_the_callers_objects", Ipc::Migrate);
}

#[test]
fn a_callee_fault_leaves_the_callers_objects_untouched_in_message_mode() {
    untouched(
        "a_callee_fault_leaves_the_callers_objects_msg",
        Ipc::Message,
    );
}

fn thread_time(name: &'static str, ipc: Ipc) {
    const N: u64 = 25;
    let doc = Document::default()
        .domain(testguest("d0", &["b.null"]))
        .domain(testguest("b", &[]).ipc(ipc));
    let (_dog, sys) = boot(name, doc);
    let out = sys.run_thread("d0", "call_n", &[N]);
    assert_eq!(ok(&out.result), [N, 0]);
    assert_eq!(out.time.calls, N, "{ipc:?}");
    // The first frame runs once up to its first call and once after each
    // return; each callee runs once, up to its `Return`: 2N + 1.
    assert_eq!(out.time.runs, 2 * N + 1, "{ipc:?}");
}

#[test]
fn thread_time_counts_calls_and_runs_exactly() {
    thread_time("thread_time_counts_exactly", Ipc::Migrate);
}

#[test]
fn thread_time_counts_calls_and_runs_exactly_in_message_mode() {
    thread_time("thread_time_counts_exactly_msg", Ipc::Message);
}
