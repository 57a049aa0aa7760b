//! The return move: settle the callee's answer for its caller (copy OUT
//! objects back on success, or turn an application error into a status
//! word), give the frame's stack and vCPU back, resume the caller.

use super::{answer, Chain, Engine, Frame, Pending, Step};
use crate::clock;
use crate::domain::{Domain, Health};
use crate::observe::{CallEvent, ObservedObject};
use crate::thread::copy;
use crate::thread::profile::CopySample;
use crate::thread::ThreadResult;
use shared_abi::{ErrorCode, APP_ERROR_BASE};

/// What a caller gets for its callee's `Return`: on success the OUT and
/// INOUT objects are copied back and the results pass; on an application
/// error nothing is copied and the status becomes `APP_ERROR_BASE + n`.
fn settle(caller: &Domain, frame: &Frame<'_>, status: u64, results: [u64; 2]) -> (u64, [u64; 2]) {
    if status != 0 {
        return (APP_ERROR_BASE + status.min(u64::from(u32::MAX)), [0; 2]);
    }
    match copy::copy_out(frame.domain.mem(), caller.mem(), &frame.plan, frame.top) {
        Ok(()) => (0, results),
        Err(e) => {
            log::error!(
                "copy back into `{}` failed after validation: {e}",
                caller.name
            );
            (ErrorCode::BadPointer as u64, [0; 2])
        }
    }
}

impl<E: Engine> Chain<'_, E> {
    /// Give a popped frame's stack and vCPU back to its domain, and count it
    /// out (the last frame out of a quarantined domain resets it).
    pub(super) fn release(frame: Frame<'_>) {
        let d = frame.domain;
        d.give_stack(frame.stack);
        d.give_vcpu(frame.vcpu);
        d.leave();
    }

    pub(super) fn ret(&mut self, status: u64, results: [u64; 2]) -> Step {
        let Some(frame) = self.frames.pop() else {
            return self.lost("return on an empty chain");
        };
        let callee = frame.domain;
        if callee.health() != Health::Running {
            // The domain faulted while this frame ran in it: its answer is
            // not trusted. Unwind as if this frame had faulted.
            let report = callee.fault_or_stopped();
            Self::release(frame);
            return self.unwind(report);
        }
        let Some(caller) = self.frames.last().map(|f| f.domain) else {
            return self.ret_bottom(frame, status, results);
        };
        if frame.timed_out {
            // Returned within its grace: its caller's call timed out all the same.
            Self::release(frame);
            return self.resume_timed_out(None);
        }
        self.engine.counters().ret();
        let t_out = clock::now();
        let (word, results) = settle(caller, &frame, status, results);
        let out_cycles = clock::now().wrapping_sub(t_out);
        if let Some(w) = self.work.as_mut() {
            w.copy(CopySample::of(
                &frame.plan,
                frame.copy_in_cycles,
                word == 0,
                out_cycles,
            ));
        }
        self.observe_return(&frame, word, results);
        let enter_cycles = frame.enter_cycles;
        Self::release(frame);
        if caller.health() != Health::Running {
            return self.unwind(caller.fault_or_stopped());
        }
        if let Some(caller_frame) = self.frames.last_mut() {
            answer(&mut caller_frame.vcpu, word, [results[0], results[1], 0, 0]);
        }
        self.pending = Pending::Return(enter_cycles);
        Step::Continue
    }

    /// The bottom frame returned: the thread's first entry (its raw status
    /// is the thread's result), or a served call whose objects go back to a
    /// caller on another host thread (the result carries the caller's
    /// status word, as `settle` made it).
    fn ret_bottom(&mut self, frame: Frame<'_>, status: u64, results: [u64; 2]) -> Step {
        let (status, results) = match self.served_caller {
            Some(caller) => {
                let (word, results) = settle(caller, &frame, status, results);
                self.observe_return(&frame, word, results);
                (word, results)
            }
            None => (status, if status == 0 { results } else { [0; 2] }),
        };
        Self::release(frame);
        Step::Done(ThreadResult::Returned { status, results })
    }

    fn observe_return(&self, frame: &Frame<'_>, status: u64, results: [u64; 2]) {
        let (Some(obs), Some(o)) = (self.engine.observer(), &frame.observed) else {
            return;
        };
        let callee = frame.domain;
        let objects: Vec<ObservedObject> = frame
            .plan
            .objects()
            .iter()
            .zip(&o.inputs)
            .map(|(p, input)| ObservedObject {
                mode: p.mode,
                input: input.clone(),
                output: if status == 0 && p.mode.copies_out() {
                    callee
                        .read_bytes(frame.top - p.offset_from_top, p.len())
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        obs.completed(&CallEvent {
            thread: self.thread,
            caller: o.caller,
            slot: o.slot,
            callee: callee.id,
            callee_name: &callee.name,
            entry: callee.entry_name(frame.entry),
            scalars: o.scalars,
            objects: &objects,
            status,
            results,
            host_thread: std::thread::current().id(),
        });
    }
}
