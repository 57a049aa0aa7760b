//! A host thread's CPU-budget record: what the thread publishes about the
//! frames it runs (with atomic stores only — no system call on the hot
//! path) and what the watchdog writes back when a budget runs out.
//!
//! Per level (frame index on this host thread) the thread publishes a
//! frame id, that frame's own budget and its domain; `depth` says how many
//! levels are live. The watchdog turns budgets into deadlines on the
//! thread's CPU clock: a frame's deadline is the CPU time at which the
//! watchdog first saw it plus its budget, capped by the deadline of the
//! level below (a nested call inherits at most its caller's remaining
//! budget), unless the budget is a [`GRACE`] one.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Levels a meter can describe: the deepest chain one host thread can hold
/// (the engine refuses a 65th frame with `TooDeep`).
pub const LEVELS: usize = 64;

/// A budget with no limit.
pub const UNLIMITED: u64 = u64::MAX;

/// Flag bit of a budget word: a grace period, counted from when the
/// watchdog sees it and *not* capped by the level below (whose budget has
/// run out already: that is why the frame gets a grace).
pub const GRACE: u64 = 1 << 63;

/// A budget word for `d` (saturating; never reads as [`GRACE`] or [`UNLIMITED`]).
pub fn budget_word(d: Option<Duration>) -> u64 {
    match d {
        None => UNLIMITED,
        Some(d) => u64::try_from(d.as_nanos())
            .unwrap_or(GRACE - 1)
            .min(GRACE - 1),
    }
}

/// What the watchdog decided when a budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The frame that was on top when the watchdog looked.
    pub top: u64,
    /// The lowest frame whose deadline has passed: its call's budget is the
    /// one that ran out.
    pub owner: u64,
}

/// One host thread's record. Written by that thread (levels, depth) and by
/// the watchdog (expiry), read by both.
#[derive(Debug)]
pub struct Meter {
    pub(super) thread: libc::pthread_t,
    pub(super) clock: libc::clockid_t,
    depth: AtomicUsize,
    ids: [AtomicU64; LEVELS],
    budgets: [AtomicU64; LEVELS],
    domains: [AtomicU32; LEVELS],
    /// Per level, written by the watchdog: the frame id it gave a deadline
    /// (0 while being rewritten) and that deadline on the thread's CPU clock.
    seen_ids: [AtomicU64; LEVELS],
    deadlines: [AtomicU64; LEVELS],
    expired_top: AtomicU64,
    expired_owner: AtomicU64,
    /// Publications made (tests prove the hot path publishes).
    publications: AtomicU64,
    /// The whole run was cancelled (`System::cancel`): stop at the next exit.
    cancelled: AtomicBool,
    next_id: AtomicU64,
}

