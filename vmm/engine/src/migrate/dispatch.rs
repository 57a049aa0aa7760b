//! One exit's worth of a thread: run the top frame's vCPU, decode what it
//! asked for once, and turn it into a move of the chain.

use super::{answer, Chain, Engine, Step};
use crate::clock;
use crate::fault;
use crate::hypercall::GuestRequest;
use crate::vcpu::Exit;
use shared_abi::ErrorCode;

impl<E: Engine> Chain<'_, E> {
    /// Run the top frame's vCPU to its next exit and handle it.
    pub(super) fn step(&mut self) -> Step {
        self.publish_pops();
        let t_run = clock::now();
        self.account_vmm(t_run);
        let Some(top) = self.frames.last_mut() else {
            return self.lost("step on an empty chain");
        };
        let dom = top.domain;
        let exit = match top.vcpu.run(self.meter.as_deref()) {
            Ok(e) => e,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
            Err(e) => {
                log::error!("KVM_RUN in `{}` failed: {e}", dom.name);
                Exit::Unexpected("KVM_RUN failed")
            }
        };
        let t_exit = clock::now();
        self.time.guest_cycles += t_exit.wrapping_sub(t_run);
        self.time.runs += 1;
        self.last_exit = t_exit;
        if self.meter.as_ref().is_some_and(|m| m.expired()) {
            if let Some(step) = self.budget_ran_out() {
                return step;
            }
        }
        let Some(top) = self.frames.last_mut() else {
            return self.lost("step on an empty chain");
        };
        match exit {
            Exit::Hypercall => {
                let request = GuestRequest::decode(top.vcpu.regs());
                self.hypercall(request)
            }
            Exit::Interrupted => Step::Continue,
            other => {
                let report = fault::decode(&mut top.vcpu, other, dom.mem(), &dom.name);
                self.fault(report)
            }
        }
    }

    fn hypercall(&mut self, request: GuestRequest) -> Step {
        let Some(top) = self.frames.last_mut() else {
            return self.lost("hypercall on an empty chain");
        };
        let dom = top.domain;
        match request {
            GuestRequest::Call {
                request,
                budget_us,
                wait_us,
            } => self.call(request, budget_us, wait_us),
            GuestRequest::Return { status, results } => self.ret(status, results),
            GuestRequest::Nop => {
                answer(&mut top.vcpu, 0, [0; 4]);
                Step::Continue
            }
            GuestRequest::Print { addr, len } => {
                dom.print_via(top.region(), top.mem(), addr, len);
                answer(&mut top.vcpu, 0, [0; 4]);
                Step::Continue
            }
            GuestRequest::Spawn { entry, arg } => {
                let (status, id) = match self.engine.spawn(dom, entry, arg) {
                    Ok(id) => (0, id.raw()),
                    Err(code) => {
                        self.engine.counters().refuse(code);
                        dom.refused(code, format_args!("{}: spawn", self.thread));
                        (code as u64, 0)
                    }
                };
                answer(&mut top.vcpu, status, [id, 0, 0, 0]);
                Step::Continue
            }
            GuestRequest::Panic { addr, len } => {
                let view = top.view.as_ref();
                let (region, mem) = view.map_or((&dom.region, dom.mem()), |v| (&v.region, &v.mem));
                let report = dom.panic_report_via(region, mem, &mut top.vcpu, addr, len);
                self.fault(report)
            }
            GuestRequest::Exit { code } => self.exit(code),
            // A booted guest has nothing more to say about its boot: an
            // answer of its own, not "unknown hypercall".
            GuestRequest::Hello { .. } | GuestRequest::Ready => {
                let what = format_args!("{}: boot hypercall after boot", self.thread);
                dom.refused(ErrorCode::BootOver, what);
                self.engine.counters().refuse(ErrorCode::BootOver);
                answer(&mut top.vcpu, ErrorCode::BootOver as u64, [0; 4]);
                Step::Continue
            }
            GuestRequest::Unknown { number } => {
                let what = format_args!("{}: unknown hypercall {number:#x}", self.thread);
                dom.refused(ErrorCode::UnknownHypercall, what);
                self.engine.counters().refuse(ErrorCode::UnknownHypercall);
                answer(&mut top.vcpu, ErrorCode::UnknownHypercall as u64, [0; 4]);
                Step::Continue
            }
        }
    }
}
