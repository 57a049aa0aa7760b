//! Handing a call to another host thread and waiting for its answer: what
//! a migrating thread carries when a message-mode server runs the callee
//! for it. Both IPC paths speak these types; neither names the other.

use super::arglist::ArgPlan;
use super::{Ancestors, ThreadTime};
use crate::fault::FaultReport;
use crate::ids::{DomainId, EntryIndex, Slot, ThreadId};
use shared_abi::{ErrorCode, MAX_SCALARS};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

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
    /// The served frame's CPU budget word (`watch::meter::budget_word`):
    /// what the caller asked, cut to the callee's default, and capped by
    /// the caller's own remaining budget at the hand-off.
    pub budget: u64,
    /// When the caller stops waiting (`None`: never): time queued in the
    /// inbox counts, and the server's own waits end by then too.
    pub deadline: Option<Instant>,
    /// The caller's claim on its reply slot: the server claims the caller's
    /// memory with it before copying, and replies with it.
    pub reply: Ticket,
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
    /// The caller's wait limit passed before the reply (made by the caller
    /// itself, never by a server): the callee is not stopped or blamed, and
    /// its late reply is dropped with nothing copied.
    TimedOut,
}

impl Reply {
    /// Whether the callee was known to be entered (a refusal never was; a
    /// timed-out wait is not counted): both IPC paths count a call only then.
    pub fn entered(&self) -> bool {
        !matches!(self, Self::Refused(_) | Self::TimedOut)
    }
}

/// Where one hand-off's reply stands. Only the ticket's holder acts on a
/// state; a state naming another ticket is a stale hand-off's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// No hand-off in progress.
    #[default]
    Idle,
    /// The caller waits for hand-off `t`; the server has not claimed it.
    Waiting(u64),
    /// The server of hand-off `t` is touching the caller's memory (copying
    /// objects in, or out before its reply): the caller waits for it.
    Busy(u64),
    /// The caller of hand-off `t` gave up (its wait limit passed): the
    /// server copies nothing and its reply is dropped.
    Abandoned(u64),
    /// The reply to hand-off `t` is in the slot.
    Replied(u64),
}

#[derive(Debug, Default)]
struct Inner {
    state: State,
    reply: Option<Reply>,
    next_ticket: u64,
}

/// Where a server puts its reply and the caller waits for it; one per
/// caller chain, reused for every hand-off it makes. Each hand-off gets a
/// fresh [`Ticket`], so a late reply to an abandoned hand-off can never be
/// taken for the answer to the next one.
#[derive(Debug, Default)]
pub struct ReplySlot {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// One hand-off's claim on a [`ReplySlot`]: the caller waits with it, the
/// server claims the caller's memory and replies with it (the handoff
/// carries a copy).
#[derive(Clone, Debug)]
pub struct Ticket {
    slot: Arc<ReplySlot>,
    ticket: u64,
}

impl ReplySlot {
    /// Start a new hand-off: a fresh ticket, the caller waiting. Whatever an
    /// earlier hand-off left (abandoned, or a reply never taken) is void.
    pub fn arm(self: &Arc<Self>) -> Ticket {
        let ticket = match self.inner.lock() {
            Ok(mut g) => {
                g.next_ticket = g.next_ticket.wrapping_add(1);
                g.state = State::Waiting(g.next_ticket);
                g.reply = None;
                g.next_ticket
            }
            // Poisoned: ticket 0 matches no state, so the wait answers
            // `Internal` and the server's reply is dropped.
            Err(_) => 0,
        };
        Ticket {
            slot: Arc::clone(self),
            ticket,
        }
    }
}

impl Ticket {
    /// Apply `f` to the slot's state under its lock (false if poisoned).
    fn with<T>(&self, f: impl FnOnce(&mut Inner, u64) -> T) -> Option<T> {
        let mut g = self.slot.inner.lock().ok()?;
        let out = f(&mut g, self.ticket);
        drop(g);
        self.slot.changed.notify_all();
        Some(out)
    }

    /// Server side: claim the caller's memory before copying into or out of
    /// it. True if the caller still waits for this hand-off (it then waits
    /// for the server too, until [`Ticket::unclaim`] or [`Ticket::put`]);
    /// false if it gave up or moved on: copy nothing.
    pub fn claim(&self) -> bool {
        self.with(|g, t| match g.state {
            State::Waiting(s) | State::Busy(s) if s == t => {
                g.state = State::Busy(t);
                true
            }
            _ => false,
        })
        .unwrap_or(false)
    }

