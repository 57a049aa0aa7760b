//! Shared harness for tests that boot real VMs: the KVM check, the watchdog
//! and manifest builders for the `testguest` image. Systems are described
//! as [`Document`]s built in code, never as formatted TOML.
#![allow(dead_code)]

use ferry_engine::manifest::{Document, DomainEntry};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::Duration;

/// Longest any VM-booting test may run before the whole test binary aborts.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Aborts the test process if not dropped within [`WATCHDOG`]: a hung
/// guest must fail fast, never eat CI's time.
pub struct Watchdog {
    _cancel: Sender<()>,
}

impl Watchdog {
    /// Arm a watchdog for the test called `name`.
    pub fn arm(name: &'static str) -> Self {
        Self::arm_for(name, WATCHDOG)
    }

    /// Arm a watchdog of `limit` for the test called `name`.
    pub fn arm_for(name: &'static str, limit: Duration) -> Self {
        let (tx, rx) = channel::<()>();
        std::thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "watchdog: test `{name}` still running after {} s; aborting",
                    limit.as_secs()
                );
                std::process::abort();
            }
        });
        Self { _cancel: tx }
    }
}

/// Fail with one clear sentence when KVM is missing: these tests never skip.
pub fn require_kvm() {
    let dev = ferry_engine::kvm::device_path();
    assert!(
        dev.exists(),
        "{} is missing: these tests boot real KVM guests and cannot run without it.",
        dev.display()
    );
}

/// The capabilities `drive_basic` expects: slot i → the i-th entry it calls in `b`.
pub const DRIVE_BASIC_CAPS: &[&str] = &[
    "b.null",
    "b.echo",
    "b.sum_in",
    "b.fill_out",
    "b.inc_inout",
    "b.whoami",
    "b.fail_app",
];

/// Like [`boot`], with `observer` watching every call.
pub fn boot_observed(
    name: &'static str,
    doc: Document,
    observer: std::sync::Arc<dyn ferry_engine::observe::CallObserver>,
) -> (Watchdog, System) {
    boot_with(name, &doc, Some(observer))
}

/// Arm the watchdog, check KVM and boot the system described by `doc`.
pub fn boot(name: &'static str, doc: Document) -> (Watchdog, System) {
    boot_with(name, &doc, None)
}

fn boot_with(
    name: &'static str,
    doc: &Document,
    observer: Option<std::sync::Arc<dyn ferry_engine::observe::CallObserver>>,
) -> (Watchdog, System) {
    let dog = Watchdog::arm(name);
    require_kvm();
    let spec = ferry_engine::manifest::System::from_document(doc, None)
        .unwrap_or_else(|e| panic!("test manifest: {}", chain(&e)));
    let sys = System::boot(spec, observer).unwrap_or_else(|e| panic!("boot failed: {}", chain(&e)));
    (dog, sys)
}

/// An error and all its causes, one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s += &format!(": {c}");
        cause = c.source();
    }
    s
}

/// Every entry of the `testguest` image, in table order.
pub const TESTGUEST_ENTRIES: &[&str] = &[
    "null",
    "echo",
    "whoami",
    "sum_in",
    "fill_out",
    "inc_inout",
    "fail_app",
    "relay",
    "ud2",
    "div0",
    "wild_write",
    "stack_overflow",
    "panic",
    "sites",
    "drive_basic",
    "drive_raw",
    "drive_fault",
    "drive_relay",
    "spin_forever",
    "forward",
    "rendezvous",
    "hold_addr",
    "hold",
    "bump",
    "regs_check",
    "spawner",
    "spawned_child",
    "exit_now",
    // budgets
    "call_limited",
    "forward_note",
    "noted",
    "hold_forward",
    // hygiene
    "xstate_fill",
    "xstate_check",
    "respawn",
    "spawn_paced",
    "print_forged",
    "print_flood",
    "unknown_flood",
    // chain
    "probe",
    "deep",
    "spawn_raw",
    "call_n",
    "scribble_then_fault",
    "drive_untouched",
    "drive_exit",
    "mirror",
    "scribbler",
    "drive_mirror",
    // replies
    "hold_inout",
    "late_reply",
    // reports
    "probe_after",
];

/// A spin timeout for guests, in TSC cycles (several seconds here): long
/// enough never to fire on a loaded machine, short of the watchdog.
pub const SPIN_TIMEOUT: u64 = 30_000_000_000;

/// KiB per stack when a manifest does not say: what tests that set only
/// the number of stacks pass to [`DomainEntry::stacks`].
pub const STACK_KIB: u64 = 64;

/// A domain running `testguest`, exporting every entry, with `caps` as its
/// capability slots; tests refine it with the builder (memory, stacks…).
pub fn testguest(name: &str, caps: &[&str]) -> DomainEntry {
    DomainEntry::new(name, "testguest")
        .exports(TESTGUEST_ENTRIES.iter().copied())
        .capabilities(caps.iter().copied())
}

/// Every frame has left: every stack is back in its pool and no domain
/// counts a frame in it.
pub fn assert_all_returned(sys: &System) {
    for d in sys.domains() {
        let (free, all) = (d.free_stacks(), d.stack_capacity() as usize);
        assert_eq!(free, all, "{}: {free} of {all} stacks back", d.name);
        assert_eq!(d.active_frames(), 0, "{}: frames still inside", d.name);
    }
}

/// Wait (bounded, as a watchdog only) while `d` is being reset: resets run
/// on the system's restarter thread, after the faulting caller's answer.
pub fn settled(d: &ferry_engine::domain::Domain) {
    let start = std::time::Instant::now();
    while d.health() == ferry_engine::domain::Health::Resetting {
        assert!(
            start.elapsed() < WATCHDOG,
            "`{}` never finished its reset",
            d.name
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The results of a thread that must have returned success.
pub fn ok(result: &ThreadResult) -> [u64; 2] {
    match result {
        ThreadResult::Returned { status: 0, results } => *results,
        other => panic!("thread did not return success: {other:?}"),
    }
}

// hygiene

/// Like [`boot`], with a watchdog of `limit` instead of [`WATCHDOG`] (for
/// the few tests that are long by design, e.g. tens of thousands of spawns).
pub fn boot_for(name: &'static str, doc: Document, limit: Duration) -> (Watchdog, System) {
    let dog = Watchdog::arm_for(name, limit);
    require_kvm();
    let spec = ferry_engine::manifest::System::from_document(&doc, None)
        .unwrap_or_else(|e| panic!("test manifest: {}", chain(&e)));
    let sys = System::boot(spec, None).unwrap_or_else(|e| panic!("boot failed: {}", chain(&e)));
    (dog, sys)
}

/// Wait (up to 20 s, polling every millisecond) until `cond` holds, or
/// fail naming `what` was awaited.
pub fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "gave up waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
