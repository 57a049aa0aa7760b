//! The `grow` stack-pool policy: a domain boots with its `stacks` and adds a
//! stack (and, when a frame runs on it, a vCPU) each time a call finds the
//! pool empty, up to `stack_max`; then its `grow_fallback` (`block` or
//! `fail`) applies. A restart returns the pool to its boot reservation, and
//! no caller, however many or however hostile, grows it past `stack_max`.

use crate::common::wait_until;
use crate::common::{assert_all_returned, boot, ok, settled, testguest, SPIN_TIMEOUT, STACK_KIB};
use ferry_engine::domain::{Domain, Health};
use ferry_engine::manifest::{Document, DomainEntry, GrowFallback, Millis};
use ferry_engine::shared_abi::layout::MAX_VCPUS;
use ferry_engine::shared_abi::ErrorCode;
use ferry_engine::thread::ThreadResult;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A testguest domain whose frames may spin as long as a test holds them
/// (no CPU budget), growing from 1 stack to `max`.
fn grower(name: &str, caps: &[&str], max: u32, fallback: GrowFallback) -> DomainEntry {
    testguest(name, caps)
        .stacks(1, STACK_KIB)
        .grow(max, fallback)
        .limits(Millis::unlimited(), Millis::Ms(20_000), 1000)
}

/// A caller domain without a CPU budget (its threads wait inside b).
fn caller(name: &str, caps: &[&str]) -> DomainEntry {
    testguest(name, caps).limits(Millis::unlimited(), Millis::Ms(20_000), 1000)
}

/// The status a `forward` thread returned (0 on success).
fn status(r: &ThreadResult) -> u64 {
    match r {
        ThreadResult::Returned { status, .. } => *status,
        other => panic!("thread did not return: {other:?}"),
    }
}

fn release(b: &Domain, addr: u64) {
    ferry_engine::testing::write_guest(b, addr, &1u64.to_le_bytes()).unwrap();
}

#[test]
fn concurrent_calls_grow_the_pool_to_its_max_and_no_further_then_fail() {
    const MAX: u32 = 3;
    const CALLERS: usize = 5;
    let doc = Document::default()
        .domain(caller("d1", &["b.hold"]))
        .domain(grower("b", &[], MAX, GrowFallback::Fail));
    let (_dog, sys) = boot("grow_to_max_then_fail", doc);
    let b = sys.domain_by_name("b").unwrap();
    // The boot footprint: one stack, the boot vCPU.
    assert_eq!(
        (b.stack_capacity(), b.boot_stacks(), b.stack_max()),
        (1, 1, MAX)
    );
    assert_eq!(b.vcpu_count(), 1);
    let release_at = ok(&sys.run_thread("b", "hold_addr", &[]).result)[0];
    // Whatever the callers do, nobody ever sees more than MAX stacks.
    let most_seen = AtomicU32::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                most_seen.fetch_max(b.stack_capacity(), Ordering::AcqRel);
                std::thread::yield_now();
            }
        });
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| s.spawn(|| sys.run_thread("d1", "forward", &[SPIN_TIMEOUT])))
            .collect();
        // MAX callers hold a stack each; the others were refused at once.
        wait_until("MAX callers are inside b and the rest refused", || {
            b.active_frames() == MAX && sys.counters().refused(ErrorCode::NoStack) == 2
        });
        assert_eq!(b.stack_capacity(), MAX);
        assert_eq!(b.stacks_grown(), u64::from(MAX - 1));
        assert_eq!(b.free_stacks(), 0);
        // One vCPU per frame inside: the boot vCPU, then one per growth.
        assert_eq!(b.vcpu_count(), MAX);
        release(b, release_at);
        let statuses: Vec<u64> = callers
            .into_iter()
            .map(|c| status(&c.join().unwrap().result))
            .collect();
        done.store(true, Ordering::Release);
        let held = statuses.iter().filter(|s| **s == 0).count();
        let refused = statuses
            .iter()
            .filter(|s| **s == ErrorCode::NoStack as u64)
            .count();
        assert_eq!(
            (held, refused),
            (MAX as usize, CALLERS - MAX as usize),
            "{statuses:?}"
        );
    });
    assert_eq!(
        most_seen.load(Ordering::Acquire),
        MAX,
        "never past stack_max"
    );
    assert_eq!(b.stack_capacity(), MAX, "grown stacks stay until a restart");
    assert_eq!(b.stack_waits(), 0, "fail never waits");
    assert_all_returned(&sys);
    // With the stacks back, a call takes a grown stack without growing.
    assert_eq!(ok(&sys.run_thread("d1", "forward", &[0]).result), [1, 0]);
    assert_eq!(b.stacks_grown(), u64::from(MAX - 1));
}

