//! Ferry's message-passing mode (`ipc = "message"`) passes the core
//! scenarios that apply to it, and really runs the callee on a server
//! thread — while migrate mode runs it on the caller's own host thread.

use crate::common::{ok, testguest};
use ferry_engine::manifest::{Document, Ipc};
use ferry_engine::observe::{CallEvent, CallObserver};
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// Which host thread ran each completed call's callee.
#[derive(Default)]
struct Threads(Mutex<Vec<(String, ThreadId)>>);

impl CallObserver for Threads {
    fn completed(&self, ev: &CallEvent<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((format!("{}.{}", ev.callee_name, ev.entry), ev.host_thread));
    }
    fn refused(&self, _: ferry_engine::ids::DomainId, _: ferry_engine::ids::Slot, _: ErrorCode) {}
}

fn boot_observed(
    name: &'static str,
    doc: Document,
) -> (crate::common::Watchdog, System, Arc<Threads>) {
    let threads = Arc::new(Threads::default());
    let (dog, sys) = crate::common::boot_observed(name, doc, threads.clone());
    (dog, sys, threads)
}

fn basic(ipc: Ipc) -> (Vec<(String, ThreadId)>, ThreadId) {
    let doc = Document::default()
        .domain(testguest("driver", crate::common::DRIVE_BASIC_CAPS))
        .domain(testguest("b", &[]).ipc(ipc));
    let (_dog, sys, threads) = boot_observed("basic", doc);
    let out = sys.run_thread("driver", "drive_basic", &[]);
    assert_eq!(ok(&out.result), [8, 0], "{ipc:?}: {out:?}");
    assert_eq!(sys.counters().calls(), 8, "{ipc:?}");
    let seen = threads.0.lock().unwrap().clone();
    (seen, std::thread::current().id())
}

#[test]
fn message_mode_call_return_and_objects_on_a_server_thread() {
    let (seen, me) = basic(Ipc::Message);
    assert_eq!(seen.len(), 8);
    assert!(
        seen.iter().all(|(_, t)| *t != me),
        "every callee ran on a server thread: {seen:?}"
    );
}

#[test]
fn migrate_mode_runs_the_callee_on_the_callers_host_thread() {
    let (seen, me) = basic(Ipc::Migrate);
    assert_eq!(seen.len(), 8);
    assert!(seen.iter().all(|(_, t)| *t == me), "{seen:?}");
}

#[test]
fn message_mode_nesting_mixed_with_migration() {
    // d0 → d1 (message) → d2 (migrate) → d3 (message) → d4 (migrate)
    let mut doc = Document::default().domain(testguest("d0", &["d1.relay"]));
    for i in 1..=4 {
        let caps = if i < 4 {
            vec![format!("d{}.relay", i + 1)]
        } else {
            vec![]
        };
        let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
        let ipc = if i % 2 == 1 {
            Ipc::Message
        } else {
            Ipc::Migrate
        };
        doc = doc.domain(testguest(&format!("d{i}"), &caps).ipc(ipc));
    }
    let (_dog, sys, threads) = boot_observed("message_mode_nesting", doc);
    let out = sys.run_thread("d0", "drive_relay", &[4]);
    // Four hops, the INOUT counter carried through both modes, and the
    // deepest frame knows its depth in the thread's whole chain.
    assert_eq!(ok(&out.result), [4, 4]);
    let seen = threads.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    crate::common::assert_all_returned(&sys);
}

#[test]
fn message_mode_faulting_callee_is_reported_and_restarted() {
    let doc = Document::default()
        .domain(testguest("driver", &["target.ud2", "target.sites"]))
        .domain(testguest("target", &[]).ipc(Ipc::Message));
    let (_dog, sys, _) = boot_observed("message_mode_faulting_callee", doc);
    let r = ok(&sys.run_thread("driver", "drive_fault", &[0]).result);
    assert_eq!(r, [6, 0], "Fault with vector 6 at exactly the ud2");
    let target = sys.domain_by_name("target").unwrap();
    assert_eq!(target.fault().map(|f| f.vector), Some(6));
    // Reset in place by the server once its frame left; serving again.
    let wait = std::time::Instant::now();
    while target.generation() == 0 && wait.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::yield_now();
    }
    assert_eq!(target.generation(), 1);
    let again = sys.run_thread("driver", "drive_fault", &[0]);
    assert_eq!(ok(&again.result), [6, 0]);
    assert!(!matches!(again.result, ThreadResult::NotStarted(_)));
}
