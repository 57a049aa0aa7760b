//! Handing a call to another host thread and waiting for its answer: what
//! a migrating thread carries when a message-mode server runs the callee
//! for it. Both IPC paths speak these types; neither names the other.

use super::arglist::ArgPlan;
use super::{Ancestors, ThreadTime};
use crate::fault::FaultReport;
use crate::ids::{DomainId, EntryIndex, Slot, ThreadId};
use shared_abi::{ErrorCode, MAX_SCALARS};
use std::sync::{Condvar, Mutex};

/// One validated call, as a server receives it.
#[derive(Clone, Debug)]
pub struct Handoff {
    /// The migrating thread (the callee sees the same identity).
    pub thread: ThreadId,
    /// The calling domain.
    pub caller: DomainId,
    /// The caller's capability slot.
    pub slot: Slot,
    /// The entry in the callee.
    pub entry: EntryIndex,
    /// The validated argument list (caller ranges).
    pub plan: ArgPlan,
    /// Scalars.
    pub scalars: [u64; MAX_SCALARS],
    /// Domains the thread is already in on other host threads.
    pub ancestors: Ancestors,
}

/// How a handed-off call ended, as its caller learns it.
#[derive(Debug)]
pub enum Reply {
    /// The callee returned; `status` is the caller's status word, and OUT
    /// objects are already copied back.
    Returned {
        /// Status word (0 or `APP_ERROR_BASE + n`).
        status: u64,
        /// Results.
        results: [u64; 2],
        /// The server's time on the caller's behalf.
        time: ThreadTime,
    },
    /// Ferry refused it before the callee ran.
    Refused(ErrorCode),
    /// The callee (or a domain it called) faulted, or a domain the served
    /// chain was in went down; the report is the thread's own to see
    /// (`DOMAIN_DOWN` and no registers when another thread's call brought
    /// the domain down).
    Fault(FaultReport),
    /// The served bottom frame made `Exit`, which only a thread's bottom
    /// frame may: that frame is gone, the callee keeps serving, and the
    /// caller resumes with `CalleeExited`.
    Exited,
}

impl Reply {
    /// Whether the callee was entered (a refusal never was): both IPC paths
    /// count a call only then.
    pub fn entered(&self) -> bool {
        !matches!(self, Self::Refused(_))
    }
}

/// Where a server puts its reply and the caller waits for it; one per
/// caller chain, reused for every hand-off it makes.
#[derive(Debug, Default)]
pub struct ReplySlot {
    reply: Mutex<Option<Reply>>,
    ready: Condvar,
}

impl ReplySlot {
    /// Deliver the reply and wake the caller.
    pub fn put(&self, r: Reply) {
        match self.reply.lock() {
            Ok(mut slot) => {
                *slot = Some(r);
                self.ready.notify_one();
            }
            Err(_) => log::error!("a reply slot's lock is poisoned; the reply is lost"),
        }
    }

    /// Sleep until the server replies. A poisoned lock (a VMM bug on the
    /// other side) is `Internal`, never blamed on the callee's stacks.
    pub fn wait(&self) -> Reply {
        let Ok(mut slot) = self.reply.lock() else {
            return Reply::Refused(ErrorCode::Internal);
        };
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = match self.ready.wait(slot) {
                Ok(s) => s,
                Err(_) => return Reply::Refused(ErrorCode::Internal),
            };
        }
    }
}
