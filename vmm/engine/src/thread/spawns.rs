//! Spawned threads' bookkeeping, shared by the `Spawn` hypercall and the run
//! loop that starts and reclaims their host threads.
//!
//! - [`SpawnGate`]: a spawn is accepted only while a run can still start it,
//!   and the run decides to end under the same lock, so an accepted spawn
//!   always reaches the run loop (which starts it or reports it
//!   `NotStarted`). It also bounds the spawned threads of the whole VMM
//!   that are accepted and not yet reclaimed (joined).
//! - [`KeptOutcomes`]: the outcomes of a run, bounded: every manifest
//!   thread's, the last [`KEPT_SPAWNED_OUTCOMES`] spawned threads', and a
//!   [`SpawnTally`] counting all of them.

use super::ThreadResult;
use shared_abi::ErrorCode;
use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Outcomes of spawned threads a run keeps in full (the newest ones); all
/// are counted in its [`SpawnTally`]. A server that spawns forever must not
/// grow the VMM; a test or `ferry run` rarely needs more than the last few.
pub const KEPT_SPAWNED_OUTCOMES: usize = 1024;

/// What the gate guards: where accepted spawns go, and how many are out.
#[derive(Debug)]
struct GateState<T> {
    /// The run loop's queue; `None` outside a run and once it decided to end.
    tx: Option<Sender<T>>,
    /// Spawned threads accepted and not yet reclaimed (VMM-wide).
    live: u32,
}

/// Admits spawns while a run is open, within a VMM-wide limit; the run
/// loop closes it only when no accepted spawn is outstanding.
#[derive(Debug)]
pub struct SpawnGate<T> {
    state: Mutex<GateState<T>>,
    limit: u32,
}

