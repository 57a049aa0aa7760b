//! Mapped stack mode (`stack = "mapped"`), both variants (`[stacks] mapping
//! = "premapped" | "on-call"`): a callee runs on the calling thread's own
//! window stack, below the caller's frame; an object on that stack passes
//! in place, a heap object is still copied; the caller's stack pointer is
//! checked; a callee can read and overwrite its caller's frames (which pool
//! mode prevents); and no window slot or memory slot is left behind.

use crate::common::{boot, ok, settled, Watchdog};
use ferry_engine::manifest::{Document, DomainEntry, Mapping, StackMode, StacksEntry};
use ferry_engine::shared_abi::layout::{PAGE_SIZE, STACK_WINDOW_BASE, STACK_WINDOW_SIZE};
use ferry_engine::shared_abi::{pseudo_vector, ErrorCode};
use ferry_engine::system::System;
use ferry_engine::thread::{NotStarted, ThreadResult};
use ferry_hostile::STACKER_ENTRIES;

/// `stacker`'s secret, marker and sentinel (see its entry table).
const SECRET: u64 = 0x5ec7_e7ab_c0de_0001;
const SENTINEL: u64 = 0x0000_7fff_dead_0000;

/// KiB of each thread's window stack in these tests.
const WINDOW_KIB: u64 = 256;
/// Bytes from one window slot to the next.
const STRIDE: u64 = (WINDOW_KIB << 10) + PAGE_SIZE;

const BOTH: [Mapping; 2] = [Mapping::Premapped, Mapping::OnCall];

fn stacker(name: &str, mode: StackMode, caps: &[&str]) -> DomainEntry {
    DomainEntry::new(name, "stacker")
        .exports(STACKER_ENTRIES.iter().copied())
        .capabilities(caps.iter().copied())
        .stack(mode)
}

fn window(mapping: Mapping) -> StacksEntry {
    StacksEntry {
        mapping,
        window_kib: WINDOW_KIB,
    }
}

fn system(name: &'static str, mapping: Mapping, domains: Vec<DomainEntry>) -> (Watchdog, System) {
    let mut doc = Document {
        stacks: Some(window(mapping)),
        ..Document::default()
    };
    for d in domains {
        doc = doc.domain(d);
    }
    boot(name, doc)
}

/// A caller `a` and a callee `b` in the given modes, `a`'s slot 0 = `b.<entry>`.
fn pair(
    name: &'static str,
    mapping: Mapping,
    modes: (StackMode, StackMode),
    entry: &str,
) -> (Watchdog, System) {
    let cap = format!("b.{entry}");
    system(
        name,
        mapping,
        vec![stacker("a", modes.0, &[&cap]), stacker("b", modes.1, &[])],
    )
}

fn in_window(addr: u64) -> bool {
    (STACK_WINDOW_BASE..STACK_WINDOW_BASE + STACK_WINDOW_SIZE).contains(&addr)
}

/// Nothing is left behind: every window slot back, no memory slot of the
/// window in any domain, every frame gone.
fn assert_clean(sys: &System) {
    let slots = (STACK_WINDOW_SIZE / STRIDE) as usize;
    assert_eq!(sys.window_free_slots(), Some(slots), "a window slot leaked");
    for d in sys.domains() {
        assert_eq!(
            d.window_slots_mapped(),
            0,
            "{}: window still mapped",
            d.name
        );
        assert_eq!(d.active_frames(), 0, "{}: frames still inside", d.name);
        assert_eq!(d.free_stacks(), d.stack_capacity() as usize, "{}", d.name);
    }
}

fn faulted(result: &ThreadResult) -> &ferry_engine::fault::FaultReport {
    match result {
        ThreadResult::Faulted(r) => r,
        other => panic!("thread did not fault: {other:?}"),
    }
}

const MAPPED: StackMode = StackMode::Mapped;
const POOL: StackMode = StackMode::Pool;

#[test]
fn stack_objects_pass_in_place() {
    for mapping in BOTH {
        let (_dog, sys) = pair("in_place", mapping, (MAPPED, MAPPED), "inc_inout");
        for len in [1, 64, 4096] {
            let [callee_saw, caller_had] = ok(&sys.run_thread("a", "pass_stack", &[len]).result);
            assert!(in_window(caller_had), "{mapping:?}: {caller_had:#x}");
            assert_eq!(
                callee_saw, caller_had,
                "{mapping:?}: the same address, no copy"
            );
        }
        assert_clean(&sys);
    }
}

