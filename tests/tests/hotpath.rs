//! The migration hot path, proven rather than claimed: over 1,000 warm null
//! calls the VMM allocates nothing and issues no vCPU ioctl but `KVM_RUN`
//! (registers travel through the sync-regs page). Alone in its test binary:
//! the ioctl counters are process-wide.

mod common;

use common::ok;
use ferry_engine::manifest::{Document, DomainEntry};
use std::alloc::{GlobalAlloc, Layout, System as Heap};
use std::cell::Cell;

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every request unchanged to the system allocator; the
// counter is a thread-local `Cell` (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { Heap.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { Heap.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { Heap.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A `bench` caller looping over null calls into a `bench` callee.
fn manifest() -> Document {
    Document::default()
        .domain(
            DomainEntry::new("caller", "bench")
                .exports(["loop_call"])
                .capabilities(["callee.null"]),
        )
        .domain(DomainEntry::new("callee", "bench").exports(["null"]))
}

/// Allocations, `KVM_RUN`s and other vCPU ioctls of one thread making `n`
/// null calls.
fn measure(sys: &ferry_engine::system::System, n: u64) -> (u64, u64, u64) {
    let (runs0, other0) = ferry_engine::testing::vcpu_ioctl_counts();
    let (published0, _) = ferry_engine::testing::budget_counts();
    let a0 = allocations();
    let out = sys.run_thread("caller", "loop_call", &[0, n, 0, 0]);
    let a1 = allocations();
    let (runs1, other1) = ferry_engine::testing::vcpu_ioctl_counts();
    let (published1, _) = ferry_engine::testing::budget_counts();
    assert_eq!(ok(&out.result), [n, 0], "{out:?}");
    // Budgets were armed: every call published its frame and every return
    // its pop (atomic stores on the thread's meter, no system call), plus
    // the thread's first frame.
    assert_eq!(published1 - published0, 2 * n + 1, "budget publications");
    (a1 - a0, runs1 - runs0, other1 - other0)
}

#[test]
fn a_thousand_warm_null_calls_allocate_nothing_and_only_run() {
    let (_dog, sys) = common::boot("hot path", manifest());
    let callee = sys.domain_by_name("callee").unwrap();
    assert!(callee.limits.budget.is_some(), "default budgets are armed");
    measure(&sys, 10); // warm: every vCPU created, every pool touched
    let (allocs_small, runs_small, other_small) = measure(&sys, 10);
    let (allocs_big, runs_big, other_big) = measure(&sys, 1010);
    assert_eq!(
        allocs_big, allocs_small,
        "the 1,000 extra calls allocated in the VMM"
    );
    assert_eq!(
        other_big, other_small,
        "the 1,000 extra calls issued vCPU ioctls other than KVM_RUN"
    );
    assert_eq!(
        runs_big - runs_small,
        2 * 1000,
        "a call+return is exactly two KVM_RUNs"
    );
}