impl<T> SpawnGate<T> {
    /// A closed gate admitting at most `limit` spawned threads at once.
    pub fn new(limit: u32) -> Self {
        Self {
            state: Mutex::new(GateState { tx: None, live: 0 }),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState<T>> {
        // The state is two plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A run starts: accepted spawns go to `tx` from now on.
    pub fn open(&self, tx: Sender<T>) {
        self.lock().tx = Some(tx);
    }

    /// Accept one spawn: `make` builds the request (and may refuse it,
    /// e.g. over the domain's own quota); it is queued under the gate's lock
    /// and counted until [`SpawnGate::release`]. `QuotaExceeded` outside a
    /// run or at the VMM-wide limit. If the queue is gone, `undo` gets the
    /// request back to give back what `make` took.
    pub fn admit(
        &self,
        make: impl FnOnce() -> Result<T, ErrorCode>,
        undo: impl FnOnce(T),
    ) -> Result<(), ErrorCode> {
        let mut state = self.lock();
        if state.live >= self.limit {
            return Err(ErrorCode::QuotaExceeded);
        }
        let Some(tx) = state.tx.as_ref() else {
            return Err(ErrorCode::QuotaExceeded);
        };
        let request = make()?;
        if let Err(back) = tx.send(request) {
            undo(back.0);
            return Err(ErrorCode::QuotaExceeded);
        }
        state.live += 1;
        Ok(())
    }

    /// An accepted spawn was reclaimed (its host thread joined) or reported
    /// `NotStarted`.
    pub fn release(&self) {
        let mut state = self.lock();
        state.live = state.live.saturating_sub(1);
    }

    /// Close the gate if no accepted spawn is outstanding: the run loop's
    /// decision to end, atomic with respect to [`SpawnGate::admit`].
    pub fn close_if_idle(&self) -> bool {
        let mut state = self.lock();
        if state.live == 0 {
            state.tx = None;
            true
        } else {
            false
        }
    }

    /// Close the gate whatever is outstanding (the run loop is leaving).
    pub fn close(&self) {
        self.lock().tx = None;
    }

    /// Spawned threads accepted and not yet reclaimed.
    pub fn live(&self) -> u32 {
        self.lock().live
    }
}

/// How the spawned threads of a run ended, all of them counted (their
/// outcomes beyond the last [`KEPT_SPAWNED_OUTCOMES`] are not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpawnTally {
    /// Spawned threads that ended (or never started).
    pub ended: u64,
    /// Returned status 0 or exited with code 0.
    pub succeeded: u64,
    /// Faulted.
    pub faulted: u64,
    /// Did not start.
    pub not_started: u64,
    /// Anything else: an error status or exit code, or lost by the VMM.
    pub other: u64,
    /// Outcomes not kept in full (older than the last [`KEPT_SPAWNED_OUTCOMES`]).
    pub forgotten: u64,
}

impl SpawnTally {
    fn count(&mut self, result: &ThreadResult) {
        self.ended += 1;
        match result {
            ThreadResult::Returned { status: 0, .. } | ThreadResult::Exited { code: 0 } => {
                self.succeeded += 1;
            }
            ThreadResult::Faulted(_) => self.faulted += 1,
            ThreadResult::NotStarted(_) => self.not_started += 1,
            _ => self.other += 1,
        }
    }
}

/// A run's outcomes as they come in: every manifest thread's, the newest
/// [`KEPT_SPAWNED_OUTCOMES`] spawned threads', and the tally of all spawned.
#[derive(Debug)]
pub struct KeptOutcomes<T> {
    fixed: Vec<T>,
    spawned: VecDeque<T>,
    tally: SpawnTally,
}

impl<T> Default for KeptOutcomes<T> {
    fn default() -> Self {
        Self {
            fixed: Vec::new(),
            spawned: VecDeque::new(),
            tally: SpawnTally::default(),
        }
    }
}

impl<T> KeptOutcomes<T> {
    /// A manifest thread's outcome (always kept).
    pub fn push_fixed(&mut self, outcome: T) {
        self.fixed.push(outcome);
    }

    /// A spawned thread's outcome: counted, kept while among the newest.
    pub fn push_spawned(&mut self, outcome: T, result: &ThreadResult) {
        self.tally.count(result);
        if self.spawned.len() >= KEPT_SPAWNED_OUTCOMES {
            self.spawned.pop_front();
            self.tally.forgotten += 1;
        }
        self.spawned.push_back(outcome);
    }

    /// Every kept outcome (manifest threads first) and the tally.
    pub fn into_parts(self) -> (Vec<T>, SpawnTally) {
        let mut all = self.fixed;
        all.extend(self.spawned);
        (all, self.tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn the_gate_admits_within_its_limit_and_closes_only_when_idle() {
        let gate = SpawnGate::new(2);
        assert_eq!(gate.admit(|| Ok(1), |_| {}), Err(ErrorCode::QuotaExceeded));
        let (tx, rx) = channel();
        gate.open(tx);
        assert_eq!(gate.admit(|| Ok(1), |_| {}), Ok(()));
        assert_eq!(
            gate.admit(|| Err(ErrorCode::NoSuchEntry), |_| {}),
            Err(ErrorCode::NoSuchEntry)
        );
        assert_eq!(gate.admit(|| Ok(2), |_| {}), Ok(()));
        assert_eq!(gate.admit(|| Ok(3), |_| {}), Err(ErrorCode::QuotaExceeded));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
        assert!(!gate.close_if_idle());
        gate.release();
        gate.release();
        assert!(gate.close_if_idle());
        assert_eq!(gate.admit(|| Ok(4), |_| {}), Err(ErrorCode::QuotaExceeded));
        assert_eq!(gate.live(), 0);
    }

    #[test]
    fn a_closed_queue_gives_the_request_back() {
        let gate = SpawnGate::new(2);
        let (tx, rx) = channel();
        gate.open(tx);
        drop(rx);
        let mut back = None;
        assert_eq!(
            gate.admit(|| Ok(9), |r| back = Some(r)),
            Err(ErrorCode::QuotaExceeded)
        );
        assert_eq!(back, Some(9));
        assert_eq!(gate.live(), 0);
    }

    #[test]
    fn kept_outcomes_are_bounded_and_all_counted() {
        let mut kept = KeptOutcomes::default();
        kept.push_fixed(0usize);
        let ok = ThreadResult::Returned {
            status: 0,
            results: [0; 2],
        };
        let n = KEPT_SPAWNED_OUTCOMES + 10;
        for i in 1..=n {
            kept.push_spawned(i, &ok);
        }
        let (all, tally) = kept.into_parts();
        assert_eq!(all.len(), 1 + KEPT_SPAWNED_OUTCOMES);
        assert_eq!(all.first(), Some(&0));
        assert_eq!(all.last(), Some(&n));
        assert_eq!(tally.ended, n as u64);
        assert_eq!(tally.succeeded, n as u64);
        assert_eq!(tally.forgotten, 10);
    }
}