#[test]
fn heap_objects_are_still_copied() {
    for mapping in BOTH {
        let (_dog, sys) = pair("heap_copied", mapping, (MAPPED, MAPPED), "inc_inout");
        let [callee_saw, caller_had] = ok(&sys.run_thread("a", "pass_heap", &[100]).result);
        assert!(!in_window(caller_had), "a heap buffer: {caller_had:#x}");
        assert!(
            in_window(callee_saw),
            "its copy is on the window stack: {callee_saw:#x}"
        );
        assert_ne!(callee_saw, caller_had);
        // Both kinds in one argument list.
        let (_dog, sys) = pair("both_kinds", mapping, (MAPPED, MAPPED), "inc_both");
        let [stack_obj, heap_obj] = ok(&sys.run_thread("a", "pass_both", &[300]).result);
        assert!(in_window(stack_obj) && in_window(heap_obj));
        assert!(
            heap_obj < stack_obj,
            "the copy lies below the caller's frame"
        );
        assert_clean(&sys);
    }
}

#[test]
fn pool_mode_copies_stack_objects() {
    let (_dog, sys) = pair("pool_copies", Mapping::Premapped, (POOL, POOL), "inc_inout");
    let [callee_saw, caller_had] = ok(&sys.run_thread("a", "pass_stack", &[64]).result);
    assert!(!in_window(caller_had) && !in_window(callee_saw));
    assert_ne!(callee_saw, caller_had);
    // A system without a mapped domain has no window at all.
    assert_eq!(sys.window_free_slots(), None);
}

#[test]
fn a_raw_heap_pointer_does_not_reach_a_mapped_callee() {
    for mapping in BOTH {
        let (_dog, sys) = system(
            "raw_heap_pointer",
            mapping,
            vec![
                stacker("a", MAPPED, &["b.peek"]).memory_mib(16),
                stacker("b", MAPPED, &[]).memory_mib(4),
            ],
        );
        // High in a's 16 MiB: not mapped in b's 4 MiB at all.
        let [status, _] = ok(&sys.run_thread("a", "heap_secret", &[10 << 20]).result);
        assert_eq!(status, ErrorCode::Fault as u64, "{mapping:?}");
        let f = sys.faults();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].domain.as_str(), f[0].vector), ("b", 14));
        settled(sys.domain_by_name("b").unwrap());
        // Low: b reads its own memory at that address, not a's secret.
        let [status, seen] = ok(&sys.run_thread("a", "heap_secret", &[64]).result);
        assert_eq!(status, 0);
        assert_ne!(seen, SECRET);
        assert_clean(&sys);
    }
}

#[test]
fn the_callers_stack_pointer_is_checked() {
    for mapping in BOTH {
        let (_dog, sys) = pair("rsp_check", mapping, (MAPPED, MAPPED), "null");
        let real = ok(&sys.run_thread("a", "bad_rsp", &[0]).result);
        assert_eq!(real, [0, 0], "{mapping:?}: the real RSP is accepted");
        // The first thread's slot is slot 0 (every slot is free again).
        let bottom = STACK_WINDOW_BASE + PAGE_SIZE;
        let top = bottom + (WINDOW_KIB << 10);
        for (rsp, why) in [
            (0x1000, "outside the window"),
            (0x30_0000, "in the domain's own memory"),
            (top + 8, "above the slot"),
            (top + STRIDE - 0x100, "in another thread's slot"),
            (bottom + 0x200, "no room for the callee"),
            (u64::MAX - 7, "wraps"),
        ] {
            let [status, _] = ok(&sys.run_thread("a", "bad_rsp", &[rsp]).result);
            assert_eq!(
                status,
                ErrorCode::BadStack as u64,
                "{mapping:?}: RSP {rsp:#x}: {why}"
            );
        }
        assert_clean(&sys);
    }
}

#[test]
fn a_frame_names_only_its_own_threads_slot() {
    for mapping in BOTH {
        let (_dog, sys) = pair("own_slot_only", mapping, (MAPPED, MAPPED), "inc_inout");
        // The first thread's slot is slot 0; slot 1 is nobody's.
        let mine = STACK_WINDOW_BASE + PAGE_SIZE + 0x1000;
        let r = ok(&sys.run_thread("a", "raw_desc", &[mine, 64]).result);
        assert_eq!(r, [0, mine], "{mapping:?}: its own slot, in place");
        for (addr, len, why) in [
            (STACK_WINDOW_BASE + STRIDE + PAGE_SIZE, 64, "another slot"),
            (STACK_WINDOW_BASE, 64, "a guard page"),
            (STACK_WINDOW_BASE + STRIDE - 32, 64, "across the slot's top"),
        ] {
            let [status, _] = ok(&sys.run_thread("a", "raw_desc", &[addr, len]).result);
            assert_eq!(status, ErrorCode::OutOfRange as u64, "{mapping:?}: {why}");
        }
        // A pool frame of the same thread cannot name the window at all.
        let (_dog, sys) = pair("pool_no_window", mapping, (POOL, MAPPED), "inc_inout");
        let [status, _] = ok(&sys.run_thread("a", "raw_desc", &[mine, 64]).result);
        assert_eq!(status, ErrorCode::OutOfRange as u64);
        assert_clean(&sys);
    }
}

