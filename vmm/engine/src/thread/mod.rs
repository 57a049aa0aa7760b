//! The thread layer: what a migrating thread is and carries wherever it
//! runs — its result, its time account, the domains it is already in on
//! other host threads, its depth limit — and the pieces every IPC path
//! shares: the argument-list validator and copier, the capability table,
//! the engine's counters, profiling samples and the hand-off of a call to
//! another host thread.

pub mod arglist;
pub mod caps;
pub mod copy;
pub mod counters;
pub mod handoff;
pub mod profile;
pub mod spawns;

use crate::fault::FaultReport;
use crate::ids::DomainId;
use arrayvec::ArrayVec;
use shared_abi::ErrorCode;

/// Deepest invocation chain a thread may build, counted across every host
/// thread it spans (message-mode hops included).
pub const MAX_DEPTH: usize = 64;

/// Why a thread never ran a single instruction.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotStarted {
    #[error("no entry `{entry}` in domain `{domain}`")]
    NoSuchEntry {
        /// The domain asked for.
        domain: String,
        /// The entry asked for.
        entry: String,
    },
    #[error("domain `{domain}` refused it: {code:?}")]
    Refused {
        /// The domain.
        domain: String,
        /// What it answered.
        code: ErrorCode,
    },
    #[error("no host thread could be started for it")]
    NoHostThread,
    #[error("its host thread panicked")]
    Panicked,
    #[error("its host thread could not be confined by seccomp")]
    NoSandbox,
    #[error("no stack-window slot is free (every one is lent to a live thread)")]
    NoWindowSlot,
}

/// How a thread's first invocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadResult {
    /// Its first entry returned `status` (0 = success) and two results.
    Returned {
        /// The entry's status.
        status: u64,
        /// Its results.
        results: [u64; 2],
    },
    /// It made the `Exit` hypercall.
    Exited {
        /// The exit code.
        code: u64,
    },
    /// A fault unwound its whole chain.
    Faulted(FaultReport),
    /// It could not start.
    NotStarted(NotStarted),
    /// The engine lost track of it: a VMM bug, logged where it happened.
    Lost(&'static str),
}

/// Where a migrating thread's time went (host TSC cycles). The thread
/// keeps one account wherever it migrates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadTime {
    /// Inside `KVM_RUN`: guest code plus the exits themselves.
    pub guest_cycles: u64,
    /// In the VMM between one `KVM_RUN` and the next.
    pub vmm_cycles: u64,
    /// `KVM_RUN`s made.
    pub runs: u64,
    /// Calls that entered a callee.
    pub calls: u64,
}

impl ThreadTime {
    /// Add what a server did on this thread's behalf (its VMM time is the
    /// server's own, not the caller's).
    pub fn absorb_served(&mut self, served: &ThreadTime) {
        self.guest_cycles += served.guest_cycles;
        self.runs += served.runs;
        self.calls += served.calls;
    }
}

/// The domains a migrating thread is already in on other host threads (its
/// callers, when it reached a server through message passing), outermost
/// first. Fixed capacity: carrying it allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ancestors(ArrayVec<DomainId, MAX_DEPTH>);

impl Ancestors {
    /// `self` followed by `more`, cut at [`MAX_DEPTH`] (a deeper chain is
    /// refused with `TooDeep` before it could need more).
    pub fn extended(&self, more: impl Iterator<Item = DomainId>) -> Self {
        let mut out = self.clone();
        for d in more {
            if out.0.try_push(d).is_err() {
                break;
            }
        }
        out
    }

    /// The domains, outermost first.
    pub fn as_slice(&self) -> &[DomainId] {
        &self.0
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (the thread started on this host thread).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
