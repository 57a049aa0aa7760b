//! Taking frames off a chain when it cannot return normally: a fault in the
//! top frame (its domain is quarantined), a callee that answered from a
//! domain that meanwhile went down, and `Exit`.

use super::{answer, Chain, Engine, Step};
use crate::domain::Health;
use crate::fault::FaultReport;
use crate::thread::ThreadResult;
use shared_abi::ErrorCode;

fn fault_values(f: &FaultReport) -> [u64; 4] {
    [f.vector, f.rip, f.error_code, f.cr2]
}

impl<E: Engine> Chain<'_, E> {
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

    /// The top frame faulted: quarantine its domain and unwind.
    pub(super) fn fault(&mut self, mut report: FaultReport) -> Step {
        self.stamp(&mut report);
        self.engine.counters().fault();
        if let Some(frame) = self.frames.pop() {
            frame.domain.quarantine(&report);
            if let (Some(obs), Some(o)) = (self.engine.observer(), &frame.observed) {
                obs.refused(o.caller, o.slot, ErrorCode::Fault);
            }
            Self::release(frame);
        }
        self.unwind(report)
    }

    /// Pop every frame in a domain that is not running; the first caller in
    /// a running domain gets `Fault` with `report`.
    pub(super) fn unwind(&mut self, report: FaultReport) -> Step {
        loop {
            let Some(top) = self.frames.last_mut() else {
                return Step::Done(ThreadResult::Faulted(report));
            };
            if top.domain.health() == Health::Running {
                answer(
                    &mut top.vcpu,
                    ErrorCode::Fault as u64,
                    fault_values(&report),
                );
                return Step::Continue;
            }
            if let Some(f) = self.frames.pop() {
                Self::release(f);
            }
        }
    }

    /// `Exit`: the thread ends; every frame goes back to its domain.
    pub(super) fn exit(&mut self, code: u64) -> Step {
        while let Some(f) = self.frames.pop() {
            Self::release(f);
        }
        Step::Done(ThreadResult::Exited { code })
    }
}