#[test]
fn a_mapped_callee_reads_and_overwrites_its_callers_frame() {
    for mapping in BOTH {
        let (_dog, sys) = pair("hostile_mapped", mapping, (MAPPED, MAPPED), "hostile");
        // It reads the secret from the caller's frame.
        let secret = 0x1234_5678_9abc_def0;
        let r = ok(&sys.run_thread("a", "victim", &[secret, STRIDE, 0]).result);
        assert_eq!(r, [0, secret], "{mapping:?}: the callee read the secret");
        // It overwrites the caller's saved return addresses: the caller
        // returns into the sentinel.
        let out = sys.run_thread("a", "victim", &[secret, STRIDE, 1]);
        let f = faulted(&out.result);
        assert_eq!(
            f.domain, "a",
            "{mapping:?}: the caller died, not the callee"
        );
        assert_eq!((f.vector, f.rip), (14, SENTINEL), "{mapping:?}: {f}");
        settled(sys.domain_by_name("a").unwrap());
        assert_clean(&sys);
    }
}

#[test]
fn a_pool_callee_cannot_touch_its_callers_frame() {
    let (_dog, sys) = pair("hostile_pool", Mapping::Premapped, (POOL, POOL), "hostile");
    let secret = 0x1234_5678_9abc_def0;
    let [status, seen] = ok(&sys.run_thread("a", "victim", &[secret, STRIDE, 0]).result);
    assert_eq!(status, 0);
    assert_ne!(seen, secret, "the address names the callee's own memory");
    // The same overwrite finds nothing of the caller's: the caller's
    // secret and return address are intact (it returns success; the
    // callee may have broken only itself).
    let [status, _] = ok(&sys.run_thread("a", "victim", &[secret, STRIDE, 1]).result);
    assert!(status == 0 || status == ErrorCode::Fault as u64, "{status}");
    assert!(sys.faults().iter().all(|f| f.domain == "b"));
}

#[test]
fn no_free_window_slot_refuses_a_thread_clearly() {
    // One slot only: a window stack of half the window.
    let doc = Document {
        stacks: Some(StacksEntry {
            mapping: Mapping::Premapped,
            window_kib: (STACK_WINDOW_SIZE / 2) >> 10,
        }),
        ..Document::default()
    }
    .domain(stacker("a", MAPPED, &["b.spin"]))
    .domain(stacker("b", MAPPED, &[]).limits(
        ferry_engine::manifest::Millis::Ms(300),
        ferry_engine::manifest::Millis::Ms(2000),
        1000,
    ));
    let (_dog, sys) = boot("no_free_slot", doc);
    assert_eq!(sys.window_free_slots(), Some(1));
    std::thread::scope(|s| {
        let a = sys.domain_by_name("a").unwrap();
        // a calls b.spin (heap_secret calls slot 0), which runs out of its
        // CPU budget.
        let first = s.spawn(|| sys.run_thread("a", "heap_secret", &[8]));
        // Wait until the first thread holds the slot (bounded by the watchdog).
        while sys.window_free_slots() != Some(0) || a.active_frames() == 0 {
            std::thread::yield_now();
        }
        let second = sys.run_thread("a", "null", &[]);
        assert!(
            matches!(
                second.result,
                ThreadResult::NotStarted(NotStarted::NoWindowSlot)
            ),
            "{:?}",
            second.result
        );
        // The spinning call ends at its CPU budget.
        let first = first.join().unwrap();
        assert_eq!(ok(&first.result), [ErrorCode::Timeout as u64, 0]);
    });
    settled(sys.domain_by_name("b").unwrap());
    assert_eq!(sys.window_free_slots(), Some(1));
}

/// Stacks (seats: a mapped domain's frames run on the window, but each
/// still takes one of its pool's places and a vCPU) for deep chains.
const SEATS: (u32, u64) = (10, 16);

