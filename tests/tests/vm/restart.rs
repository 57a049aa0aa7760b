//! Fault recovery: a faulted domain is quarantined (new calls get
//! `Restarting`), threads still inside it carry on until they leave (their
//! callers get `Fault`), and the last one out resets it in place — memory
//! zeroed, image reloaded, generation + 1 — after which it serves again.

use crate::common::{boot, ok, testguest, SPIN_TIMEOUT, STACK_KIB};
use ferry_engine::domain::Health;
use ferry_engine::manifest::Document;
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::thread::ThreadResult;
use std::time::{Duration, Instant};

#[test]
fn a_restart_zeroes_statics_and_bumps_the_generation() {
    let doc = Document::default()
        .domain(testguest("driver", &["target.ud2", "target.sites"]))
        .domain(testguest("target", &[]));
    let (_dog, sys) = boot("a_restart_zeroes_statics", doc);
    assert_eq!(ok(&sys.run_thread("target", "bump", &[]).result), [1, 0]);
    assert_eq!(ok(&sys.run_thread("target", "bump", &[]).result), [2, 0]);
    assert_eq!(
        ok(&sys.run_thread("driver", "drive_fault", &[0]).result),
        [6, 0]
    );
    // The static counter starts from zero again, and the guest sees its new generation.
    assert_eq!(ok(&sys.run_thread("target", "bump", &[]).result), [1, 1]);
    assert_eq!(sys.domain_by_name("target").unwrap().generation(), 1);
}

#[test]
fn a_fault_while_another_thread_is_inside_waits_for_it_to_leave() {
    let doc = Document::default()
        .domain(testguest("d1", &["b.hold"]))
        .domain(testguest("d2", &["b.ud2", "b.sites"]))
        .domain(testguest("b", &[]).stacks(4, STACK_KIB));
    let (_dog, sys) = boot("a_fault_while_another_thread_is_inside", doc);
    let b = sys.domain_by_name("b").unwrap();
    let release = ok(&sys.run_thread("b", "hold_addr", &[]).result)[0];
    std::thread::scope(|s| {
        let holder = s.spawn(|| sys.run_thread("d1", "forward", &[SPIN_TIMEOUT]));
        let start = Instant::now();
        while b.active_frames() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the holder never entered b"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Another thread faults in b while the holder is inside.
        assert_eq!(
            ok(&sys.run_thread("d2", "drive_fault", &[0]).result),
            [6, 0]
        );
        assert_eq!(b.health(), Health::Quarantined);
        assert_eq!(b.active_frames(), 1, "the holder is still inside");
        // New calls are turned away at once while b is quarantined.
        let refused = sys.run_thread("d2", "forward", &[]);
        assert!(
            matches!(refused.result, ThreadResult::Returned { status, .. } if status == ErrorCode::Restarting as u64),
            "{refused:?}"
        );
        assert_eq!(b.generation(), 0, "no reset while a thread is inside");
        // Let the holder finish: it leaves b, its caller gets Fault, and b resets.
        ferry_engine::testing::write_guest(b, release, &1u64.to_le_bytes()).unwrap();
        let out = holder.join().unwrap();
        assert!(
            matches!(out.result, ThreadResult::Returned { status, .. } if status == ErrorCode::Fault as u64),
            "{out:?}"
        );
    });
    crate::common::settled(b);
    assert_eq!(b.health(), Health::Running);
    assert_eq!(b.generation(), 1);
    assert_eq!(ok(&sys.run_thread("b", "bump", &[]).result), [1, 1]);
}
