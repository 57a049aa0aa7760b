//! CPU budgets and wait limits of a chain's calls: what each new frame
//! asks for, its publication on the thread's meter (atomic stores only),
//! and what happens when the watchdog finds a budget run out.
//!
//! The rule, A → B → C with C running when the budget of the call A made
//! runs out (C inherited it through B):
//! - only the frame running at that moment (C) is stopped: its domain is
//!   quarantined (report vector `BUDGET`) and restarts;
//! - the frames between (B) are resumed one at a time with `Timeout`, each
//!   with one [`GRACE_PERIOD`] of CPU time to clean up and return; a frame
//!   that overruns its grace is stopped in turn, like C;
//! - whatever B returns, A — whose call's budget ran out — gets `Timeout`
//!   (nothing copied back) and carries on with its own budget.
//!
//! A thread's first frame (a manifest thread, a spawned one, `run_thread`)
//! has no budget: a client may legitimately run for as long as it likes
//! (`ferry run --timeout` bounds whole runs). A message-mode server's first
//! frame gets what the hand-off carries: the caller's ask cut to the
//! callee's default and capped by the caller's remaining budget.

use super::{answer_call, Chain, Engine, Frame, Step};
use crate::domain::{Domain, Health};
use crate::fault::FaultReport;
use crate::thread::ThreadResult;
use crate::watch::meter::{budget_word, GRACE, UNLIMITED};
use shared_abi::{pseudo_vector, ErrorCode};
use std::time::{Duration, Instant};

/// CPU time a frame whose budget ran out gets to clean up and return.
pub const GRACE_PERIOD: Duration = Duration::from_millis(10);

/// The limits a new frame runs under.
#[derive(Clone, Copy, Debug)]
pub(super) struct Asked {
    /// Budget word for the meter (the watchdog caps it by the caller's).
    pub(super) budget: u64,
    /// Wall-clock limit of each wait for the callee.
    pub(super) wait: Option<Duration>,
}

/// `asked` µs (0 = none asked) against the domain's `default`: the
/// smaller, or whichever exists.
fn cut(asked_us: u64, default: Option<Duration>) -> Option<Duration> {
    let asked = (asked_us != 0).then(|| Duration::from_micros(asked_us));
    match (asked, default) {
        (Some(a), Some(d)) => Some(a.min(d)),
        (a, d) => a.or(d),
    }
}

impl Asked {
    /// A `Call` into `callee` asking `budget_us` and `wait_us` (`RSI`, `RDX`).
    pub(super) fn call(callee: &Domain, budget_us: u64, wait_us: u64) -> Self {
        Self {
            budget: budget_word(cut(budget_us, callee.limits.budget)),
            wait: cut(wait_us, callee.limits.wait),
        }
    }

    /// A thread's first frame: no budget, the domain's wait limit.
    pub(super) fn root(domain: &Domain) -> Self {
        Self {
            budget: UNLIMITED,
            wait: domain.limits.wait,
        }
    }

    /// A message-mode server's first frame: the budget the hand-off
    /// carries (the caller's ask cut to `domain`'s default, capped by the
    /// caller's remaining budget), and the waits end when the caller stops
    /// waiting (`deadline`), or by `domain`'s wait limit.
    pub(super) fn served(domain: &Domain, budget: u64, deadline: Option<Instant>) -> Self {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let wait = match (left, domain.limits.wait) {
            (Some(l), Some(w)) => Some(l.min(w)),
            (l, w) => l.or(w),
        };
        Self {
            budget: budget.min(budget_word(domain.limits.budget)),
            wait,
        }
    }
}

/// Whether `report` is a frame stopped for its budget.
pub(super) fn is_budget_stop(report: &FaultReport) -> bool {
    report.vector == pseudo_vector::BUDGET
}

impl<'e, E: Engine> Chain<'e, E> {
    /// Push `frame` and publish it with its budget (stores only).
    pub(super) fn push(&mut self, mut frame: Frame<'e>, asked: Asked) {
        if let Some(m) = &self.meter {
            frame.id = m.fresh_id();
            m.push(
                self.frames.len(),
                frame.id,
                asked.budget,
                frame.domain.id.raw(),
            );
        }
        self.frames.push(frame);
    }

    /// Publish frames popped since the last run (a store, when any were).
    pub(super) fn publish_pops(&self) {
        if let Some(m) = &self.meter {
            if m.depth() > self.frames.len() {
                m.pop_to(self.frames.len());
            }
        }
    }

