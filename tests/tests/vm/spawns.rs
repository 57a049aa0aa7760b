//! Spawns around the end of a run: every spawn answered with status 0
//! either runs or is reported `NotStarted`, and every domain's spawn quota
//! is back to 0 afterwards.

use crate::common::{boot, ok, testguest, STACK_KIB};
use ferry_engine::manifest::{Document, ThreadEntry};

/// A chain of `CHAIN` self-respawns in `a` ends the run while a thread
/// outside the run (`run_thread`) keeps spawning `null` into `x` every few
/// milliseconds, so some spawn arrives while the run loop decides that
/// every thread has ended.
#[test]
fn a_spawn_racing_the_end_of_the_run_runs_or_is_reported() {
    // Chain + paced spawns stay within the outcomes a run keeps in full.
    const CHAIN: u64 = 800;
    let doc = Document::default()
        .domain(testguest("a", &[]).stacks(4, STACK_KIB))
        .domain(testguest("x", &[]).stacks(4, STACK_KIB))
        .thread(ThreadEntry::new("a", "respawn", &[CHAIN]));
    let (_dog, sys) = boot("a_spawn_racing_the_end_of_the_run_runs_or_is_reported", doc);
    let x = sys.domain_by_name("x").unwrap();
    // Every 8 ms: longer than the run loop's old 5 ms quiet period.
    let gap = u64::from(x.tsc_khz.max(1_000_000)) * 8;
    let (outcomes, paced) = std::thread::scope(|s| {
        let run = s.spawn(|| sys.run());
        let paced = s.spawn(|| sys.run_thread("x", "spawn_paced", &[gap, 4_000]));
        (run.join().unwrap(), paced.join().unwrap())
    });
    let [accepted, refused] = ok(&paced.result);
    assert!(accepted > 0, "no spawn was accepted ({refused} refused)");
    let shown = outcomes.iter().filter(|o| o.start == "x.null").count() as u64;
    assert_eq!(
        shown, accepted,
        "every accepted spawn shows up as run or NotStarted"
    );
    let chain = outcomes.iter().filter(|o| o.start == "a.respawn").count() as u64;
    assert_eq!(
        chain,
        CHAIN + 1,
        "the chain: the first thread and every spawn"
    );
    let tally = sys.spawn_tally();
    assert_eq!(tally.ended, CHAIN + accepted, "{tally:?}");
    assert_eq!(tally.forgotten, 0, "{tally:?}");
    for d in sys.domains() {
        assert_eq!(d.spawned_threads(), 0, "{}: spawn quota given back", d.name);
    }
}