    /// Server side: done with the caller's memory for now (after copying
    /// objects in); the caller's wait limit applies again.
    pub fn unclaim(&self) {
        self.with(|g, t| {
            if g.state == State::Busy(t) {
                g.state = State::Waiting(t);
            }
        });
    }

    /// Server side: deliver the reply and wake the caller. False (the reply
    /// is dropped) if the caller gave up on this hand-off or moved on.
    pub fn put(&self, r: Reply) -> bool {
        self.with(|g, t| match g.state {
            State::Waiting(s) | State::Busy(s) if s == t => {
                g.state = State::Replied(t);
                g.reply = Some(r);
                true
            }
            _ => false,
        })
        .unwrap_or(false)
    }

    /// Caller side: sleep until the server replies, or until `deadline`
    /// (`None`: no limit) passes while the server is not touching the
    /// caller's memory: then the hand-off is abandoned and the answer is
    /// [`Reply::TimedOut`]. If the server holds the caller's memory at the
    /// deadline, the caller waits for its reply (the copy is short and
    /// bounded). A poisoned lock (a VMM bug on the other side) is
    /// `Internal`, never blamed on the callee.
    pub fn wait(&self, deadline: Option<Instant>) -> Reply {
        let Ok(mut g) = self.slot.inner.lock() else {
            return Reply::Refused(ErrorCode::Internal);
        };
        loop {
            let t = self.ticket;
            match g.state {
                State::Replied(s) if s == t => {
                    g.state = State::Idle;
                    return g
                        .reply
                        .take()
                        .unwrap_or(Reply::Refused(ErrorCode::Internal));
                }
                State::Waiting(s) if s == t => {
                    let left = match deadline {
                        None => None,
                        Some(d) => match d.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => Some(left),
                            _ => {
                                g.state = State::Abandoned(t);
                                return Reply::TimedOut;
                            }
                        },
                    };
                    let woke = match left {
                        None => self.slot.changed.wait(g).ok(),
                        Some(left) => self.slot.changed.wait_timeout(g, left).ok().map(|(g, _)| g),
                    };
                    let Some(next) = woke else {
                        return Reply::Refused(ErrorCode::Internal);
                    };
                    g = next;
                }
                State::Busy(s) if s == t => {
                    g = match self.slot.changed.wait(g) {
                        Ok(g) => g,
                        Err(_) => return Reply::Refused(ErrorCode::Internal),
                    };
                }
                // Not this hand-off's state: the slot was not armed for it.
                _ => return Reply::Refused(ErrorCode::Internal),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn returned(r0: u64) -> Reply {
        Reply::Returned {
            status: 0,
            results: [r0, 0],
            time: ThreadTime::default(),
        }
    }

    #[test]
    fn a_reply_in_time_is_delivered() {
        let slot = Arc::new(ReplySlot::default());
        let t = slot.arm();
        assert!(t.claim() && t.put(returned(7)));
        assert!(matches!(
            t.wait(None),
            Reply::Returned {
                results: [7, 0],
                ..
            }
        ));
    }

    #[test]
    fn an_abandoned_hand_off_is_never_claimed_and_its_reply_never_reused() {
        let slot = Arc::new(ReplySlot::default());
        let late = slot.arm();
        let past = Instant::now();
        assert!(matches!(late.wait(Some(past)), Reply::TimedOut));
        // The late server may not copy, and its reply is dropped.
        assert!(!late.claim());
        assert!(!late.put(returned(1)));
        // The next hand-off gets its own answer; the stale ticket is void.
        let next = slot.arm();
        assert!(!late.put(returned(1)));
        assert!(next.put(returned(2)));
        assert!(matches!(
            next.wait(None),
            Reply::Returned {
                results: [2, 0],
                ..
            }
        ));
    }

    #[test]
    fn a_caller_past_its_limit_waits_for_a_server_that_is_copying() {
        let slot = Arc::new(ReplySlot::default());
        let t = slot.arm();
        assert!(t.claim());
        let server = t.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            assert!(server.put(returned(3)));
        });
        // The deadline has passed, but the server holds the caller's memory.
        let r = t.wait(Some(Instant::now()));
        assert!(
            matches!(
                r,
                Reply::Returned {
                    results: [3, 0],
                    ..
                }
            ),
            "{r:?}"
        );
        h.join().unwrap();
    }

    #[test]
    fn a_copy_in_claim_is_given_back() {
        let slot = Arc::new(ReplySlot::default());
        let t = slot.arm();
        assert!(t.claim());
        t.unclaim();
        assert!(matches!(t.wait(Some(Instant::now())), Reply::TimedOut));
        assert!(!t.claim());
    }
}
