//! The migration engine: a thread's invocation chain and the two moves that
//! change it, `call` (A → B on a fresh stack of B) and `ret` (B → A, copying
//! results back). Nothing else is on that path.
//!
//! ```text
//!  A's vCPU: out(Call, &req) ─▶ read req ─▶ slot → (B, entry) ─▶ validate arglist
//!     ─▶ take B stack ─▶ take B vCPU ─▶ copy IN/INOUT, zero OUT ─▶ write Invocation
//!     ─▶ B's vCPU runs dispatcher(inv, entry) … out(Return, status, r0, r1)
//!     ─▶ copy OUT/INOUT back (on success only) ─▶ stack & vCPU back ─▶ A resumes
//! ```
//!
//! A call back into a domain the thread is already in (A→B→A) is just
//! another call: it takes another stack and another vCPU of A, so the
//! suspended frame's whole register state (GPRs, RFLAGS, SSE, x87) stays
//! untouched in its own vCPU — no save or restore.

pub mod arglist;
pub mod copy;

use crate::clock;
use crate::domain::{Domain, Health};
use crate::fault::{self, FaultReport};
use crate::guest_io;
use crate::manifest::{Ipc, StackPolicy};
use crate::message::{Ancestors, Reply, ReplySlot, Request};
use crate::observe::{CallEvent, ObservedObject};
use crate::system::Core;
use crate::vcpu::{Exit, Vcpu};
use arglist::{ArgPlan, Placed, INVOCATION_FOOTPRINT};
use shared_abi::{
    pseudo_vector, ArgDesc, ArgMode, ErrorCode, Hypercall, Invocation, APP_ERROR_BASE, MAX_ARGS,
    MAX_SCALARS, NO_CALLER,
};
use std::sync::Arc;

/// Deepest invocation chain a thread may build.
pub const MAX_DEPTH: usize = 64;

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
    /// It could not start (no stack, domain not serving, KVM error).
    NotStarted(String),
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

/// VMM work samples a profiled chain keeps without allocating per call.
const WORK_LOG: usize = 4096;

/// Per call+return, the VMM's own cycles: call path plus return path.
struct WorkLog {
    samples: [u64; WORK_LOG],
    len: usize,
    copies: [CopySample; WORK_LOG],
    copies_len: usize,
}

/// The VMM's object copies of one call+return, timed with the host TSC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopySample {
    /// Bytes copied into the callee (IN and INOUT objects).
    pub in_bytes: u64,
    /// Cycles of the copy in (OUT zero-fill included).
    pub in_cycles: u64,
    /// Bytes copied back (OUT and INOUT objects, on success).
    pub out_bytes: u64,
    /// Cycles of the copy back.
    pub out_cycles: u64,
}

/// What the next measured VMM interval belongs to.
#[derive(Clone, Copy, Debug, Default)]
enum Pending {
    #[default]
    Nothing,
    /// The interval after a `Call` exit: the call path.
    Call,
    /// The interval after a `Return` exit: the return path; carries the
    /// call path's cycles of the same invocation.
    Return(u64),
}

/// What the observer saw of a call, captured only when one is installed.
struct Observed {
    caller: u32,
    slot: u32,
    scalars: [u64; MAX_SCALARS],
    inputs: Vec<Vec<u8>>,
}

/// One activation of the thread in one domain.
struct Frame {
    domain: u32,
    entry: u32,
    vcpu: Vcpu,
    stack: u32,
    top: u64,
    plan: ArgPlan,
    observed: Option<Box<Observed>>,
    /// VMM cycles spent on the call path that created this frame.
    enter_cycles: u64,
    /// Host cycles of the copy into this frame's stack.
    copy_in_cycles: u64,
}

/// The result of running one exit's worth of the thread.
pub enum Step {
    /// Keep running the (possibly new) top frame.
    Continue,
    /// The thread is over.
    Done(ThreadResult),
}

