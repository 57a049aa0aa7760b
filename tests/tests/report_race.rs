//! A fault report reaches only the thread whose call faulted, also when a
//! thread is unwound out of a domain at the moment that domain goes down
//! again. Its own test binary: it installs the process's logger, which
//! holds the faulting thread at the quarantine's log line (a widened
//! window; the soak's logger widened it too) while the other thread is
//! unwound.
//!
//! The defect, found by the fuzz oracle under `ferry soak`: `quarantine`
//! marked the domain `Quarantined` first and stored the new report after
//! its log line. A frame unwound in between read the previous generation's
//! report, and when that older fault had been its own thread's, it was
//! answered with the whole of it (another call's vector, RIP, error code,
//! CR2) instead of `DOMAIN_DOWN`.

mod common;

use common::{boot, ok, settled, testguest, SPIN_TIMEOUT, STACK_KIB};
use ferry_engine::domain::{Domain, Health};
use ferry_engine::manifest::{Document, Millis};
use ferry_engine::shared_abi::pseudo_vector;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `probe`'s pick: `[vector, RIP | error code | CR2]` of a `Fault`.
const VECTOR_AND_ANY_REGISTER: u64 = 3;
/// The #PF of testguest's `wild_write`.
const PAGE_FAULT: u64 = 14;
/// Longest the logger holds a thread, and the test waits for any step.
const STEP_LIMIT: Duration = Duration::from_secs(20);

/// Set by the test: hold the next quarantine's log line.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Set by the logger: a faulting thread is held at the quarantine's log line.
static HELD: AtomicBool = AtomicBool::new(false);
/// Set by the test: let the held thread go on.
static RESUME: AtomicBool = AtomicBool::new(false);

/// A logger that holds the thread logging the next quarantine (once armed)
/// until the test resumes it, at most [`STEP_LIMIT`].
struct HoldAtQuarantine;

impl log::Log for HoldAtQuarantine {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        let quarantine = r.target().starts_with("ferry_engine::domain")
            && r.args().to_string().contains("domain quarantined");
        if !quarantine || !ARMED.swap(false, Ordering::SeqCst) {
            return;
        }
        HELD.store(true, Ordering::SeqCst);
        let start = Instant::now();
        while !RESUME.load(Ordering::SeqCst) && start.elapsed() < STEP_LIMIT {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn flush(&self) {}
}

static LOGGER: HoldAtQuarantine = HoldAtQuarantine;

/// Wait (bounded) until `what` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < STEP_LIMIT, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where `b.hold`'s release flag is (the same static in every generation).
fn hold_flag(sys: &ferry_engine::system::System, b: &Domain) -> u64 {
    ok(&sys.run_thread(&b.name, "hold_addr", &[]).result)[0]
}

/// d1's thread faults b (generation 0, its own #PF), then waits in `b.hold`
/// on generation 1. d2's call faults b again; while d2's thread is held at
/// the quarantine's log line, d1's hold is released and returns into the
/// downed domain. d1 must learn `DOMAIN_DOWN` only, not its own #PF of
/// generation 0 handed back as this generation's report.
#[test]
fn a_thread_unwound_while_a_domain_goes_down_again_never_gets_its_older_report() {
    log::set_logger(&LOGGER).expect("the only logger of this test binary");
    log::set_max_level(log::LevelFilter::Error);
    let doc = Document::default()
        .domain(testguest("d1", &["b.wild_write", "b.hold"]))
        .domain(testguest("d2", &["b.wild_write"]))
        // Budgets and waits far beyond the test's own steps.
        .domain(testguest("b", &[]).stacks(4, STACK_KIB).limits(
            Millis::Ms(40_000),
            Millis::Ms(40_000),
            1000,
        ));
    let (_dog, sys) = boot("a_thread_unwound_while_a_domain_goes_down_again", doc);
    let b = sys.domain_by_name("b").unwrap();
    let flag = hold_flag(&sys, b);
    std::thread::scope(|s| {
        let d1 = s.spawn(|| {
            sys.run_thread(
                "d1",
                "probe_after",
                &[0, 1, VECTOR_AND_ANY_REGISTER, SPIN_TIMEOUT],
            )
        });
        wait_for("d1's thread waits in b.hold on generation 1", || {
            b.generation() == 1 && b.health() == Health::Running && b.active_frames() == 1
        });
        let own = sys.faults();
        assert_eq!(own.len(), 1, "{own:?}");
        assert_eq!(own[0].vector, PAGE_FAULT, "d1's own fault of generation 0");
        ARMED.store(true, Ordering::SeqCst);
        let d2 = s.spawn(|| sys.run_thread("d2", "probe", &[0, VECTOR_AND_ANY_REGISTER]));
        wait_for("d2's thread quarantines b", || HELD.load(Ordering::SeqCst));
        assert_eq!(b.health(), Health::Quarantined);
        ferry_engine::testing::write_guest(b, flag, &1u64.to_le_bytes()).unwrap();
        let unwound = d1.join().unwrap();
        RESUME.store(true, Ordering::SeqCst);
        let faulted = d2.join().unwrap();
        let own = ok(&faulted.result);
        assert_eq!(own[0], PAGE_FAULT, "d2 gets its own #PF");
        assert_ne!(own[1], 0, "…with its registers");
        assert_eq!(
            ok(&unwound.result),
            [pseudo_vector::DOMAIN_DOWN, 0],
            "d1 was unwound by d2's fault and must learn nothing but that b went \
             down (a #PF here is d1's own report of the previous generation): {unwound:?}"
        );
    });
    settled(b);
    assert_eq!((b.health(), b.generation()), (Health::Running, 2));
}
