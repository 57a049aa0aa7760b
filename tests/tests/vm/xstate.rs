//! A restart wipes every register class a guest can reach, not only the
//! general and special registers: x87, SSE, the upper ymm/zmm halves,
//! zmm16–31 and the AVX-512 mask registers (PVM runs AVX and AVX-512 at
//! CPL3 although the guest's CPUID hides them).

use crate::common::{boot, ok, testguest, STACK_KIB};
use ferry_engine::domain::Health;
use ferry_engine::manifest::Document;
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use std::time::{Duration, Instant};

/// `features` for the `xstate_*` entries from the HOST's CPU flags (the
/// guest's CPUID hides AVX under PVM): bit 0 AVX, bit 1 AVX-512F.
fn host_features() -> u64 {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    u64::from(flags.contains(&"avx")) | (u64::from(flags.contains(&"avx512f")) << 1)
}

/// What each bit of `xstate_check`'s answer means.
const CLASSES: [&str; 8] = [
    "xmm",
    "ymm upper",
    "zmm0-15 upper",
    "zmm16-31",
    "k0-k7",
    "x87 stack",
    "x87 control word",
    "MXCSR",
];

fn survivors(bits: u64) -> Vec<&'static str> {
    CLASSES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `xstate_check` in `b` at `depth` (depth + 1 vCPUs), waiting out a
/// restart still in progress.
fn check(sys: &System, features: u64, depth: u64) -> [u64; 2] {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = sys.run_thread("b", "xstate_check", &[features, depth]);
        // `Restarting` arrives as a refused start or as a nested call's
        // status: try again until the restart is over.
        let busy = matches!(
            out.result,
            ThreadResult::Returned { status, .. } if status != 0
        ) || matches!(&out.result, ThreadResult::NotStarted(_));
        if !busy || Instant::now() > deadline {
            return ok(&out.result);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_restart_wipes_all_extended_state_on_every_vcpu() {
    let doc = Document::default()
        .domain(testguest("b", &["b.xstate_fill", "b.xstate_check"]).stacks(4, STACK_KIB));
    let (_dog, sys) = boot("a_restart_wipes_all_extended_state_on_every_vcpu", doc);
    let b = sys.domain_by_name("b").unwrap();
    let features = host_features();
    let fresh = check(&sys, features, 2);
    assert_eq!(fresh, [0, 3], "a fresh domain: {:?}", survivors(fresh[0]));
    // Two vCPUs of b hold the values (a frame calling into b again, and the
    // one that faults), then the fault restarts b.
    let out = sys.run_thread("b", "xstate_fill", &[features, 1]);
    assert!(
        matches!(out.result, ThreadResult::Faulted(_)),
        "{:?}",
        out.result
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while (b.generation() < 1 || b.health() != Health::Running) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(b.generation(), 1);
    // Three frames: every vCPU b has (boot vCPU and both writers) is checked.
    let r = check(&sys, features, 2);
    assert_eq!(
        r[0],
        0,
        "survived the restart: {:?} (host features {features:#x})",
        survivors(r[0])
    );
    assert_eq!(r[1], 3);
}
