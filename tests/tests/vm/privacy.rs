//! What a caller is told, and by whom (ABI 4): a fault's registers reach
//! only the thread whose call faulted (any other thread unwound out of the
//! downed domain learns `DOMAIN_DOWN` and nothing else); a reply to a
//! caller whose domain went down meanwhile unwinds it and copies nothing
//! into it; every `Call` answer carries the callee's generation in R8; and
//! the observer (the demo's referee) judges the bytes the VMM copied, kept
//! when it copied them, even while another vCPU rewrites them.

use crate::common::{
    boot, boot_observed, ok, settled, testguest, Watchdog, SPIN_TIMEOUT, STACK_KIB,
};
use ferry_engine::domain::{Domain, Health};
use ferry_engine::ids::{DomainId, Slot};
use ferry_engine::manifest::{Document, Ipc};
use ferry_engine::observe::{CallEvent, CallObserver};
use ferry_engine::shared_abi::{pseudo_vector, ErrorCode};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `probe`'s picks (see the testguest table).
const STATUS_AND_GENERATION: u64 = 0;
const VECTOR_AND_ANY_REGISTER: u64 = 3;

/// Wait (bounded) until some frame is inside `d`.
fn wait_inside(d: &Domain) {
    let start = Instant::now();
    while d.active_frames() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nobody entered {}",
            d.name
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where `b.hold`'s release flag is (asked while b still serves).
fn hold_flag(sys: &System, b: &Domain) -> u64 {
    ok(&sys.run_thread(&b.name, "hold_addr", &[]).result)[0]
}

/// Release every thread spinning in `b.hold`.
fn release_hold(b: &Domain, flag: u64) {
    ferry_engine::testing::write_guest(b, flag, &1u64.to_le_bytes()).unwrap();
}

/// d1's thread sits in `b.hold` (through `probe`) while d2's call faults b
/// with a wild write. d2 gets the full report; d1's frame is unwound with
/// `DOMAIN_DOWN` and no register at all.
fn unrelated_caller(name: &'static str, ipc: Ipc) {
    let doc = Document::default()
        .domain(testguest("d1", &["b.hold"]))
        .domain(testguest("d2", &["b.wild_write"]))
        .domain(testguest("b", &[]).stacks(4, STACK_KIB).ipc(ipc));
    let (_dog, sys) = boot(name, doc);
    let b = sys.domain_by_name("b").unwrap();
    let flag = hold_flag(&sys, b);
    std::thread::scope(|s| {
        let holder =
            s.spawn(|| sys.run_thread("d1", "probe", &[0, VECTOR_AND_ANY_REGISTER, SPIN_TIMEOUT]));
        wait_inside(b);
        let own = ok(&sys
            .run_thread("d2", "probe", &[0, VECTOR_AND_ANY_REGISTER])
            .result);
        assert_eq!(own[0], 14, "the faulting caller gets its own #PF");
        assert_ne!(own[1], 0, "…with RIP, error code and CR2");
        assert_eq!(b.health(), Health::Quarantined);
        release_hold(b, flag);
        let other = holder.join().unwrap();
        assert_eq!(
            ok(&other.result),
            [pseudo_vector::DOMAIN_DOWN, 0],
            "{ipc:?}: another thread's report leaked: {other:?}"
        );
    });
    // The VMM's own record keeps the whole report.
    let f = &sys.faults()[0];
    assert_eq!((f.vector, f.cr2), (14, 0x0000_7fff_dead_0000));
    settled(b);
    assert_eq!(b.health(), Health::Running);
    assert_eq!(b.generation(), 1);
}

#[test]
fn an_unrelated_callers_fault_answer_is_domain_down_only() {
    unrelated_caller("an_unrelated_callers_fault_answer", Ipc::Migrate);
}

#[test]
fn an_unrelated_callers_fault_answer_is_domain_down_only_in_message_mode() {
    unrelated_caller("an_unrelated_callers_fault_answer_msg", Ipc::Message);
}

#[test]
fn a_thread_unwound_to_its_end_by_another_threads_fault_reports_domain_down() {
    let doc = Document::default()
        .domain(testguest("d2", &["b.wild_write"]))
        .domain(testguest("b", &[]).stacks(4, STACK_KIB));
    let (_dog, sys) = boot("a_thread_unwound_to_its_end", doc);
    let b = sys.domain_by_name("b").unwrap();
    let flag = hold_flag(&sys, b);
    std::thread::scope(|s| {
        let holder = s.spawn(|| sys.run_thread("b", "hold", &[SPIN_TIMEOUT]));
        wait_inside(b);
        assert_eq!(
            ok(&sys
                .run_thread("d2", "probe", &[0, VECTOR_AND_ANY_REGISTER])
                .result)[0],
            14
        );
        release_hold(b, flag);
        let out = holder.join().unwrap();
        let ThreadResult::Faulted(r) = &out.result else {
            panic!("{out:?}");
        };
        // The host-side result names the domain and that it went down;
        // nothing of d2's call.
        assert_eq!(
            (r.vector, r.rip, r.error_code, r.cr2),
            (pseudo_vector::DOMAIN_DOWN, 0, 0, 0),
            "{r:?}"
        );
        assert_eq!(r.domain, "b");
        assert_eq!(r.thread, Some(out.thread));
    });
}

/// Counts completed calls, by `callee.entry`.
#[derive(Default)]
struct Completed(Mutex<Vec<String>>);

impl CallObserver for Completed {
    fn completed(&self, ev: &CallEvent<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{}.{}", ev.callee_name, ev.entry));
    }
    fn refused(&self, _: DomainId, _: Slot, _: ErrorCode) {}
}

/// a's thread waits in `b.hold` (through `forward`) while another thread
/// faults a itself. When b returns, a is quarantined: nothing is copied into
/// it, nothing completes for the observer, and the thread unwinds with
/// `DOMAIN_DOWN` (the fault in a was another thread's).
fn reply_to_a_downed_caller(name: &'static str, ipc: Ipc) {
    let doc = Document::default()
        .domain(testguest("a", &["b.hold"]).stacks(4, STACK_KIB))
        .domain(testguest("b", &[]).stacks(2, STACK_KIB).ipc(ipc));
    let seen = Arc::new(Completed::default());
    let (_dog, sys): (Watchdog, System) = boot_observed(name, doc, seen.clone());
    let (a, b) = (
        sys.domain_by_name("a").unwrap(),
        sys.domain_by_name("b").unwrap(),
    );
    let flag = hold_flag(&sys, b);
    std::thread::scope(|s| {
        let caller = s.spawn(|| sys.run_thread("a", "forward", &[SPIN_TIMEOUT]));
        wait_inside(b);
        assert!(matches!(
            sys.run_thread("a", "ud2", &[]).result,
            ThreadResult::Faulted(_)
        ));
        assert_eq!(a.health(), Health::Quarantined);
        release_hold(b, flag);
        let out = caller.join().unwrap();
        let ThreadResult::Faulted(r) = &out.result else {
            panic!("{ipc:?}: {out:?}");
        };
        assert_eq!(
            (r.domain.as_str(), r.vector),
            ("a", pseudo_vector::DOMAIN_DOWN)
        );
    });
    let completed = seen.0.lock().unwrap().clone();
    assert!(
        !completed.iter().any(|c| c == "b.hold"),
        "{ipc:?}: a reply was settled into a quarantined caller: {completed:?}"
    );
    settled(a);
    assert_eq!((a.health(), a.generation()), (Health::Running, 1));
    assert_eq!((b.health(), b.generation()), (Health::Running, 0));
}

#[test]
fn a_return_to_a_quarantined_caller_unwinds_it_and_copies_nothing() {
    reply_to_a_downed_caller("a_return_to_a_quarantined_caller", Ipc::Migrate);
}

#[test]
fn a_reply_to_a_quarantined_caller_unwinds_it_and_copies_nothing() {
    reply_to_a_downed_caller("a_reply_to_a_quarantined_caller", Ipc::Message);
}

/// `probe` through `slot` of the driver: `[raw status, generation]`.
fn probe(sys: &System, slot: u64) -> [u64; 2] {
    ok(&sys
        .run_thread("driver", "probe", &[slot, STATUS_AND_GENERATION])
        .result)
}

fn generations(name: &'static str, ipc: Ipc) {
    let doc = Document::default()
        .domain(testguest(
            "driver",
            &["target.bump", "target.ud2", "target.null"],
        ))
        .domain(testguest("target", &[]).ipc(ipc));
    let (_dog, sys) = boot(name, doc);
    assert_eq!(probe(&sys, 0), [0, 0], "{ipc:?}: first generation");
    let [status, at_fault] = probe(&sys, 1);
    assert_eq!(status, ErrorCode::Fault as u64);
    assert!(at_fault <= 1, "{ipc:?}: generation {at_fault} at the fault");
    assert_eq!(probe(&sys, 0), [0, 1], "{ipc:?}: restarted once");
    assert_eq!(probe(&sys, 2), [0, 1], "{ipc:?}: any entry of the callee");
    assert_eq!(probe(&sys, 1)[0], ErrorCode::Fault as u64);
    assert_eq!(probe(&sys, 0), [0, 2], "{ipc:?}: restarted twice");
    // No callee could be named: generation 0.
    assert_eq!(probe(&sys, 1000), [ErrorCode::BadSlot as u64, 0]);
}

#[test]
fn every_call_answer_carries_the_callees_generation() {
    generations("every_call_answer_carries_the_generation", Ipc::Migrate);
}

#[test]
fn every_call_answer_carries_the_callees_generation_in_message_mode() {
    generations("every_call_answer_carries_the_generation_msg", Ipc::Message);
}

/// One `b.mirror` call as the observer saw it: scalar0, input, output.
type Mirrored = (u64, Vec<u8>, Vec<u8>);

/// What the observer saw of each `b.mirror` call.
#[derive(Default)]
struct Mirrors(Mutex<Vec<Mirrored>>);

impl CallObserver for Mirrors {
    fn completed(&self, ev: &CallEvent<'_>) {
        if (ev.callee_name, ev.entry) != ("b", "mirror") {
            return;
        }
        let (input, output) = ev
            .objects
            .first()
            .map(|o| (o.input.clone(), o.output.clone()))
            .unwrap_or_default();
        self.0.lock().unwrap().push((ev.scalars[0], input, output));
    }
    fn refused(&self, _: DomainId, _: Slot, _: ErrorCode) {}
}

fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("an 8-byte object"))
}