#[test]
fn at_its_max_a_growing_pool_with_block_waits_for_a_stack() {
    let doc = Document::default()
        .domain(caller("d1", &["b.null"]))
        .domain(grower("b", &[], 2, GrowFallback::Block));
    let (_dog, sys) = boot("grow_then_block", doc);
    let b = sys.domain_by_name("b").unwrap();
    // Two stacks out, as two other threads would hold them: the second grows the pool.
    let first = b.take_stack(|| 0).expect("the boot stack");
    let second = b.take_stack(|| 0).expect("a grown stack");
    assert_eq!((b.stack_capacity(), b.stacks_grown()), (2, 1));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| sys.run_thread("d1", "forward", &[]));
        wait_until("the caller waits for one of b's stacks", || {
            b.stack_waits() == 1
        });
        assert!(!waiter.is_finished(), "no stack, no growth: the call waits");
        assert_eq!(b.stack_capacity(), 2, "the wait did not grow the pool");
        b.give_stack(second);
        assert_eq!(ok(&waiter.join().unwrap().result), [0, 0]);
    });
    b.give_stack(first);
    assert_eq!(sys.counters().refused(ErrorCode::NoStack), 0);
    assert_all_returned(&sys);
}

#[test]
fn a_restart_returns_a_grown_pool_to_its_boot_reservation() {
    let doc = Document::default()
        .domain(caller("d1", &["b.hold"]))
        .domain(caller("driver", &["b.ud2", "b.sites"]))
        .domain(grower("b", &[], 4, GrowFallback::Fail));
    let (_dog, sys) = boot("grow_restart", doc);
    let b = sys.domain_by_name("b").unwrap();
    let release_at = ok(&sys.run_thread("b", "hold_addr", &[]).result)[0];
    std::thread::scope(|s| {
        let holders: Vec<_> = (0..3)
            .map(|_| s.spawn(|| sys.run_thread("d1", "forward", &[SPIN_TIMEOUT])))
            .collect();
        wait_until("three callers hold b's stacks", || b.active_frames() == 3);
        release(b, release_at);
        for h in holders {
            assert_eq!(ok(&h.join().unwrap().result), [1, 0]);
        }
    });
    assert_eq!(b.stack_capacity(), 3);
    let vcpus = b.vcpu_count();
    assert_eq!(vcpus, 3);
    // A fault restarts b.
    assert_eq!(
        ok(&sys.run_thread("driver", "drive_fault", &[0]).result),
        [6, 0]
    );
    settled(b);
    assert_eq!((b.health(), b.generation()), (Health::Running, 1));
    assert_eq!(b.stack_capacity(), 1, "back to the boot reservation");
    assert_eq!(b.free_stacks(), 1);
    assert_eq!(
        b.vcpu_count(),
        vcpus,
        "KVM keeps a VM's vCPUs: they are reused"
    );
    // It grows again from there.
    let s0 = b.take_stack(|| 0).unwrap();
    let s1 = b.take_stack(|| 0).unwrap();
    assert_eq!(b.stack_capacity(), 2);
    b.give_stack(s0);
    b.give_stack(s1);
    assert_all_returned(&sys);
}