#[test]
fn nesting_16_with_call_backs() {
    for mapping in BOTH {
        let (_dog, sys) = system(
            "nesting_16",
            mapping,
            vec![
                stacker("a", MAPPED, &["b.relay"]).stacks(SEATS.0, SEATS.1),
                stacker("b", MAPPED, &["a.relay"]).stacks(SEATS.0, SEATS.1),
            ],
        );
        // a → b → a → … 16 calls deep, one counter on the window stack of
        // each frame, handed down in place.
        let r = ok(&sys.run_thread("a", "relay", &[16]).result);
        assert_eq!(r, [17, 16], "{mapping:?}");
        assert_eq!(sys.counters().calls(), 16);
        assert_clean(&sys);
    }
}

#[test]
fn pool_and_mapped_frames_interleave() {
    for mapping in BOTH {
        // pool → mapped → pool → mapped: each mapped frame goes below the
        // deepest live window frame, whatever lies between.
        let (_dog, sys) = system(
            "interleave",
            mapping,
            vec![
                stacker("a", POOL, &["b.relay"]),
                stacker("b", MAPPED, &["c.relay"]),
                stacker("c", POOL, &["d.relay"]),
                stacker("d", MAPPED, &[]),
            ],
        );
        assert_eq!(ok(&sys.run_thread("a", "relay", &[3]).result), [4, 3]);
        assert_clean(&sys);
    }
}

#[test]
fn pool_caller_into_mapped_callee_and_back() {
    for mapping in BOTH {
        // The callee runs at the top of the thread's window stack; the
        // caller's stack object is copied there and back.
        let (_dog, sys) = pair("pool_to_mapped", mapping, (POOL, MAPPED), "inc_inout");
        let [callee_saw, caller_had] = ok(&sys.run_thread("a", "pass_stack", &[64]).result);
        assert!(!in_window(caller_had));
        assert!(in_window(callee_saw), "{callee_saw:#x}");
        assert_clean(&sys);
        // A mapped caller into a pool callee: a fresh pool stack, copied.
        let (_dog, sys) = pair("mapped_to_pool", mapping, (MAPPED, POOL), "inc_inout");
        let [callee_saw, caller_had] = ok(&sys.run_thread("a", "pass_stack", &[64]).result);
        assert!(in_window(caller_had));
        assert!(!in_window(callee_saw), "{callee_saw:#x}");
        assert_clean(&sys);
    }
}

#[test]
fn mapped_caller_into_message_mode() {
    let doc = Document {
        stacks: Some(window(Mapping::Premapped)),
        ..Document::default()
    }
    .domain(stacker("a", MAPPED, &["b.inc_inout"]))
    .domain(stacker("b", POOL, &[]).ipc(ferry_engine::manifest::Ipc::Message));
    let (_dog, sys) = boot("mapped_to_message", doc);
    // An object on the window stack cannot reach a server thread: refused.
    let out = sys.run_thread("a", "pass_stack", &[64]);
    assert_eq!(
        out.result,
        ThreadResult::Returned {
            status: 0x8000 | ErrorCode::OutOfRange as u64,
            results: [0, 0]
        }
    );
    // A heap object travels by copy, as in every mode.
    let [callee_saw, caller_had] = ok(&sys.run_thread("a", "pass_heap", &[64]).result);
    assert_ne!(callee_saw, caller_had);
    assert_clean(&sys);
}

#[test]
fn concurrent_threads_in_one_domain() {
    for mapping in BOTH {
        let mut doc = Document {
            stacks: Some(window(mapping)),
            ..Document::default()
        }
        .domain(stacker("a", MAPPED, &["b.inc_inout"]).stacks(4, 16))
        .domain(stacker("b", MAPPED, &[]).stacks(4, 16));
        for _ in 0..4 {
            doc = doc.thread(ferry_engine::manifest::ThreadEntry::new(
                "a",
                "call_n",
                &[100, 512],
            ));
        }
        // Manifest threads run on host threads of their own, under seccomp.
        let (_dog, sys) = boot("concurrent", doc);
        let outcomes = sys.run();
        assert_eq!(outcomes.len(), 4);
        for o in &outcomes {
            assert_eq!(ok(&o.result), [100, 0], "{mapping:?}");
        }
        assert_clean(&sys);
    }
}