/// b's `scribbler` thread keeps rewriting the INOUT object of b's `mirror`
/// frames from another vCPU, before, during and after each copy. The
/// observer must hold exactly what the VMM copied: the caller's values on
/// the way in, and on the way out the very values the caller received.
fn referee(name: &'static str, ipc: Ipc) {
    const N: u64 = 200;
    let doc = Document::default()
        .domain(testguest("a", &["b.mirror"]))
        .domain(testguest("b", &[]).stacks(3, STACK_KIB).ipc(ipc));
    let seen = Arc::new(Mirrors::default());
    let (_dog, sys) = boot_observed(name, doc, seen.clone());
    std::thread::scope(|s| {
        let scribbler = s.spawn(|| sys.run_thread("b", "scribbler", &[SPIN_TIMEOUT]));
        let [sum, n] = ok(&sys.run_thread("a", "drive_mirror", &[N]).result);
        assert_eq!(n, N);
        let writes = ok(&scribbler.join().unwrap().result)[0];
        assert!(writes > 0);
        let calls: Vec<_> = seen
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(stop, _, _)| *stop == 0)
            .map(|(_, i, o)| (word(i), word(o)))
            .collect();
        assert_eq!(calls.len() as u64, N);
        let inputs: Vec<u64> = calls.iter().map(|c| c.0).collect();
        assert_eq!(
            inputs,
            (1..=N).collect::<Vec<_>>(),
            "{ipc:?}: the observer's inputs are not what a sent"
        );
        let outputs = calls.iter().map(|c| c.1);
        assert!(
            outputs.clone().all(|o| o >> 48 == 0xBAD0),
            "{ipc:?}: b returned only scribbled values"
        );
        assert_eq!(
            outputs.fold(0u64, u64::wrapping_add),
            sum,
            "{ipc:?}: the observer's outputs are not what a received"
        );
    });
}

#[test]
fn the_observer_holds_the_bytes_copied_while_another_vcpu_rewrites_them() {
    referee("the_observer_holds_the_bytes_copied", Ipc::Migrate);
}

#[test]
fn the_observer_holds_the_bytes_copied_in_message_mode() {
    referee("the_observer_holds_the_bytes_copied_msg", Ipc::Message);
}
