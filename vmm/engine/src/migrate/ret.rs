//! The return move: settle the callee's answer for its caller (copy OUT
//! objects back on success, or turn an application error into a status
//! word), give the frame's stack and vCPU back, resume the caller.

use super::{Chain, Engine, Frame, Observed, Pending, Step};
use crate::clock;
use crate::domain::{Domain, Health};
use crate::observe::{CallEvent, ObservedObject};
use crate::thread::copy::{self, Kept};
use crate::thread::profile::CopySample;
use crate::thread::ThreadResult;
use shared_abi::{ErrorCode, APP_ERROR_BASE};
use vm_memory::GuestMemoryMmap;

/// The status word and results a caller gets for application status
/// `status` (non-zero): `APP_ERROR_BASE + status`, no results.
fn app_error(status: u64) -> (u64, [u64; 2]) {
    (APP_ERROR_BASE + status.min(u64::from(u32::MAX)), [0; 2])
}

/// What a caller gets for its callee's `Return`: on success the OUT and
/// INOUT objects are copied back (kept in `keep` as copied, for the
/// observer) and the results pass; on an application error nothing is
/// copied and the status becomes `APP_ERROR_BASE + n`. The caller's domain
/// must be running: nothing is ever copied into a quarantined caller.
fn settle(
    caller: (&GuestMemoryMmap, &Domain),
    frame: &Frame<'_>,
    status: u64,
    results: [u64; 2],
    keep: Option<&mut Kept>,
) -> (u64, [u64; 2]) {
    if status != 0 {
        return app_error(status);
    }
    match copy::copy_out(frame.mem(), caller.0, &frame.plan, frame.top, keep) {
        Ok(()) => (0, results),
        Err(e) => {
            log::error!(
                "copy back into `{}` failed after validation: {e}",
                caller.1.name
            );
            (ErrorCode::BadPointer as u64, [0; 2])
        }
    }
}

impl<'e, E: Engine> Chain<'e, E> {
    /// Give a popped frame's stack and vCPU back to its domain, and count it
    /// out (the last frame out of a quarantined domain resets it). Its
    /// leases are taken back first, on every path that pops a frame (return,
    /// fault, budget, exit, refusal): nothing lent outlives the frame.
    pub(super) fn release(&self, frame: Frame<'_>) {
        self.window_frame_left(&frame);
        let d = frame.domain;
        for lease in frame.leases {
            d.take_back(lease);
        }
        // The vCPU before the stack: a call waiting for a stack takes a vCPU
        // at once, and must find this one idle, not every slot taken (with
        // all 32 stacks in use that was `ENOSPC`, found by the mapped fuzz).
        d.give_vcpu(frame.vcpu);
        d.give_stack(frame.stack);
        d.leave();
    }

    pub(super) fn ret(&mut self, status: u64, results: [u64; 2]) -> Step {
        let Some(mut frame) = self.frames.pop() else {
            return self.lost("return on an empty chain");
        };
        let callee = frame.domain;
        if callee.health() != Health::Running {
            // The domain went down while this frame ran in it: its answer is
            // not trusted. Unwind as if this frame had faulted.
            let report = self.down_report(callee);
            self.release(frame);
            return self.unwind(callee, report);
        }
        let Some(caller) = self.frames.last().map(|f| f.domain) else {
            return self.ret_bottom(frame, status, results);
        };
        if caller.health() != Health::Running {
            // No OUT object goes into a quarantined caller: unwind past it
            // (not counted as a return, as in message mode).
            self.observe_undelivered(&mut frame, status, results);
            let report = self.down_report(caller);
            self.release(frame);
            return self.unwind(callee, report);
        }
        if frame.timed_out {
            // Returned within its grace: its caller's call timed out all the same.
            self.observe_undelivered(&mut frame, status, results);
            self.release(frame);
            return self.resume_timed_out(callee, None);
        }
        self.engine.counters().ret();
        let observed = frame.observed.take();
        let mut outputs = observed.as_ref().map(|_| Kept::new());
        let t_out = clock::now();
        let Some(caller_frame) = self.frames.last() else {
            return self.lost("return without a caller frame");
        };
        let to = (caller_frame.mem(), caller_frame.domain);
        let (word, results) = settle(to, &frame, status, results, outputs.as_mut());
        let out_cycles = clock::now().wrapping_sub(t_out);
        if let Some(w) = self.work.as_mut() {
            w.copy(CopySample::of(
                &frame.plan,
                frame.copy_in_cycles,
                word == 0,
                out_cycles,
            ));
        }
        self.report(&frame, observed, outputs, word, results, true);
        let enter_cycles = frame.enter_cycles;
        self.release(frame);
        let depth = self.frames.len();
        let step = self.resume_caller(callee, word, [results[0], results[1], 0, 0]);
        if self.frames.len() == depth {
            // Answered where it was called (not unwound): a return path.
            self.pending = Pending::Return(enter_cycles);
        }
        step
    }

