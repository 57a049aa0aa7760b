//! A handed-off call, run for a message-mode server: the bottom frame's
//! objects come from, and go back to, a caller waiting on another host
//! thread. The message layer calls this through the handler the system
//! gives it, never by name.

use super::{Asked, Caller, Chain, Engine};
use crate::domain::Domain;
use crate::thread::handoff::{Handoff, Reply};
use crate::thread::ThreadResult;
use shared_abi::ErrorCode;

impl<'e, E: Engine> Chain<'e, E> {
    /// Run `call` in `domain` on this (server) host thread; the answer for
    /// the waiting caller.
    pub fn serve(engine: &'e E, domain: &'e Domain, call: &Handoff) -> Reply {
        let Some(caller) = engine.domain(call.caller) else {
            debug_assert!(false, "a hand-off from an unknown domain");
            return Reply::Refused(ErrorCode::Internal);
        };
        let mut chain = Chain::new(engine, call.thread, call.ancestors.clone(), Some(caller));
        chain.ticket = Some(call.reply.clone());
        let from = Caller {
            domain: caller,
            slot: call.slot,
        };
        let asked = Asked::served(domain, call.budget, call.deadline);
        match chain.enter(
            domain,
            Some(from),
            call.entry,
            call.plan.clone(),
            call.scalars,
            asked,
        ) {
            Ok(frame) => chain.push(frame, asked),
            Err(code) => {
                if !call.reply.claim() {
                    engine.counters().late_reply();
                }
                return Reply::Refused(code);
            }
        }
        let reply = match chain.run_to_end() {
            // A served chain's result already carries the caller's status word.
            ThreadResult::Returned { status, results } => Reply::Returned {
                status,
                results,
                time: chain.time,
            },
            // The served call itself ran out of its CPU budget: the
            // caller's call timed out (see `budget.rs`).
            ThreadResult::Faulted(report) if super::budget::is_budget_stop(&report) => {
                Reply::Refused(ErrorCode::Timeout)
            }
            ThreadResult::Faulted(report) => Reply::Fault(report),
            ThreadResult::Exited { .. } => Reply::Exited,
            ThreadResult::NotStarted(_) | ThreadResult::Lost(_) => {
                Reply::Refused(ErrorCode::Internal)
            }
        };
        // Claimed before the reply goes: the caller, if it still waits,
        // now waits for this reply whatever its limit; if it stopped
        // waiting, nothing was copied into it and the reply is dropped.
        if !call.reply.claim() {
            engine.counters().late_reply();
            log::debug!(
                "[{}] {}: the caller stopped waiting; reply dropped, nothing copied",
                domain.name,
                call.thread
            );
        }
        reply
    }
}