/// A migrating thread's invocation chain (A→B→C…): its frames, bottom first.
pub struct Chain {
    thread: u64,
    frames: Vec<Frame>,
    time: ThreadTime,
    last_exit: u64,
    pending: Pending,
    work: Option<Box<WorkLog>>,
    /// Domains this thread is in on other host threads (message mode).
    ancestors: Ancestors,
    /// A served chain's bottom frame answers this caller domain, whose
    /// thread waits on another host thread.
    served_caller: Option<u32>,
    /// Where this chain's message-mode calls get their replies.
    reply: Option<Arc<ReplySlot>>,
}

fn answer(vcpu: &mut Vcpu, status: u64, values: [u64; 4]) {
    vcpu.set_regs(|r| {
        r.rax = status;
        r.rdi = values[0];
        r.rsi = values[1];
        r.rdx = values[2];
        r.r10 = values[3];
    });
}

/// What a caller gets for its callee's `Return`: on success the OUT and
/// INOUT objects are copied back and the results pass; on an application
/// error nothing is copied and the status becomes `APP_ERROR_BASE + n`.
fn settle(
    callee: &Domain,
    caller: &Domain,
    frame: &Frame,
    status: u64,
    results: [u64; 2],
) -> (u64, [u64; 2]) {
    if status != 0 {
        return (APP_ERROR_BASE + status.min(u64::from(u32::MAX)), [0; 2]);
    }
    match copy::copy_out(callee.mem(), caller.mem(), &frame.plan, frame.top) {
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

fn fault_values(f: &FaultReport) -> [u64; 4] {
    [f.vector, f.rip, f.error_code, f.cr2]
}

/// Where a new frame comes from.
struct Caller<'a> {
    domain: &'a Domain,
    slot: u32,
}

impl Chain {
    /// An empty chain for `thread`. A thread's own chain is profiled when
    /// the system is; a served chain never is (nothing would collect it).
    fn new(sys: &Core, thread: u64, ancestors: Ancestors, served_caller: Option<u32>) -> Self {
        let work = (served_caller.is_none() && sys.profiling()).then(|| {
            Box::new(WorkLog {
                samples: [0; WORK_LOG],
                len: 0,
                copies: [CopySample::default(); WORK_LOG],
                copies_len: 0,
            })
        });
        Chain {
            thread,
            frames: Vec::with_capacity(MAX_DEPTH),
            time: ThreadTime::default(),
            last_exit: 0,
            pending: Pending::Nothing,
            work,
            ancestors,
            served_caller,
            reply: None,
        }
    }

    /// Start thread `thread` in `entry` of `domain` with `scalars`.
    pub fn start(
        sys: &Core,
        thread: u64,
        domain: u32,
        entry: u32,
        scalars: [u64; MAX_SCALARS],
    ) -> Result<Self, String> {
        let mut chain = Chain::new(sys, thread, Ancestors::default(), None);
        let d = sys.domain(domain).ok_or("no such domain")?;
        let plan = ArgPlan {
            count: 0,
            objects: [Placed::default(); MAX_ARGS],
            invocation_offset: INVOCATION_FOOTPRINT,
        };
        let frame = chain
            .enter(sys, d, None, entry, plan, scalars)
            .map_err(|c| format!("domain `{}`: {c:?}", d.name))?;
        chain.frames.push(frame);
        Ok(chain)
    }

    /// A chain for a server thread of `domain` serving `req` (message mode):
    /// the bottom frame's objects come from, and go back to, the caller.
    pub fn start_served(sys: &Core, domain: u32, req: &Request) -> Result<Self, ErrorCode> {
        let callee = sys.domain(domain).ok_or(ErrorCode::BadSlot)?;
        let caller = sys.domain(req.caller).ok_or(ErrorCode::BadSlot)?;
        let mut chain = Chain::new(sys, req.thread, req.ancestors, Some(req.caller));
        let frame = chain.enter(
            sys,
            callee,
            Some(Caller {
                domain: caller,
                slot: req.slot,
            }),
            req.entry,
            req.plan,
            req.scalars,
        )?;
        chain.frames.push(frame);
        Ok(chain)
    }

    /// Mark a fault report with this thread and its invocation chain.
    fn stamp(&self, sys: &Core, report: &mut FaultReport) {
        report.thread = Some(self.thread);
        let name = |d: u32| {
            sys.domain(d)
                .map_or_else(|| format!("#{d}"), |d| d.name.clone())
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

    /// The thread's id.
    pub fn thread(&self) -> u64 {
        self.thread
    }

    /// Domains of the chain, bottom first: the thread's invocation chain.
    pub fn domains(&self) -> impl Iterator<Item = u32> + '_ {
        self.frames.iter().map(|f| f.domain)
    }

    /// Where this thread's time went so far.
    pub fn time(&self) -> ThreadTime {
        self.time
    }

    /// The VMM-work samples of a profiled chain (one per call+return).
    pub fn work_samples(&self) -> &[u64] {
        self.work
            .as_ref()
            .map_or(&[], |w| w.samples.get(..w.len).unwrap_or(&[]))
    }

    /// The copy samples of a profiled chain (one per call+return).
    pub fn copy_samples(&self) -> &[CopySample] {
        self.work
            .as_ref()
            .map_or(&[], |w| w.copies.get(..w.copies_len).unwrap_or(&[]))
    }

    fn log_copies(&mut self, frame: &Frame, copied_back: bool, out_cycles: u64) {
        let Some(w) = self.work.as_mut() else { return };
        let bytes = |f: fn(ArgMode) -> bool| {
            frame
                .plan
                .objects()
                .iter()
                .filter(|p| f(p.mode()))
                .map(|p| p.len)
                .sum::<u64>()
        };
        let sample = CopySample {
            in_bytes: bytes(ArgMode::copies_in),
            in_cycles: frame.copy_in_cycles,
            out_bytes: if copied_back {
                bytes(ArgMode::copies_out)
            } else {
                0
            },
            out_cycles,
        };
        if let Some(slot) = w.copies.get_mut(w.copies_len) {
            *slot = sample;
            w.copies_len += 1;
        }
    }

    /// Account the VMM interval that ends now, at the next `KVM_RUN`.
    fn account_vmm(&mut self, t_run: u64) {
        if self.last_exit == 0 {
            return;
        }
        let cycles = t_run.wrapping_sub(self.last_exit);
        self.time.vmm_cycles += cycles;
        match std::mem::take(&mut self.pending) {
            Pending::Nothing => {}
            Pending::Call => {
                if let Some(top) = self.frames.last_mut() {
                    top.enter_cycles = cycles;
                }
            }
            Pending::Return(call_path) => {
                if let Some(w) = self.work.as_mut() {
                    if let Some(slot) = w.samples.get_mut(w.len) {
                        *slot = call_path + cycles;
                        w.len += 1;
                    }
                }
            }
        }
    }

    /// Run the top frame's vCPU to its next exit and handle it.
    pub fn step(&mut self, sys: &Core) -> Step {
        let t_run = clock::now();
        self.account_vmm(t_run);
        let Some(top) = self.frames.last_mut() else {
            return Step::Done(ThreadResult::NotStarted("empty chain".into()));
        };
        let Some(dom) = sys.domain(top.domain) else {
            return Step::Done(ThreadResult::NotStarted("frame in unknown domain".into()));
        };
        let exit = match top.vcpu.run() {
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
        match exit {
            Exit::Hypercall => self.hypercall(sys),
            Exit::Interrupted => Step::Continue,
            other => {
                let mut report = fault::decode(&mut top.vcpu, other, dom.mem(), &dom.name);
                self.stamp(sys, &mut report);
                self.fault(sys, report)
            }
        }
    }

    fn hypercall(&mut self, sys: &Core) -> Step {
        let Some(top) = self.frames.last_mut() else {
            return Step::Continue;
        };
        let Some(dom) = sys.domain(top.domain) else {
            return Step::Continue;
        };
        let regs = *top.vcpu.regs();
        match Hypercall::try_from(regs.rax as u32) {
            Ok(Hypercall::Call) => self.call(sys, regs.rdi),
            Ok(Hypercall::Return) => self.ret(sys, regs.rdi, [regs.rsi, regs.rdx]),
            Ok(Hypercall::Nop) => {
                answer(&mut top.vcpu, 0, [0; 4]);
                Step::Continue
            }
            Ok(Hypercall::Print) => {
                dom.print(regs.rdi, regs.rsi);
                answer(&mut top.vcpu, 0, [0; 4]);
                Step::Continue
            }
            Ok(Hypercall::Spawn) => {
                let (status, id) = match sys.spawn(dom, regs.rdi, regs.rsi) {
                    Ok(id) => (0, id),
                    Err(code) => {
                        sys.counters.refuse(code);
                        (code as u64, 0)
                    }
                };
                answer(&mut top.vcpu, status, [id, 0, 0, 0]);
                Step::Continue
            }
            Ok(Hypercall::Panic) => {
                let mut report = fault::panic_report(&mut top.vcpu, dom);
                self.stamp(sys, &mut report);
                self.fault(sys, report)
            }
            Ok(Hypercall::Exit) => self.exit(sys, regs.rdi),
            Ok(Hypercall::Hello | Hypercall::Ready) | Err(_) => {
                log::warn!(
                    "[{}] thread {}: unknown hypercall {:#x}",
                    dom.name,
                    self.thread,
                    regs.rax
                );
                sys.counters.refuse(ErrorCode::UnknownHypercall);
                answer(&mut top.vcpu, ErrorCode::UnknownHypercall as u64, [0; 4]);
                Step::Continue
            }
        }
    }

    /// Refuse the call the top frame is making.
    fn refuse(
        &mut self,
        sys: &Core,
        slot: u32,
        code: ErrorCode,
        why: &dyn std::fmt::Display,
    ) -> Step {
        if let Some(top) = self.frames.last_mut() {
            let name = sys.domain(top.domain).map_or("?", |d| d.name.as_str());
            log::debug!(
                "[{name}] thread {}: call on slot {slot} refused: {code:?}: {why}",
                self.thread
            );
            sys.counters.refuse(code);
            if let Some(obs) = &sys.observer {
                obs.refused(top.domain, slot, code);
            }
            answer(&mut top.vcpu, code as u64, [0; 4]);
        }
        Step::Continue
    }

    fn call(&mut self, sys: &Core, req_addr: u64) -> Step {
        let Some(caller_id) = self.frames.last().map(|f| f.domain) else {
            return Step::Continue;
        };
        let Some(caller) = sys.domain(caller_id) else {
            return Step::Continue;
        };
        let region = &caller.region;
        let req = match guest_io::read_call_request(caller.mem(), req_addr, |a, l| {
            region.check(a, l).is_ok()
        }) {
            Ok(r) => r,
            Err(e) => return self.refuse(sys, u32::MAX, ErrorCode::BadPointer, &e),
        };
        let Some(cap) = sys.capability(caller_id, req.slot) else {
            return self.refuse(sys, req.slot, ErrorCode::BadSlot, &"no such capability");
        };
        let Some(callee) = sys.domain(cap.domain) else {
            return self.refuse(
                sys,
                req.slot,
                ErrorCode::BadSlot,
                &"capability to a missing domain",
            );
        };
        if self.ancestors.as_slice().len() + self.frames.len() >= MAX_DEPTH {
            return self.refuse(sys, req.slot, ErrorCode::TooDeep, &MAX_DEPTH);
        }
        let plan = match arglist::validate(&req, &caller.region, callee.arg_budget()) {
            Ok(p) => p,
            Err(e) => return self.refuse(sys, req.slot, e.code(), &e),
        };
        if callee.ipc == Ipc::Message {
            return self.message_call(sys, caller, callee, req.slot, cap.entry, plan, req.scalars);
        }
        match self.enter(
            sys,
            callee,
            Some(Caller {
                domain: caller,
                slot: req.slot,
            }),
            cap.entry,
            plan,
            req.scalars,
        ) {
            Ok(frame) => {
                sys.counters.call();
                self.frames.push(frame);
                self.time.calls += 1;
                self.pending = Pending::Call;
                Step::Continue
            }
            Err(code) => self.refuse(sys, req.slot, code, &callee.name),
        }
    }

    /// Build a frame of `callee` running `entry`: counted in, a stack (per
    /// the pool's policy), a vCPU, the objects and the invocation frame on
    /// that stack, registers set.
    fn enter(
        &self,
        sys: &Core,
        callee: &Domain,
        caller: Option<Caller<'_>>,
        entry: u32,
        plan: ArgPlan,
        scalars: [u64; MAX_SCALARS],
    ) -> Result<Frame, ErrorCode> {
        callee.enter()?;
        let stack = match callee.take_stack(|| self.held_in(callee.id)) {
            Ok(s) => s,
            Err(code) => {
                callee.leave();
                return Err(code);
            }
        };
        let vcpu = match callee.take_vcpu() {
            Ok(v) => v,
            Err(e) => {
                log::warn!("[{}] no vCPU for a new invocation: {e}", callee.name);
                callee.give_stack(stack);
                callee.leave();
                return Err(ErrorCode::NoStack);
            }
        };
        let frame = Frame {
            domain: callee.id,
            entry,
            vcpu,
            stack,
            top: callee.layout.stack_top(stack),
            plan,
            observed: None,
            enter_cycles: 0,
            copy_in_cycles: 0,
        };
        let mut frame = frame;
        match self.prepare(sys, callee, caller, &mut frame, scalars) {
            Ok(()) => Ok(frame),
            Err(code) => {
                Self::release(sys, frame);
                Err(code)
            }
        }
    }

    /// Frames this thread has in `domain`, here and on other host threads.
    fn held_in(&self, domain: u32) -> u32 {
        let here = self.frames.iter().filter(|f| f.domain == domain).count();
        let elsewhere = self
            .ancestors
            .as_slice()
            .iter()
            .filter(|d| **d == domain)
            .count();
        (here + elsewhere) as u32
    }

    /// Hand a validated call to a server of a message-mode `callee` and
    /// sleep until it replies.
    #[allow(clippy::too_many_arguments)]
    fn message_call(
        &mut self,
        sys: &Core,
        caller: &Domain,
        callee: &Domain,
        slot: u32,
        entry: u32,
        plan: ArgPlan,
        scalars: [u64; MAX_SCALARS],
    ) -> Step {
        if let Some(code) = callee.health().refusal() {
            return self.refuse(sys, slot, code, &callee.name);
        }
        let Some(inbox) = callee.inbox.as_ref() else {
            return self.refuse(
                sys,
                slot,
                ErrorCode::BadSlot,
                &"message-mode domain without servers",
            );
        };
        let busy = inbox.idle() == 0;
        if busy
            && (callee.stack_policy == StackPolicy::Fail
                || self.held_in(callee.id) >= inbox.servers())
        {
            return self.refuse(sys, slot, ErrorCode::NoStack, &"no idle server");
        }
        let reply = Arc::clone(
            self.reply
                .get_or_insert_with(|| Arc::new(ReplySlot::default())),
        );
        let ancestors = Ancestors::extend(&self.ancestors, self.frames.iter().map(|f| f.domain));
        let req = Request {
            thread: self.thread,
            caller: caller.id,
            slot,
            entry,
            plan,
            scalars,
            ancestors,
            reply: Arc::clone(&reply),
        };
        if let Err(code) = inbox.send(req) {
            return self.refuse(sys, slot, code, &callee.name);
        }
        sys.counters.call();
        self.time.calls += 1;
        match reply.wait() {
            Reply::Returned {
                status,
                results,
                time,
            } => {
                sys.counters.ret();
                self.time.guest_cycles += time.guest_cycles;
                self.time.runs += time.runs;
                self.time.calls += time.calls;
                if let Some(top) = self.frames.last_mut() {
                    answer(&mut top.vcpu, status, [results[0], results[1], 0, 0]);
                }
                Step::Continue
            }
            Reply::Refused(code) => self.refuse(sys, slot, code, &callee.name),
            Reply::Fault(report) => self.unwind(sys, report),
            Reply::Exited(code) => self.exit(sys, code),
        }
    }

    /// Copy the objects in, write the invocation frame, set the registers.
    fn prepare(
        &self,
        sys: &Core,
        callee: &Domain,
        caller: Option<Caller<'_>>,
        frame: &mut Frame,
        scalars: [u64; MAX_SCALARS],
    ) -> Result<(), ErrorCode> {
        let (top, plan) = (frame.top, frame.plan);
        if let Some(c) = &caller {
            let t = clock::now();
            if let Err(e) = copy::copy_in(c.domain.mem(), callee.mem(), &plan, top) {
                log::error!("copy into `{}` failed after validation: {e}", callee.name);
                return Err(ErrorCode::BadPointer);
            }
            frame.copy_in_cycles = clock::now().wrapping_sub(t);
        }
        let mut inv = Invocation {
            caller_domain: caller.as_ref().map_or(NO_CALLER, |c| c.domain.id),
            entry: frame.entry,
            thread_id: self.thread,
            depth: (self.ancestors.as_slice().len() + self.frames.len()) as u32,
            nargs: plan.count as u32,
            scalars,
            args: [ArgDesc::default(); MAX_ARGS],
        };
        for (d, p) in inv.args.iter_mut().zip(plan.objects()) {
            *d = ArgDesc {
                addr: top - p.offset_from_top,
                len: p.len,
                mode: p.mode,
                reserved: 0,
            };
        }
        let inv_addr = top - plan.invocation_offset;
        let bytes = guest_io::encode_invocation(&inv);
        let used = bytes
            .get(..guest_io::invocation_len(plan.count))
            .unwrap_or(&bytes);
        let written = guest_io::write(callee.mem(), inv_addr, used)
            .and_then(|()| guest_io::write(callee.mem(), inv_addr - 8, &[0u8; 8]));
        if let Err(e) = written {
            log::error!(
                "writing the invocation frame into `{}` failed: {e}",
                callee.name
            );
            return Err(ErrorCode::BadPointer);
        }
        let (dispatcher, entry) = (callee.dispatcher, frame.entry);
        frame.vcpu.set_regs(|r| {
            *r = kvm_bindings::kvm_regs {
                rip: dispatcher,
                rsp: inv_addr - 8,
                rdi: inv_addr,
                rsi: u64::from(entry),
                rflags: 2,
                ..Default::default()
            };
        });
        if let (Some(c), Some(_)) = (&caller, &sys.observer) {
            let inputs = plan
                .objects()
                .iter()
                .map(|p| {
                    if p.mode().copies_in() {
                        callee
                            .read_bytes(top - p.offset_from_top, p.len)
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            frame.observed = Some(Box::new(Observed {
                caller: c.domain.id,
                slot: c.slot,
                scalars,
                inputs,
            }));
        }
        Ok(())
    }

    /// Give a popped frame's stack and vCPU back to its domain, and count it
    /// out (the last frame out of a quarantined domain resets it).
    fn release(sys: &Core, frame: Frame) {
        if let Some(d) = sys.domain(frame.domain) {
            d.give_stack(frame.stack);
            d.give_vcpu(frame.vcpu);
            d.leave();
        }
    }

    fn ret(&mut self, sys: &Core, status: u64, results: [u64; 2]) -> Step {
        let Some(frame) = self.frames.pop() else {
            return Step::Continue;
        };
        let Some(callee) = sys.domain(frame.domain) else {
            return Step::Continue;
        };
        if callee.health() != Health::Running {
            // The domain faulted while this frame ran in it: its answer is
            // not trusted. Unwind as if this frame had faulted.
            let report = callee
                .fault()
                .unwrap_or_else(|| unknown_fault(&callee.name));
            Self::release(sys, frame);
            return self.unwind(sys, report);
        }
        let Some(caller_frame) = self.frames.last() else {
            return self.ret_bottom(sys, callee, frame, status, results);
        };
        let Some(caller) = sys.domain(caller_frame.domain) else {
            return Step::Continue;
        };
        sys.counters.ret();
        let t_out = clock::now();
        let (word, results) = settle(callee, caller, &frame, status, results);
        let out_cycles = clock::now().wrapping_sub(t_out);
        self.log_copies(&frame, word == 0, out_cycles);
        self.observe_return(sys, callee, &frame, word, results);
        let enter_cycles = frame.enter_cycles;
        Self::release(sys, frame);
        if caller.health() != Health::Running {
            let report = caller
                .fault()
                .unwrap_or_else(|| unknown_fault(&caller.name));
            return self.unwind(sys, report);
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
    fn ret_bottom(
        &mut self,
        sys: &Core,
        callee: &Domain,
        frame: Frame,
        status: u64,
        results: [u64; 2],
    ) -> Step {
        let (status, results) = match self.served_caller.and_then(|c| sys.domain(c)) {
            Some(caller) => {
                let (word, results) = settle(callee, caller, &frame, status, results);
                self.observe_return(sys, callee, &frame, word, results);
                (word, results)
            }
            None => (status, if status == 0 { results } else { [0; 2] }),
        };
        Self::release(sys, frame);
        Step::Done(ThreadResult::Returned { status, results })
    }

    fn observe_return(
        &self,
        sys: &Core,
        callee: &Domain,
        frame: &Frame,
        status: u64,
        results: [u64; 2],
    ) {
        let (Some(obs), Some(o)) = (&sys.observer, &frame.observed) else {
            return;
        };
        let objects: Vec<ObservedObject> = frame
            .plan
            .objects()
            .iter()
            .zip(&o.inputs)
            .map(|(p, input)| ObservedObject {
                mode: p.mode(),
                input: input.clone(),
                output: if status == 0 && p.mode().copies_out() {
                    callee
                        .read_bytes(frame.top - p.offset_from_top, p.len)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        let entry = callee
            .entries
            .get(frame.entry as usize)
            .map_or("?", String::as_str);
        obs.completed(&CallEvent {
            thread: self.thread,
            caller: o.caller,
            slot: o.slot,
            callee: callee.id,
            callee_name: &callee.name,
            entry,
            scalars: o.scalars,
            objects: &objects,
            status,
            results,
            host_thread: std::thread::current().id(),
        });
    }

    /// The top frame faulted: quarantine its domain and unwind.
    fn fault(&mut self, sys: &Core, report: FaultReport) -> Step {
        sys.counters.fault();
        if let Some(frame) = self.frames.pop() {
            if let Some(d) = sys.domain(frame.domain) {
                d.quarantine(&report);
                if let (Some(obs), Some(o)) = (&sys.observer, &frame.observed) {
                    obs.refused(o.caller, o.slot, ErrorCode::Fault);
                }
            }
            Self::release(sys, frame);
        }
        self.unwind(sys, report)
    }

    /// Pop every frame in a domain that is not running; the first caller in
    /// a running domain gets `Fault` with `report`.
    fn unwind(&mut self, sys: &Core, report: FaultReport) -> Step {
        loop {
            let Some(top) = self.frames.last_mut() else {
                return Step::Done(ThreadResult::Faulted(report));
            };
            if sys
                .domain(top.domain)
                .is_some_and(|d| d.health() == Health::Running)
            {
                answer(
                    &mut top.vcpu,
                    ErrorCode::Fault as u64,
                    fault_values(&report),
                );
                return Step::Continue;
            }
            if let Some(f) = self.frames.pop() {
                Self::release(sys, f);
            }
        }
    }

    fn exit(&mut self, sys: &Core, code: u64) -> Step {
        while let Some(f) = self.frames.pop() {
            Self::release(sys, f);
        }
        Step::Done(ThreadResult::Exited { code })
    }
}

fn unknown_fault(domain: &str) -> FaultReport {
    FaultReport {
        domain: domain.to_owned(),
        vector: pseudo_vector::VCPU_ERROR,
        rip: 0,
        error_code: 0,
        cr2: 0,
        message: Some("domain stopped".into()),
        thread: None,
        chain: Vec::new(),
    }
}
