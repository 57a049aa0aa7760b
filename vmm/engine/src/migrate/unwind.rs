//! Taking frames off a chain when it cannot return normally: a fault in the
//! top frame (its domain is quarantined), a callee that answered from a
//! domain that meanwhile went down, and `Exit`.
//!
//! Two rules hold here. **Fault reports are private**: vector, RIP, error
//! code and CR2 reach only the thread whose call faulted; a thread unwound
//! because a domain it was in went down during *another* thread's call
//! learns only that (`pseudo_vector::DOMAIN_DOWN`, no registers).
//! **Only the bottom frame may `Exit`**: from any other frame `Exit` ends
//! just that frame and the frame below resumes with `CalleeExited`.

use super::{answer_call, Chain, Engine, Step};
use crate::domain::{Domain, Health};
use crate::fault::FaultReport;
use crate::thread::ThreadResult;
use shared_abi::{pseudo_vector, ErrorCode};

fn fault_values(f: &FaultReport) -> [u64; 4] {
    [f.vector, f.rip, f.error_code, f.cr2]
}

/// What a thread unwound out of a domain that went down during another
/// thread's call gets to know (and, if the unwinding reaches its bottom
/// frame, what its `ThreadResult::Faulted` holds): the domain's name and
/// that it went down, nothing of the other call.
const DOMAIN_DOWN_MESSAGE: &str =
    "the domain went down during another thread's call (that call's report is in the VMM's log)";

impl<'e, E: Engine> Chain<'e, E> {
    /// Mark a fault report with this thread and its invocation chain.
    fn stamp(&self, report: &mut FaultReport) {
        report.thread = Some(self.thread);
        let name = |d| {
            self.engine
                .domain(d)
                .map_or_else(|| d.to_string(), |d| d.name.clone())
        };
        report.chain = self
            .ancestors
            .as_slice()
            .iter()
            .copied()
            .chain(self.domains())
            .map(name)
            .collect();
    }

    /// Why this thread is unwound out of `domain`, which is not running:
    /// the domain's report if this thread's own call brought it down, else
    /// only that it went down (`DOMAIN_DOWN`, RIP, error code and CR2 0).
    pub(super) fn down_report(&self, domain: &Domain) -> FaultReport {
        let report = domain.fault_or_stopped();
        if report.thread == Some(self.thread) {
            return report;
        }
        let mut down = FaultReport {
            domain: domain.name.clone(),
            vector: pseudo_vector::DOMAIN_DOWN,
            rip: 0,
            error_code: 0,
            cr2: 0,
            message: Some(DOMAIN_DOWN_MESSAGE.to_owned()),
            thread: None,
            chain: Vec::new(),
        };
        self.stamp(&mut down);
        down
    }

    /// The top frame faulted: quarantine its domain and unwind.
    pub(super) fn fault(&mut self, mut report: FaultReport) -> Step {
        self.stamp(&mut report);
        self.engine.counters().fault();
        let Some(frame) = self.frames.pop() else {
            return self.lost("fault on an empty chain");
        };
        let domain = frame.domain;
        domain.quarantine(&report);
        if let (Some(obs), Some(o)) = (self.engine.observer(), &frame.observed) {
            obs.refused(o.caller, o.slot, ErrorCode::Fault);
        }
        self.release(frame);
        self.unwind(domain, report)
    }

    /// Pop every frame in a domain that is not running; the first frame in
    /// a running domain gets `Fault` with `report`, and R8 = the generation
    /// of the domain it called (`callee`, or the last frame popped). With
    /// no such frame the chain ends `Faulted(report)`.
    pub(super) fn unwind(&mut self, mut callee: &'e Domain, report: FaultReport) -> Step {
        loop {
            let Some(top) = self.frames.last_mut() else {
                return Step::Done(ThreadResult::Faulted(report));
            };
            if top.domain.health() == Health::Running {
                answer_call(
                    &mut top.vcpu,
                    ErrorCode::Fault as u64,
                    fault_values(&report),
                    Some(callee),
                );
                return Step::Continue;
            }
            if let Some(f) = self.frames.pop() {
                callee = f.domain;
                self.release(f);
            }
        }
    }

    /// Resume the top frame, whose call into `callee` ended, with `status`
    /// and `values` — unless its own domain went down meanwhile: then
    /// nothing is answered there and the chain unwinds past it.
    pub(super) fn resume_caller(
        &mut self,
        callee: &'e Domain,
        status: u64,
        values: [u64; 4],
    ) -> Step {
        let Some(caller) = self.frames.last().map(|f| f.domain) else {
            return self.lost("an answer for an empty chain");
        };
        if caller.health() != Health::Running {
            let report = self.down_report(caller);
            return self.unwind(callee, report);
        }
        if let Some(top) = self.frames.last_mut() {
            answer_call(&mut top.vcpu, status, values, Some(callee));
        }
        Step::Continue
    }

    /// `Exit`. From the thread's bottom frame it ends the thread: every
    /// frame goes back to its domain. From any other frame — a served
    /// chain's bottom frame too, whose caller waits on another host thread —
    /// it ends only that frame: its stack and vCPU go back (the vCPU's
    /// registers are reset before it runs again), its domain keeps serving,
    /// and the frame below resumes with `CalleeExited`. A frame whose domain
    /// went down meanwhile is not trusted: the chain unwinds as after a
    /// `Return` from it.
    pub(super) fn exit(&mut self, code: u64) -> Step {
        if self.frames.len() <= 1 && self.served_caller.is_none() {
            while let Some(f) = self.frames.pop() {
                self.release(f);
            }
            return Step::Done(ThreadResult::Exited { code });
        }
        let Some(mut frame) = self.frames.pop() else {
            return self.lost("exit on an empty chain");
        };
        let callee = frame.domain;
        log::debug!(
            "[{}] {}: Exit({code}) from a frame above the bottom: that frame ends, its caller gets CalleeExited",
            callee.name,
            self.thread
        );
        frame.vcpu.mark_dirty();
        if let (Some(obs), Some(o)) = (self.engine.observer(), &frame.observed) {
            obs.refused(o.caller, o.slot, ErrorCode::CalleeExited);
        }
        let running = callee.health() == Health::Running;
        self.release(frame);
        if !running {
            let report = self.down_report(callee);
            return self.unwind(callee, report);
        }
        if self.frames.is_empty() {
            // A served chain: the caller, on another host thread, gets
            // `CalleeExited` from the reply.
            return Step::Done(ThreadResult::Exited { code });
        }
        self.resume_caller(callee, ErrorCode::CalleeExited as u64, [0; 4])
    }
}
