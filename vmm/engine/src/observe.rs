//! A window on completed calls, so a checker outside the guests (the demo's
//! model of the kv store, its SHA-256 check, its log-line count) judges what
//! really crossed between domains. Off unless installed: with no observer
//! the hot path copies nothing extra and allocates nothing.
//!
//! What an observer gets are the bytes the VMM copied, kept at the moment
//! it copied them (the copy goes through a host buffer that is kept,
//! `thread::copy`): never a later read of guest memory, which a second vCPU
//! of either guest could rewrite in between.

use crate::ids::{DomainId, Slot, ThreadId};
use shared_abi::{ArgMode, ErrorCode, MAX_SCALARS};

/// One object of an observed call.
#[derive(Clone, Debug)]
pub struct ObservedObject {
    /// Its mode.
    pub mode: ArgMode,
    /// The bytes the VMM copied into the callee, as it copied them
    /// (IN/INOUT; empty for OUT).
    pub input: Vec<u8>,
    /// The bytes the VMM copied back into the caller, as it copied them
    /// (OUT/INOUT on success; else empty).
    pub output: Vec<u8>,
}

/// A call that reached its callee and returned. Reported to
/// [`CallObserver::completed`] once its answer is settled for its caller, or
/// to [`CallObserver::undelivered`] when the caller never got it (no OUT
/// bytes then: nothing was copied back).
#[derive(Debug)]
pub struct CallEvent<'a> {
    /// The migrating thread.
    pub thread: ThreadId,
    /// Caller domain id.
    pub caller: DomainId,
    /// The capability slot it used.
    pub slot: Slot,
    /// Callee domain id.
    pub callee: DomainId,
    /// Callee domain name.
    pub callee_name: &'a str,
    /// The callee's generation while it served the call (a domain cannot
    /// restart while a frame is inside it): a referee modelling the
    /// callee's state knows which incarnation answered.
    pub callee_generation: u64,
    /// The entry's name.
    pub entry: &'a str,
    /// The scalars.
    pub scalars: [u64; MAX_SCALARS],
    /// The objects, in descriptor order.
    pub objects: &'a [ObservedObject],
    /// The status word the caller got.
    pub status: u64,
    /// The results the caller got.
    pub results: [u64; 2],
    /// The host thread that ran the callee: the caller's own in migrate
    /// mode, a server's in message mode.
    pub host_thread: std::thread::ThreadId,
}

/// Something that watches calls. Called on the migrating thread, so keep it short.
pub trait CallObserver: Send + Sync {
    /// A call completed (successfully or with an application error).
    fn completed(&self, event: &CallEvent<'_>);
    /// A call was refused by Ferry, its callee faulted, or its callee made
    /// `Exit` from a frame above the thread's bottom (`CalleeExited`).
    fn refused(&self, caller: DomainId, slot: Slot, code: ErrorCode);
    /// The callee returned, but its answer never reached the caller: the
    /// caller's domain went down meanwhile, the caller's budget ran out, or
    /// it stopped waiting. Whatever the callee did happened all the same,
    /// so a referee modelling the callee's state must apply it; `status` is
    /// the word the caller would have got, and no object has OUT bytes.
    fn undelivered(&self, event: &CallEvent<'_>) {
        let _ = event;
    }
}