#[test]
fn every_fault_kind_is_the_callees_and_the_caller_goes_on() {
    for mapping in BOTH {
        let (_dog, sys) = pair("faults", mapping, (MAPPED, MAPPED), "fault");
        let b = sys.domain_by_name("b").unwrap();
        // Slot 1 of the window: no thread holds it, so it is mapped nowhere.
        let unmapped_slot = STACK_WINDOW_BASE + STRIDE + PAGE_SIZE;
        for (kind, arg, vector) in [
            (0, 0, 6),
            (1, 0, 0),
            (2, 0, 14),
            (3, 0, 14),
            (4, 0, pseudo_vector::PANIC),
            (5, unmapped_slot, pseudo_vector::UNBACKED_ACCESS),
        ] {
            let r = ok(&sys.run_thread("a", "forward", &[kind, arg]).result);
            assert_eq!(
                r,
                [ErrorCode::Fault as u64, vector],
                "{mapping:?}: kind {kind}"
            );
            // The latest fault of b (one domain, one report).
            let f = sys.faults();
            assert_eq!(f.len(), 1, "{f:?}");
            let f = &f[0];
            assert_eq!((f.domain.as_str(), f.vector), ("b", vector), "{f}");
            if kind == 3 {
                // The overflow hit the guard page below the thread's slot.
                let bottom = STACK_WINDOW_BASE + PAGE_SIZE;
                assert!((bottom - PAGE_SIZE..bottom).contains(&f.cr2), "{f}");
            }
            settled(b);
        }
        assert_eq!(b.generation(), 6);
        assert_clean(&sys);
    }
}

#[test]
fn the_window_stack_outlives_a_restart() {
    for mapping in BOTH {
        let (_dog, sys) = system(
            "restart",
            mapping,
            vec![
                stacker("a", MAPPED, &["b.fault", "b.inc_inout"]),
                stacker("b", MAPPED, &[]),
            ],
        );
        // a's buffer on its window stack: b faults, restarts, and then
        // works on the very same buffer in place.
        let [first, _] = ok(&sys.run_thread("a", "survive", &[10_000]).result);
        assert_eq!(first, ErrorCode::Fault as u64);
        assert!(sys.domain_by_name("b").unwrap().generation() >= 1);
        assert_clean(&sys);
    }
}

#[test]
fn a_budget_stops_a_mapped_callee() {
    for mapping in BOTH {
        let (_dog, sys) = system(
            "budget",
            mapping,
            vec![
                stacker("a", MAPPED, &["b.spin"]),
                stacker("b", MAPPED, &[]).limits(
                    ferry_engine::manifest::Millis::Ms(100),
                    ferry_engine::manifest::Millis::Ms(2000),
                    1000,
                ),
            ],
        );
        let r = ok(&sys.run_thread("a", "forward", &[]).result);
        assert_eq!(r, [ErrorCode::Timeout as u64, 0], "{mapping:?}");
        settled(sys.domain_by_name("b").unwrap());
        assert_clean(&sys);
    }
}

#[test]
fn premapped_maps_every_reachable_domain_on_call_only_the_entered_one() {
    // a (pool) can reach b and c (mapped); its call into b spins until its
    // budget runs out. Meanwhile: b has the thread's slot in both variants;
    // c, never entered, only when pre-mapped. Afterwards neither has it.
    for (mapping, c_during) in [(Mapping::OnCall, 0), (Mapping::Premapped, 1)] {
        let (_dog, sys) = system(
            "mapping_variants",
            mapping,
            vec![
                stacker("a", POOL, &["b.spin", "c.null"]),
                stacker("b", MAPPED, &[]).limits(
                    ferry_engine::manifest::Millis::Ms(300),
                    ferry_engine::manifest::Millis::Ms(2000),
                    1000,
                ),
                stacker("c", MAPPED, &[]),
            ],
        );
        let b = sys.domain_by_name("b").unwrap();
        let c = sys.domain_by_name("c").unwrap();
        std::thread::scope(|s| {
            let t = s.spawn(|| sys.run_thread("a", "forward", &[]));
            // b has the slot once the call is in it (it spins there for
            // 300 ms of CPU; bounded by that and by the watchdog); the
            // thread's pre-mapping is over before its first call.
            while (b.active_frames() == 0 || b.window_slots_mapped() == 0) && !t.is_finished() {
                std::thread::yield_now();
            }
            assert_eq!(b.window_slots_mapped(), 1, "{mapping:?}");
            assert_eq!(c.window_slots_mapped(), c_during, "{mapping:?}");
            let r = ok(&t.join().unwrap().result);
            assert_eq!(r, [ErrorCode::Timeout as u64, 0]);
        });
        settled(b);
        assert_clean(&sys);
    }
}
