//! The soak's mapped-mode pair: `sm-a` (`stack = "mapped"`) and `sm-b`
//! (`pool`) calling each other in a ring of `relay`s (image `stacker`), so
//! a thread's window stack is mapped (on call) into `sm-a` again and again
//! while the rest of the soak runs, and every ring passes its counter
//! object in place (mapped callee) or by copy (pool callee).
//!
//! Checked: every ring's answer exactly (`[n + 1, n]`: the counter went
//! through every frame and back), and at the end that nothing of the
//! window is left: every window slot free, no domain with a window slot
//! or a lease still mapped (memory slots back to the domain's own).

use ferry_engine::manifest::{DomainEntry, Mapping, StackMode, StacksEntry};
use ferry_engine::system::System;
use ferry_engine::thread::ThreadResult;
use ferry_hostile::STACKER_ENTRIES;

/// The mapped-mode domain of the pair.
pub const A: &str = "sm-a";
/// The pool-mode domain of the pair.
pub const B: &str = "sm-b";
/// Longest ring asked (calls after the first frame).
const MAX_RING: u64 = 20;

/// The `[stacks]` table the pair needs: map-on-call, so every ring maps
/// and unmaps the thread's slot (the costlier variant, and the one with
/// more paths to leave a slot behind).
pub fn stacks() -> StacksEntry {
    StacksEntry {
        mapping: Mapping::OnCall,
        window_kib: 256,
    }
}

/// The pair's two `[[domain]]` tables.
pub fn domains() -> Vec<DomainEntry> {
    let d = |name: &str, mode: StackMode, other: &str| {
        DomainEntry::new(name, "stacker")
            .memory_mib(4)
            .stacks(12, 16)
            .exports(STACKER_ENTRIES.iter().copied())
            .capabilities([format!("{other}.relay")])
            .stack(mode)
    };
    vec![d(A, StackMode::Mapped, B), d(B, StackMode::Pool, A)]
}

/// Counts of the mapped pair's rings.
#[derive(Clone, Debug, Default)]
pub struct MappedTally {
    /// Rings run.
    pub rings: u64,
    /// Calls they made (frames after the first).
    pub calls: u64,
    /// Rings whose answer was wrong (each a broken invariant), the first
    /// few described.
    pub problems: u64,
    /// The first few wrong answers.
    pub described: Vec<String>,
}

impl MappedTally {
    /// Run one ring from `r` (a random word): `relay(n)` starting in either
    /// domain, checked exactly.
    pub fn ring(&mut self, sys: &System, r: u64) {
        let n = r % (MAX_RING + 1);
        let start = if (r >> 32) & 1 == 0 { A } else { B };
        let result = sys.run_thread(start, "relay", &[n]).result;
        self.rings += 1;
        match result {
            ThreadResult::Returned { status: 0, results } if results == [n + 1, n] => {
                self.calls += n;
            }
            other => self.problem(format!("relay({n}) from `{start}`: {other:?}")),
        }
    }

    /// Record a broken invariant.
    pub fn problem(&mut self, what: String) {
        self.problems += 1;
        if self.described.len() < 10 {
            self.described.push(what);
        }
    }
}

/// What of the stack window or of a lease is left behind in `sys` when it
/// is idle: `free_at_boot` is the window's free slots after boot.
pub fn leaks(sys: &System, free_at_boot: Option<usize>) -> Vec<String> {
    let mut leaks = Vec::new();
    let free = sys.window_free_slots();
    if free != free_at_boot {
        leaks.push(format!(
            "stack window: {free:?} slots free, {free_at_boot:?} after boot"
        ));
    }
    for d in sys.domains() {
        if d.window_slots_mapped() != 0 {
            leaks.push(format!(
                "{}: {} window slots still mapped",
                d.name,
                d.window_slots_mapped()
            ));
        }
        if d.memory_slots() != 1 {
            leaks.push(format!(
                "{}: {} KVM memory slots (a lease left behind)",
                d.name,
                d.memory_slots()
            ));
        }
    }
    leaks
}