#[test]
fn growth_stops_at_the_vcpu_limit() {
    // stack_max may be at most MAX_VCPUS: the manifest says so, by name.
    let over = Document::default().domain(grower("b", &[], MAX_VCPUS + 1, GrowFallback::Fail));
    let err = ferry_engine::manifest::System::from_document(&over, None).unwrap_err();
    assert!(err.to_string().contains("a domain has at most 32"), "{err}");
    // At MAX_VCPUS the pool grows to exactly that many stacks.
    let doc = Document::default().domain(grower("b", &[], MAX_VCPUS, GrowFallback::Fail));
    let (_dog, sys) = boot("grow_to_vcpu_limit", doc);
    let b = sys.domain_by_name("b").unwrap();
    let held: Vec<_> = (0..MAX_VCPUS)
        .map(|i| b.take_stack(|| i).expect("a stack while below the limit"))
        .collect();
    assert_eq!(b.stack_capacity(), MAX_VCPUS);
    assert_eq!(b.take_stack(|| MAX_VCPUS).unwrap_err(), ErrorCode::NoStack);
    assert_eq!(b.stack_capacity(), MAX_VCPUS);
    for s in held {
        b.give_stack(s);
    }
    assert_all_returned(&sys);
}

#[test]
fn growth_is_refused_when_no_vcpu_is_left_to_run_the_stack() {
    // b may grow to 3 stacks (4 vCPU slots). A holder keeps the boot stack
    // and the boot vCPU; three failed vCPU creations use up the other
    // slots (KVM never gives a vCPU id back).
    let doc = Document::default()
        .domain(caller("d1", &["b.null"]))
        .domain(grower("b", &[], 3, GrowFallback::Fail));
    let (_dog, sys) = boot("grow_refused_without_vcpu", doc);
    let b = sys.domain_by_name("b").unwrap();
    let release_at = ok(&sys.run_thread("b", "hold_addr", &[]).result)[0];
    std::thread::scope(|s| {
        let holder = s.spawn(|| sys.run_thread("b", "hold", &[SPIN_TIMEOUT]));
        wait_until("the holder is inside b", || b.active_frames() == 1);
        ferry_engine::testing::fail_next_vcpu_creations(b, 3);
        for _ in 0..3 {
            let out = sys.run_thread("d1", "forward", &[]);
            assert_eq!(status(&out.result), ErrorCode::Internal as u64, "{out:?}");
        }
        assert_eq!(b.stack_capacity(), 2, "the first of them grew the pool");
        // The grown stack is held elsewhere: the pool is empty, below its
        // max, and no vCPU is left.
        let other = b.take_stack(|| 0).expect("the grown stack");
        let out = sys.run_thread("d1", "forward", &[]);
        assert_eq!(status(&out.result), ErrorCode::NoStack as u64, "{out:?}");
        assert_eq!(b.grow_refusals(), 1);
        assert_eq!(b.stack_capacity(), 2, "not grown without a vCPU");
        b.give_stack(other);
        release(b, release_at);
        assert_eq!(ok(&holder.join().unwrap().result), [1, 0]);
    });
    assert_all_returned(&sys);
}

#[test]
fn the_memory_check_counts_the_maximum_not_the_boot_reservation() {
    use ferry_engine::domain::BootFailure;
    use ferry_engine::system::{System, SystemError};
    let spec = |d: DomainEntry| {
        ferry_engine::manifest::System::from_document(&Document::default().domain(d), None).unwrap()
    };
    // 3 MiB hold the image, one stack and a heap, but not 16 stacks of 64 KiB.
    let small = || testguest("b", &[]).memory_mib(3).stacks(1, STACK_KIB);
    let e = System::boot(spec(small().grow(16, GrowFallback::Block)), None)
        .err()
        .expect("16 reserved stacks do not fit 3 MiB");
    match &e {
        SystemError::Boot(b) => match *b.failure {
            BootFailure::TooSmall { stacks, .. } => assert_eq!(stacks, 16, "{e:?}"),
            ref other => panic!("not TooSmall: {other:?}"),
        },
        other => panic!("not a boot error: {other:?}"),
    }
    assert!(
        crate::common::chain(&e).contains("16 stacks of 64 KiB"),
        "{}",
        crate::common::chain(&e)
    );
    // The same domain with a fixed pool of its boot reservation fits.
    let _dog = crate::common::Watchdog::arm("one stack fits 3 MiB");
    let sys = System::boot(spec(small()), None).expect("one stack fits");
    assert_eq!(sys.domain_by_name("b").unwrap().stack_max(), 1);
}
