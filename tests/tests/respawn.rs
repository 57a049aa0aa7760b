//! A self-respawn chain of tens of thousands of threads (never more than
//! two alive) runs with the VMM's memory maps, host threads and RSS
//! bounded throughout: finished spawned threads are joined and freed while
//! the run goes on. Alone in its test binary, since it counts process-wide
//! things.

mod common;

use common::{testguest, STACK_KIB};
use ferry_engine::manifest::{Document, ThreadEntry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Spawns in the chain: "tens of thousands", within the test's time box.
const CHAIN: u64 = 20_000;

fn maps() -> u64 {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64)
}

/// A `/proc/self/status` field in its own unit (`Threads`, `VmRSS` in KiB).
fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    maps: u64,
    threads: u64,
    rss_kib: u64,
}

fn usage() -> Usage {
    Usage {
        maps: maps(),
        threads: status("Threads"),
        rss_kib: status("VmRSS"),
    }
}

#[test]
fn a_self_respawn_chain_is_reclaimed_as_it_runs() {
    let doc = Document::default()
        .domain(testguest("a", &[]).stacks(4, STACK_KIB))
        .thread(ThreadEntry::new("a", "respawn", &[CHAIN]));
    let (_dog, sys) = common::boot_for(
        "a_self_respawn_chain_is_reclaimed_as_it_runs",
        doc,
        Duration::from_secs(120),
    );
    let before = usage();
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (outcomes, peak) = std::thread::scope(|s| {
        let run = s.spawn(|| {
            let o = sys.run();
            done.store(true, Ordering::Release);
            o
        });
        let mut peak = before;
        while !done.load(Ordering::Acquire) {
            let u = usage();
            peak.maps = peak.maps.max(u.maps);
            peak.threads = peak.threads.max(u.threads);
            peak.rss_kib = peak.rss_kib.max(u.rss_kib);
            std::thread::sleep(Duration::from_millis(20));
        }
        (run.join().unwrap(), peak)
    });
    let took = started.elapsed();
    eprintln!("{CHAIN} spawns in {took:?}; before {before:?}, peak {peak:?}");
    assert!(
        peak.maps <= before.maps + 200,
        "memory maps grew: {before:?} → {peak:?}"
    );
    assert!(
        peak.threads <= before.threads + 16,
        "host threads grew: {before:?} → {peak:?}"
    );
    assert!(
        peak.rss_kib <= before.rss_kib + 64 * 1024,
        "RSS grew: {before:?} → {peak:?}"
    );
    let a = sys.domain_by_name("a").unwrap();
    assert_eq!(a.spawned_threads(), 0, "spawn quota given back");
    let tally = sys.spawn_tally();
    assert_eq!(tally.ended, CHAIN, "every spawn ran: {tally:?}");
    assert_eq!(tally.succeeded, CHAIN, "{tally:?}");
    let kept = ferry_engine::thread::spawns::KEPT_SPAWNED_OUTCOMES as u64;
    assert_eq!(tally.forgotten, CHAIN - kept, "{tally:?}");
    assert_eq!(outcomes.len() as u64, 1 + kept, "outcomes kept are bounded");
    assert!(outcomes.iter().all(|o| o.start == "a.respawn"));
    assert_eq!(
        common::ok(&outcomes[0].result)[0],
        CHAIN,
        "the first thread"
    );
}
