//! The engine's counters: relaxed atomics, cheap on the hot path and exact
//! once the threads that bumped them have been joined. Both IPC paths count
//! alike: a call counts once it has entered its callee, a refusal once.

use shared_abi::ErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};

/// Room for every [`ErrorCode`] value (codes are small; larger ones are not counted).
const CODES: usize = 32;

/// What the engine has done so far.
#[derive(Debug, Default)]
pub struct Counters {
    calls: AtomicU64,
    returns: AtomicU64,
    faults: AtomicU64,
    late_replies: AtomicU64,
    budget_expiries: AtomicU64,
    refused: [AtomicU64; CODES],
}

impl Counters {
    /// A call entered its callee.
    pub fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A callee's answer came back to its caller.
    pub fn ret(&self) {
        self.returns.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame faulted.
    pub fn fault(&self) {
        self.faults.fetch_add(1, Ordering::Relaxed);
    }

    /// A message-mode server finished a call whose caller had stopped
    /// waiting (its wait limit passed): nothing was copied, the reply dropped.
    pub fn late_reply(&self) {
        self.late_replies.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame was stopped because its CPU budget ran out (its caller got
    /// `Timeout`; wait-limit expiries are counted as `Timeout` refusals).
    pub fn budget_expiry(&self) {
        self.budget_expiries.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames stopped because their CPU budget ran out.
    pub fn budget_expiries(&self) -> u64 {
        self.budget_expiries.load(Ordering::Relaxed)
    }

    /// Replies dropped because their caller had stopped waiting.
    pub fn late_replies(&self) -> u64 {
        self.late_replies.load(Ordering::Relaxed)
    }

    /// A call or hypercall was refused with `code`.
    pub fn refuse(&self, code: ErrorCode) {
        if let Some(c) = self.refused.get(code as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls that entered their callee.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Returns that came back to a caller.
    pub fn returns(&self) -> u64 {
        self.returns.load(Ordering::Relaxed)
    }

    /// Faults (each kills a domain, or hits an already dead one).
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Calls refused with `code`.
    pub fn refused(&self, code: ErrorCode) -> u64 {
        self.refused
            .get(code as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}
