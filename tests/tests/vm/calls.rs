//! Call and return on real VMs: scalars, IN/OUT/INOUT objects (one on the
//! caller's stack, one of zero length), application errors, caller identity,
//! and nesting through 16 distinct domains.

use crate::common::{boot, ok, testguest};
use ferry_engine::manifest::Document;
use ferry_engine::observe::{CallEvent, CallObserver};
use ferry_engine::shared_abi::{ArgMode, ErrorCode, APP_ERROR_BASE};
use std::sync::{Arc, Mutex};

/// One object as the VMM moved it: mode, bytes in, bytes back.
type Moved = (ArgMode, Vec<u8>, Vec<u8>);

/// What the VMM copied, per completed call: entry, status word, objects.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, u64, Vec<Moved>)>>,
}

impl CallObserver for Recorder {
    fn completed(&self, ev: &CallEvent<'_>) {
        let objs = ev
            .objects
            .iter()
            .map(|o| (o.mode, o.input.clone(), o.output.clone()))
            .collect();
        self.calls
            .lock()
            .unwrap()
            .push((ev.entry.to_owned(), ev.status, objs));
    }
    fn refused(&self, _: ferry_engine::ids::DomainId, _: ferry_engine::ids::Slot, _: ErrorCode) {}
}

#[test]
fn call_return_with_in_out_inout_objects() {
    let doc = Document::default()
        .domain(testguest("driver", crate::common::DRIVE_BASIC_CAPS))
        .domain(testguest("b", &[]));
    let rec = Arc::new(Recorder::default());
    let (_dog, sys) =
        crate::common::boot_observed("call_return_with_in_out_inout_objects", doc, rec.clone());
    let out = sys.run_thread("driver", "drive_basic", &[]);
    // The driver checks every answer itself and returns how many passed.
    assert_eq!(ok(&out.result), [8, 0], "{out:?}");
    assert_eq!(sys.counters().calls(), 8);
    assert_eq!(sys.counters().returns(), 8);

    // And the VMM saw the bytes move the right way.
    let calls = rec.calls.lock().unwrap();
    let find = |entry: &'static str| calls.iter().filter(move |c| c.0 == entry);
    let sums: Vec<_> = find("sum_in").collect();
    assert_eq!(sums.len(), 2);
    let stack_obj = &sums[0].2[0];
    assert_eq!(stack_obj.0, ArgMode::In);
    assert_eq!(
        stack_obj.1,
        (0..100u8).collect::<Vec<_>>(),
        "the caller-stack array arrived intact"
    );
    assert!(stack_obj.2.is_empty(), "IN objects are never copied back");
    assert_eq!(sums[1].2[0].1.len(), 0, "the zero-length object");
    let fill = find("fill_out").next().unwrap();
    assert_eq!(fill.2[0].0, ArgMode::Out);
    assert_eq!(fill.2[0].2, (0..64u8).map(|i| i ^ 0x5a).collect::<Vec<_>>());
    let inc = find("inc_inout").next().unwrap();
    assert_eq!(
        inc.2[0].2,
        inc.2[0]
            .1
            .iter()
            .map(|b| b.wrapping_add(1))
            .collect::<Vec<_>>()
    );
    let fail = find("fail_app").next().unwrap();
    assert_eq!(fail.1, APP_ERROR_BASE + 9);
    assert!(fail.2[0].2.is_empty(), "nothing is copied back on an error");
}

#[test]
fn callee_learns_who_called() {
    let (_dog, sys) = boot(
        "callee_learns_who_called",
        Document::default()
            .domain(testguest("a", &[]))
            .domain(testguest("b", &[])),
    );
    // A thread's first frame has no caller.
    let out = sys.run_thread("b", "whoami", &[]);
    assert_eq!(
        ok(&out.result),
        [
            u64::from(ferry_engine::shared_abi::NO_CALLER),
            out.thread.raw()
        ]
    );
    let out = sys.run_thread("a", "echo", &[7, 9]);
    assert_eq!(ok(&out.result), [7, 9]);
}

#[test]
fn nesting_through_sixteen_distinct_domains() {
    const DEPTH: usize = 16;
    let small = |d: ferry_engine::manifest::DomainEntry| d.memory_mib(4).stacks(2, 16);
    let mut doc = Document::default().domain(small(testguest("d0", &["d1.relay"])));
    for i in 1..=DEPTH {
        let caps = if i < DEPTH {
            vec![format!("d{}.relay", i + 1)]
        } else {
            vec![]
        };
        let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
        doc = doc.domain(small(testguest(&format!("d{i}"), &caps)));
    }
    let (_dog, sys) = boot("nesting_through_sixteen_distinct_domains", doc);
    let out = sys.run_thread("d0", "drive_relay", &[DEPTH as u64]);
    // Each of the 16 relays incremented the INOUT counter, and the deepest
    // one saw itself at depth 16 of the chain.
    assert_eq!(ok(&out.result), [DEPTH as u64, DEPTH as u64]);
    assert_eq!(sys.counters().calls(), DEPTH as u64);
    assert_eq!(sys.counters().returns(), DEPTH as u64);
    crate::common::assert_all_returned(&sys);
}