/// The meter could not be made for this thread.
#[derive(Debug, thiserror::Error)]
#[error("no CPU clock for this thread")]
pub struct MeterError(#[source] pub std::io::Error);

impl Meter {
    /// A record for the calling host thread (its pthread id and CPU clock).
    pub fn for_current_thread() -> Result<Self, MeterError> {
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `thread` is this live thread; `clock` is a valid out pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(thread, &mut clock) };
        if rc != 0 {
            return Err(MeterError(std::io::Error::from_raw_os_error(rc)));
        }
        Ok(Self {
            thread,
            clock,
            depth: AtomicUsize::new(0),
            ids: std::array::from_fn(|_| AtomicU64::new(0)),
            budgets: std::array::from_fn(|_| AtomicU64::new(UNLIMITED)),
            domains: std::array::from_fn(|_| AtomicU32::new(0)),
            seen_ids: std::array::from_fn(|_| AtomicU64::new(0)),
            deadlines: std::array::from_fn(|_| AtomicU64::new(UNLIMITED)),
            expired_top: AtomicU64::new(0),
            expired_owner: AtomicU64::new(0),
            publications: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
        })
    }

    /// Level `level` now runs frame `id` of `domain` with budget word
    /// `budget`; levels above it are gone. Stores only.
    pub fn push(&self, level: usize, id: u64, budget: u64, domain: u32) {
        let (Some(i), Some(b), Some(d)) = (
            self.ids.get(level),
            self.budgets.get(level),
            self.domains.get(level),
        ) else {
            return;
        };
        // Budget before id: a reader that sees the new id sees its budget
        // (and re-reads the id to notice a newer frame).
        b.store(budget, Ordering::Relaxed);
        d.store(domain, Ordering::Relaxed);
        i.store(id, Ordering::Release);
        self.depth.store(level + 1, Ordering::Release);
        self.publications.fetch_add(1, Ordering::Relaxed);
    }

    /// Only `depth` levels are live now (a frame returned). A store only.
    pub fn pop_to(&self, depth: usize) {
        self.depth.store(depth.min(LEVELS), Ordering::Release);
        self.publications.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame id never used on this meter before.
    pub fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Publications made so far.
    pub fn publications(&self) -> u64 {
        self.publications.load(Ordering::Relaxed)
    }

    /// Live levels.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    /// Level `level`'s (id, budget word), if it read consistently.
    pub(super) fn level(&self, level: usize) -> Option<(u64, u64)> {
        let id = self.ids.get(level)?.load(Ordering::Acquire);
        let budget = self.budgets.get(level)?.load(Ordering::Relaxed);
        (self.ids.get(level)?.load(Ordering::Acquire) == id).then_some((id, budget))
    }

    /// The watchdog's side: frame `id` at `level` has `deadline` (CPU ns,
    /// or [`UNLIMITED`]). A seqlock-style write: the id is cleared first, so
    /// a reader never pairs an id with another frame's deadline.
    pub(super) fn publish_deadline(&self, level: usize, id: u64, deadline: u64) {
        let (Some(i), Some(d)) = (self.seen_ids.get(level), self.deadlines.get(level)) else {
            return;
        };
        i.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        d.store(deadline, Ordering::Relaxed);
        i.store(id, Ordering::Release);
    }

    /// The deadline the watchdog gave frame `id` at `level`, if it has.
    fn seen_deadline(&self, level: usize, id: u64) -> Option<u64> {
        let (i, d) = (self.seen_ids.get(level)?, self.deadlines.get(level)?);
        let before = i.load(Ordering::Acquire);
        let deadline = d.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = i.load(Ordering::Relaxed);
        (before == id && after == id && id != 0).then_some(deadline)
    }

    /// What remains of the top frame's CPU budget, as a budget word
    /// ([`UNLIMITED`] when no level limits it): the deadline the watchdog
    /// gave the nearest level it has seen, less the CPU time used so far,
    /// capped by the budgets of the younger levels it has not seen yet.
    /// Reads the thread's CPU clock (a system call): for a message-mode
    /// hand-off, which sleeps anyway — never a migrating call's hot path.
    pub fn remaining(&self) -> u64 {
        let mut left = UNLIMITED;
        for level in (0..self.depth().min(LEVELS)).rev() {
            let Some((id, budget)) = self.level(level) else {
                return left;
            };
            if let Some(deadline) = self.seen_deadline(level, id) {
                if deadline != UNLIMITED {
                    if let Some(now) = self.cpu_now() {
                        left = left.min(deadline.saturating_sub(now));
                    }
                }
                return left;
            }
            if budget != UNLIMITED {
                left = left.min(budget & !GRACE);
                if budget & GRACE != 0 {
                    // A grace is not capped by the level below.
                    return left;
                }
            }
        }
        left
    }

    /// The domain ids of the live levels, bottom first (for reports).
    pub fn domains(&self) -> Vec<u32> {
        let depth = self.depth().min(LEVELS);
        self.domains
            .iter()
            .take(depth)
            .map(|d| d.load(Ordering::Relaxed))
            .collect()
    }

    /// Whether the watchdog has found a budget run out (one load: checked
    /// before every run and after every exit).
    pub fn expired(&self) -> bool {
        self.expired_top.load(Ordering::SeqCst) != 0 || self.cancelled.load(Ordering::Relaxed)
    }

    /// Take the watchdog's verdict, if any (the thread then acts on it).
    pub fn take_expiry(&self) -> Option<Expiry> {
        let top = self.expired_top.swap(0, Ordering::SeqCst);
        (top != 0).then(|| Expiry {
            top,
            owner: self.expired_owner.load(Ordering::SeqCst),
        })
    }

    /// Whether the run this thread belongs to was cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Cancel: the thread stops at its next exit (or before its next run).
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// The watchdog's side: record an expiry (before kicking).
    pub(super) fn expire(&self, e: Expiry) -> bool {
        self.expired_owner.store(e.owner, Ordering::SeqCst);
        self.expired_top
            .compare_exchange(0, e.top, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The thread's CPU time so far, in ns (a system call: watchdog only).
    pub(super) fn cpu_now(&self) -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock` is the CPU clock of a thread kept alive by its
        // registration; `ts` is a valid out pointer.
        let rc = unsafe { libc::clock_gettime(self.clock, &mut ts) };
        if rc != 0 {
            return None;
        }
        let s = u64::try_from(ts.tv_sec).ok()?;
        let ns = u64::try_from(ts.tv_nsec).ok()?;
        Some(s.saturating_mul(1_000_000_000).saturating_add(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_words_never_alias_flags() {
        assert_eq!(budget_word(None), UNLIMITED);
        assert_eq!(budget_word(Some(Duration::from_millis(1))), 1_000_000);
        let huge = budget_word(Some(Duration::MAX));
        assert_eq!(huge & GRACE, 0);
        assert_ne!(huge, UNLIMITED);
    }

    #[test]
    fn levels_publish_and_read_back() {
        let m = Meter::for_current_thread().unwrap();
        m.push(0, 7, UNLIMITED, 1);
        m.push(1, 8, 5, 2);
        assert_eq!(m.depth(), 2);
        assert_eq!(m.level(1), Some((8, 5)));
        assert_eq!(m.domains(), vec![1, 2]);
        m.pop_to(1);
        assert_eq!(m.depth(), 1);
        m.push(LEVELS, 9, 5, 2); // ignored, not a panic
        assert_eq!(m.depth(), 1);
        assert!(!m.expired());
        assert!(m.expire(Expiry { top: 8, owner: 8 }));
        assert!(m.expired());
        assert_eq!(m.take_expiry(), Some(Expiry { top: 8, owner: 8 }));
        assert!(!m.expired());
        assert!(m.cpu_now().is_some());
    }

    #[test]
    fn remaining_uses_seen_deadlines_and_unseen_budgets() {
        let m = Meter::for_current_thread().unwrap();
        m.push(0, 1, UNLIMITED, 1);
        assert_eq!(m.remaining(), UNLIMITED, "a root frame has no budget");
        m.push(1, 2, 50_000_000, 2);
        assert_eq!(m.remaining(), 50_000_000, "unseen: its own budget");
        let now = m.cpu_now().unwrap();
        m.publish_deadline(1, 2, now + 20_000_000);
        let left = m.remaining();
        assert!(left <= 20_000_000 && left > 0, "{left}");
        m.push(2, 3, 90_000_000, 3);
        assert!(
            m.remaining() <= 20_000_000,
            "capped by the seen level below"
        );
        m.publish_deadline(1, 2, now);
        assert_eq!(m.remaining(), 0, "the caller's budget is used up");
    }
}