    /// The bottom frame returned: the thread's first entry (its raw status
    /// is the thread's result), or a served call whose objects go back to a
    /// caller on another host thread (the result carries the caller's
    /// status word, as `settle` made it; a caller whose domain went down
    /// meanwhile gets nothing copied and unwinds, and a caller that stopped
    /// waiting gets nothing copied either: the server must claim the
    /// caller's reply slot before it copies).
    fn ret_bottom(&mut self, mut frame: Frame<'_>, status: u64, results: [u64; 2]) -> Step {
        let (status, results) = match self.served_caller {
            Some(caller) if caller.health() != Health::Running => {
                self.observe_undelivered(&mut frame, status, results);
                let report = self.down_report(caller);
                self.release(frame);
                return Step::Done(ThreadResult::Faulted(report));
            }
            Some(_) if self.ticket.as_ref().is_some_and(|t| !t.claim()) => {
                // The caller stopped waiting (its wait limit passed): it has
                // moved on and its buffers may hold something else now.
                // Nothing is copied; the reply is dropped (`serve` counts it).
                if let (Some(obs), Some(o)) = (self.engine.observer(), &frame.observed) {
                    obs.refused(o.caller, o.slot, ErrorCode::Timeout);
                }
                self.observe_undelivered(&mut frame, status, results);
                self.release(frame);
                return Step::Done(ThreadResult::Returned {
                    status: ErrorCode::Timeout as u64,
                    results: [0; 2],
                });
            }
            Some(caller) => {
                let observed = frame.observed.take();
                let mut outputs = observed.as_ref().map(|_| Kept::new());
                let to = (caller.mem(), caller);
                let (word, results) = settle(to, &frame, status, results, outputs.as_mut());
                self.report(&frame, observed, outputs, word, results, true);
                (word, results)
            }
            None => (status, if status == 0 { results } else { [0; 2] }),
        };
        self.release(frame);
        Step::Done(ThreadResult::Returned { status, results })
    }

    /// Tell the observer about a callee's answer its caller will never get
    /// (the callee's effects happened; nothing is copied back).
    fn observe_undelivered(&self, frame: &mut Frame<'_>, status: u64, results: [u64; 2]) {
        let observed = frame.observed.take();
        let (word, results) = if status == 0 {
            (0, results)
        } else {
            app_error(status)
        };
        self.report(frame, observed, None, word, results, false);
    }

    /// Tell the observer about a call, from the bytes the VMM copied (kept
    /// at the copy), never from guest memory read again: to `completed` when
    /// its answer was `delivered`, else to `undelivered`.
    fn report(
        &self,
        frame: &Frame<'_>,
        observed: Option<Box<Observed>>,
        outputs: Option<Kept>,
        status: u64,
        results: [u64; 2],
        delivered: bool,
    ) {
        let (Some(obs), Some(o)) = (self.engine.observer(), observed) else {
            return;
        };
        let Observed {
            caller,
            slot,
            scalars,
            inputs,
        } = *o;
        let mut outputs = outputs.unwrap_or_default().into_iter();
        let objects: Vec<ObservedObject> = frame
            .plan
            .objects()
            .iter()
            .zip(inputs)
            .map(|(p, input)| ObservedObject {
                mode: p.mode,
                input,
                output: if status == 0 {
                    outputs.next().unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        let callee = frame.domain;
        let event = CallEvent {
            thread: self.thread,
            caller,
            slot,
            callee: callee.id,
            callee_name: &callee.name,
            callee_generation: callee.generation(),
            entry: callee.entry_name(frame.entry),
            scalars,
            objects: &objects,
            status,
            results,
            host_thread: std::thread::current().id(),
        };
        if delivered {
            obs.completed(&event);
        } else {
            obs.undelivered(&event);
        }
    }
}