    /// The watchdog flagged this thread: stop the top frame if the budget
    /// that ran out is one of this chain's frames. `None`: a stale verdict
    /// (that frame is gone), go on as if nothing happened.
    pub(super) fn budget_ran_out(&mut self) -> Option<Step> {
        let meter = self.meter.as_ref()?;
        if meter.cancelled() {
            return Some(self.cancelled());
        }
        let expiry = meter.take_expiry()?;
        let hit = self.frames.iter().position(|f| f.id == expiry.top)?;
        let owner = self
            .frames
            .iter()
            .position(|f| f.id == expiry.owner)
            .unwrap_or(hit);
        for f in self.frames.iter_mut().skip(owner) {
            f.timed_out = true;
        }
        let frame = self.frames.pop()?;
        let dom = frame.domain;
        let mut report = FaultReport {
            domain: dom.name.clone(),
            vector: pseudo_vector::BUDGET,
            rip: 0,
            error_code: 0,
            cr2: 0,
            message: Some("stopped: its CPU budget ran out".into()),
            thread: Some(self.thread),
            chain: Vec::new(),
        };
        report.chain = self
            .domains()
            .chain(std::iter::once(dom.id))
            .map(|d| {
                self.engine
                    .domain(d)
                    .map_or_else(|| d.to_string(), |d| d.name.clone())
            })
            .collect();
        self.engine.counters().fault();
        self.engine.counters().budget_expiry();
        dom.quarantine(&report);
        if let (Some(obs), Some(o)) = (self.engine.observer(), &frame.observed) {
            obs.refused(o.caller, o.slot, ErrorCode::Timeout);
        }
        self.release(frame);
        Some(self.resume_timed_out(dom, Some(report)))
    }

    /// The whole run was cancelled (its time limit passed): every frame
    /// goes back to its domain, none is quarantined, and the thread ends.
    fn cancelled(&mut self) -> Step {
        let domain = self.frames.last().map(|f| f.domain.name.clone());
        let chain = self.domains().map(|d| d.to_string()).collect();
        while let Some(f) = self.frames.pop() {
            self.release(f);
        }
        Step::Done(ThreadResult::Faulted(FaultReport {
            domain: domain.unwrap_or_default(),
            vector: pseudo_vector::BUDGET,
            rip: 0,
            error_code: 0,
            cr2: 0,
            message: Some("cancelled: the run's time limit passed".into()),
            thread: Some(self.thread),
            chain,
        }))
    }

    /// A frame under a budget that ran out is gone (stopped, or returned
    /// within its grace). Frames in domains no longer running are popped;
    /// the first frame in a running domain gets `Timeout`, plus its one
    /// grace period if its own budget ran out too (and `callee`'s
    /// generation, as every answer to a call does).
    pub(super) fn resume_timed_out(
        &mut self,
        callee: &Domain,
        report: Option<FaultReport>,
    ) -> Step {
        loop {
            let level = self.frames.len().saturating_sub(1);
            let Some(top) = self.frames.last_mut() else {
                return match report {
                    Some(r) => Step::Done(ThreadResult::Faulted(r)),
                    None => self.lost("a timed-out return with no caller"),
                };
            };
            if top.domain.health() == Health::Running {
                answer_call(
                    &mut top.vcpu,
                    ErrorCode::Timeout as u64,
                    [0; 4],
                    Some(callee),
                );
                if top.timed_out && !top.graced {
                    top.graced = true;
                    if let Some(m) = &self.meter {
                        top.id = m.fresh_id();
                        let word = budget_word(Some(GRACE_PERIOD)) | GRACE;
                        m.push(level, top.id, word, top.domain.id.raw());
                    }
                }
                return Step::Continue;
            }
            if let Some(f) = self.frames.pop() {
                self.release(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_limits_are_cut_to_the_default() {
        let ms = Duration::from_millis;
        assert_eq!(cut(0, Some(ms(5))), Some(ms(5)));
        assert_eq!(cut(2_000, Some(ms(5))), Some(ms(2)));
        assert_eq!(cut(9_000, Some(ms(5))), Some(ms(5)));
        assert_eq!(cut(9_000, None), Some(ms(9)));
        assert_eq!(cut(0, None), None);
    }
}
