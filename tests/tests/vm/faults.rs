//! Each fault kind is reported precisely — vector, RIP at the faulting
//! instruction, error code, CR2 — to the VMM and to the calling guest; the
//! faulted domain is quarantined and, once its last frame has left, reset
//! in place and serving again.

use crate::common::{boot, ok, testguest};
use ferry_engine::domain::Health;
use ferry_engine::fault::FaultReport;
use ferry_engine::manifest::Document;
use ferry_engine::shared_abi::layout::PAGE_SIZE;
use ferry_engine::shared_abi::{pseudo_vector, ErrorCode};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;

/// Boot a driver whose slot 0 is `target.<entry>` and slot 1 `target.sites`.
fn setup(name: &'static str, entry: &str) -> (crate::common::Watchdog, System) {
    let cap = format!("target.{entry}");
    let doc = Document::default()
        .domain(testguest("driver", &[&cap, "target.sites"]))
        .domain(testguest("target", &[]));
    boot(name, doc)
}

fn label(sys: &System, which: u64) -> u64 {
    ok(&sys.run_thread("target", "sites", &[which]).result)[0]
}

fn only_fault(sys: &System) -> FaultReport {
    let faults = sys.faults();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].domain, "target");
    faults[0].clone()
}

/// The faulting frame was the domain's last: it was reset at once.
fn assert_restarted(sys: &System, generation: u64) {
    let target = sys.domain_by_name("target").unwrap();
    crate::common::settled(target);
    assert_eq!(target.health(), Health::Running);
    assert_eq!(target.generation(), generation);
    assert_eq!(ok(&sys.run_thread("target", "null", &[]).result), [0, 0]);
}

#[test]
fn invalid_opcode_reports_vector_and_rip() {
    let (_dog, sys) = setup("invalid_opcode_reports_vector_and_rip", "ud2");
    let site = label(&sys, 0);
    let r = ok(&sys.run_thread("driver", "drive_fault", &[0]).result);
    assert_eq!(
        r,
        [6, 0],
        "the guest got Fault with vector 6 at exactly the ud2"
    );
    let f = only_fault(&sys);
    assert_eq!((f.vector, f.rip), (6, site));
    assert_restarted(&sys, 1);
}

#[test]
fn divide_error_reports_vector_and_rip() {
    let (_dog, sys) = setup("divide_error_reports_vector_and_rip", "div0");
    let site = label(&sys, 1);
    assert_eq!(
        ok(&sys.run_thread("driver", "drive_fault", &[1]).result),
        [0, 0]
    );
    let f = only_fault(&sys);
    assert_eq!((f.vector, f.rip), (0, site));
}

#[test]
fn wild_pointer_reports_page_fault_with_cr2() {
    let (_dog, sys) = setup("wild_pointer_reports_page_fault_with_cr2", "wild_write");
    let site = label(&sys, 2);
    assert_eq!(
        ok(&sys.run_thread("driver", "drive_fault", &[2]).result),
        [14, 0]
    );
    let f = only_fault(&sys);
    assert_eq!((f.vector, f.rip, f.cr2), (14, site, 0x0000_7fff_dead_0000));
    // The report names the thread's invocation chain at the fault.
    assert_eq!(f.chain, ["driver", "target"]);
    assert!(f.thread.is_some());
    // Not present (bit 0 clear), a write (bit 1), from user mode (bit 2).
    assert_eq!(
        f.error_code & 0b111,
        0b110,
        "error code {:#x}",
        f.error_code
    );
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let (_dog, sys) = setup("stack_overflow_hits_the_guard_page", "stack_overflow");
    let r = ok(&sys.run_thread("driver", "drive_fault", &[3]).result);
    assert_eq!(r, [ErrorCode::Fault as u64, 14]);
    let f = only_fault(&sys);
    assert_eq!(f.vector, 14);
    let target = sys.domain_by_name("target").unwrap();
    let in_a_guard = (0..target.layout.stack_count).any(|i| {
        let guard = target.layout.stack_bottom(i) - PAGE_SIZE;
        (guard..guard + PAGE_SIZE).contains(&f.cr2)
    });
    assert!(in_a_guard, "CR2 {:#x} is not in a guard page", f.cr2);
    // Later calls to the dead domain are refused at once.
    // The domain was reset once the faulting frame left; it faults again
    // the same way, and comes back again.
    assert_restarted(&sys, 1);
    let again = ok(&sys.run_thread("driver", "drive_fault", &[3]).result);
    assert_eq!(again, [ErrorCode::Fault as u64, 14]);
    assert_restarted(&sys, 2);
}

#[test]
fn panic_reports_its_message() {
    let (_dog, sys) = setup("panic_reports_its_message", "panic");
    let r = ok(&sys.run_thread("driver", "drive_fault", &[4]).result);
    assert_eq!(r, [ErrorCode::Fault as u64, pseudo_vector::PANIC]);
    let f = only_fault(&sys);
    assert_eq!(f.vector, pseudo_vector::PANIC);
    assert!(
        f.message
            .as_deref()
            .unwrap_or("")
            .contains("testguest deliberate panic"),
        "{f:?}"
    );
}

#[test]
fn a_fault_in_the_first_frame_ends_the_thread_with_the_report() {
    let (_dog, sys) = boot(
        "a_fault_in_the_first_frame",
        Document::default().domain(testguest("target", &[])),
    );
    let site = label(&sys, 0);
    match sys.run_thread("target", "ud2", &[]).result {
        ThreadResult::Faulted(f) => {
            assert_eq!((f.vector, f.rip, f.thread.is_some()), (6, site, true))
        }
        other => panic!("{other:?}"),
    }
}
