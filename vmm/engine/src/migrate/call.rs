//! The call move: read and validate the caller's request, then either build
//! a frame of the callee on this host thread (migration) or hand the call
//! to a server of a message-mode callee and sleep until it answers.

use super::{answer_call, mapped, Asked, Chain, Engine, Frame, Observed, Pending, Step};
use crate::clock;
use crate::domain::lease::{Lease, LeaseError};
use crate::domain::{Domain, Health};
use crate::guest_io;
use crate::ids::{EntryIndex, Slot};
use crate::manifest::Ipc;
use crate::thread::arglist::{self, ArgPlan};
use crate::thread::copy::{self, Kept};
use crate::thread::handoff::{Handoff, Reply, ReplySlot};
use crate::thread::MAX_DEPTH;
use crate::watch::meter::UNLIMITED;
use shared_abi::layout::LEASE_WINDOW_BASE;
use shared_abi::{
    ArgDesc, ArgMode, ErrorCode, Invocation, ARG_LEND, MAX_ARGS, MAX_SCALARS, NO_CALLER,
};
use std::sync::Arc;
use std::time::Instant;

/// The caller of a new frame: the domain whose objects it receives, and the
/// slot it used (for the observer).
pub(super) struct Caller<'e> {
    pub(super) domain: &'e Domain,
    pub(super) slot: Slot,
}

/// Objects that lie in the caller frame's leases (`held`) may only be lent
/// on, never copied (the VMM reads and writes the caller's own memory only),
/// and a read-only lease stays read-only: lent on as IN only.
fn leased_objects_lent_on(plan: &ArgPlan, held: &[Lease]) -> Result<(), &'static str> {
    for p in plan
        .objects()
        .iter()
        .filter(|p| p.caller.addr() >= LEASE_WINDOW_BASE)
    {
        let Some(lease) = held.iter().find(|l| l.contains(p.caller.addr(), p.len())) else {
            continue;
        };
        if !p.lent {
            return Err(
                "an object in a lease can only be lent on (whole pages, ARG_LEND), not copied",
            );
        }
        if p.mode.copies_out() && !lease.writable() {
            return Err("a read-only lease can only be lent on as IN");
        }
    }
    Ok(())
}

impl<'e, E: Engine> Chain<'e, E> {
    /// Refuse the call the top frame is making (R8 = `callee`'s generation,
    /// 0 when the callee is not known yet).
    pub(super) fn refuse(
        &mut self,
        callee: Option<&Domain>,
        slot: Slot,
        code: ErrorCode,
        why: &dyn std::fmt::Display,
    ) -> Step {
        let engine = self.engine;
        let thread = self.thread;
        let Some(top) = self.frames.last_mut() else {
            return self.lost("refusal on an empty chain");
        };
        log::debug!(
            "[{}] {thread}: call on {slot} refused: {code:?}: {why}",
            top.domain.name
        );
        engine.counters().refuse(code);
        if let Some(obs) = engine.observer() {
            obs.refused(top.domain.id, slot, code);
        }
        answer_call(&mut top.vcpu, code as u64, [0; 4], callee);
        Step::Continue
    }

    pub(super) fn call(&mut self, request: u64, budget_us: u64, wait_us: u64) -> Step {
        let Some(top) = self.frames.last() else {
            return self.lost("call on an empty chain");
        };
        let caller = top.domain;
        let region = top.region();
        let req = match guest_io::read_call_request(top.mem(), request, |a, l| {
            region.check(a, l).is_ok()
        }) {
            Ok(r) => r,
            Err(e) => return self.refuse(None, Slot::new(u32::MAX), ErrorCode::BadPointer, &e),
        };
        let slot = Slot::new(req.slot);
        let Some(cap) = self.engine.capability(caller.id, slot) else {
            return self.refuse(None, slot, ErrorCode::BadSlot, &"no such capability");
        };
        let Some(callee) = self.engine.domain(cap.domain) else {
            debug_assert!(false, "capability to a missing domain survived boot");
            return self.refuse(
                None,
                slot,
                ErrorCode::BadSlot,
                &"capability to a missing domain",
            );
        };
        if self.depth() >= MAX_DEPTH {
            return self.refuse(Some(callee), slot, ErrorCode::TooDeep, &MAX_DEPTH);
        }
        // A caller on the window claims a stack pointer: checked before a
        // frame (now or deeper down the chain) goes below it.
        if let Err(code) = self.note_window_floor() {
            return self.refuse(Some(callee), slot, code, &"caller's stack pointer");
        }
        let plan = match self.validate(&req, caller, callee) {
            Ok(p) => p,
            Err((code, why)) => return self.refuse(Some(callee), slot, code, &why),
        };
        let held = self.frames.last().map_or(&[][..], |f| f.leases.as_slice());
        if let Err(why) = leased_objects_lent_on(&plan, held) {
            return self.refuse(Some(callee), slot, ErrorCode::OutOfRange, &why);
        }
        if callee.ipc == Ipc::Message {
            let asked = Asked::call(callee, budget_us, wait_us);
            return self.forward(caller, callee, slot, cap.entry, plan, req.scalars, asked);
        }
        let from = Caller {
            domain: caller,
            slot,
        };
        let asked = Asked::call(callee, budget_us, wait_us);
        match self.enter(callee, Some(from), cap.entry, plan, req.scalars, asked) {
            Ok(frame) => {
                self.engine.counters().call();
                self.push(frame, asked);
                self.time.calls += 1;
                self.pending = Pending::Call;
                Step::Continue
            }
            Err(code) => self.refuse(Some(callee), slot, code, &callee.name),
        }
    }

    /// Check the top frame's argument list for a call into `callee`. Into
    /// a pool-mode domain every object is laid out on the callee's pool
    /// stack (objects on the caller's window stack are copied like any
    /// other); into a message-mode domain only the caller domain's own data
    /// region may be named (its server copies from there, on another host
    /// thread); into a mapped-mode domain objects on the thread's window
    /// stack pass in place and the rest go below the caller's frame.
    fn validate(
        &mut self,
        req: &shared_abi::CallRequest,
        caller: &'e Domain,
        callee: &'e Domain,
    ) -> Result<ArgPlan, (ErrorCode, String)> {
        let Some(top) = self.frames.last() else {
            return Err((ErrorCode::Internal, "empty chain".into()));
        };
        // A frame holding leases may also name them (only to lend them on:
        // see `leased_objects_lent_on`).
        // Built only for a frame that holds leases: the hot path allocates
        // nothing.
        let with_leases = |top: &Frame<'_>| {
            (!top.leases.is_empty()).then(|| {
                top.region()
                    .with(top.leases.iter().map(|l| (l.addr(), l.addr() + l.len())))
            })
        };
        let checked = if callee.ipc == Ipc::Message {
            // Only a migrating call lends: a message-mode server runs on
            // another host thread, which a caller that stops waiting would
            // leave behind with its pages mapped.
            arglist::validate(req, &caller.region, callee.arg_budget())
        } else if mapped::on_window(callee) {
            if let Err(e) = self.ensure_window(caller) {
                return Err((ErrorCode::NoStack, e.to_string()));
            }
            let at = self.next_window_top().map_err(|c| (c, "window".into()))?;
            let Some(top) = self.frames.last() else {
                return Err((ErrorCode::Internal, "empty chain".into()));
            };
            let slot = self.window.as_ref().and_then(mapped::ThreadWindow::slot);
            let own = slot
                .filter(|_| top.view.is_some())
                .map(|s| (s.bottom(), s.top()));
            // Into a mapped-mode callee nothing is lent: objects on the
            // window pass in place, the rest are copied.
            let leased = with_leases(top);
            let region = leased.as_ref().unwrap_or_else(|| top.region());
            arglist::validate_in_place(req, region, at.budget, own)
        } else {
            let leased = with_leases(top);
            let region = leased.as_ref().unwrap_or_else(|| top.region());
            arglist::validate_lending(req, region, callee.arg_budget(), true)
        };
        checked.map_err(|e| (e.code(), e.to_string()))
    }

    /// Build a frame of `callee` running `entry`: counted in, a stack (per
    /// the pool's policy), a vCPU, the objects and the invocation frame on
    /// that stack, registers set.
    pub(super) fn enter(
        &self,
        callee: &'e Domain,
        caller: Option<Caller<'e>>,
        entry: EntryIndex,
        plan: ArgPlan,
        scalars: [u64; MAX_SCALARS],
        asked: Asked,
    ) -> Result<Frame<'e>, ErrorCode> {
        callee.enter(asked.wait)?;
        let stack = match callee.take_stack_within(|| self.held_in(callee.id), asked.wait) {
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
                // Every vCPU slot of the domain is in use or was lost to a
                // failed reset (KVM cannot make a vCPU id again): a limit,
                // like an empty pool. Anything else is KVM failing.
                return Err(if e.errno() == libc::ENOSPC {
                    ErrorCode::NoStack
                } else {
                    ErrorCode::Internal
                });
            }
        };
        let mut frame = Frame {
            domain: callee,
            entry,
            vcpu,
            stack,
            top: callee.stack_top(stack),
            plan,
            leases: Vec::new(),
            observed: None,
            enter_cycles: 0,
            copy_in_cycles: 0,
            id: 0,
            timed_out: false,
            graced: false,
            view: None,
            window_floor: None,
            maps_window: false,
        };
        let placed = if mapped::on_window(callee) {
            self.place_on_window(&mut frame)
        } else {
            Ok(())
        };
        match placed.and_then(|()| self.prepare(caller, &mut frame, scalars)) {
            Ok(()) => Ok(frame),
            Err(code) => {
                self.release(frame);
                Err(code)
            }
        }
    }

    /// Put a new frame of a mapped-mode domain on the thread's window
    /// stack: its top below the deepest live window frame, the view of
    /// its domain with the slot, the slot mapped there if it is not yet.
    fn place_on_window(&self, frame: &mut Frame<'e>) -> Result<(), ErrorCode> {
        let window = self.window.as_ref().ok_or(ErrorCode::NoStack)?;
        let at = self.next_window_top()?;
        if frame.plan.invocation_offset > at.budget {
            return Err(ErrorCode::TooLarge);
        }
        frame.top = at.top;
        frame.view = Some(Box::new(window.view(frame.domain)?));
        frame.maps_window = window.map_for_frame(frame.domain)?;
        Ok(())
    }

    /// Copy the objects in, write the invocation frame, set the registers.
    fn prepare(
        &self,
        caller: Option<Caller<'e>>,
        frame: &mut Frame<'e>,
        scalars: [u64; MAX_SCALARS],
    ) -> Result<(), ErrorCode> {
        let (callee, top, plan) = (frame.domain, frame.top, &frame.plan);
        // With an observer, the input bytes are kept as copied (the
        // observer judges those, not a later read another vCPU could race).
        let mut inputs = (caller.is_some() && self.engine.observer().is_some()).then(Kept::new);
        if let Some(c) = &caller {
            // A served chain's first frame reads a caller waiting on another
            // host thread: only while it still waits (claimed meanwhile).
            let ticket = self.ticket.as_ref().filter(|_| self.frames.is_empty());
            if ticket.is_some_and(|t| !t.claim()) {
                return Err(ErrorCode::Timeout);
            }
            let t = clock::now();
            // The caller's frame is this chain's top, unless this is a
            // served chain's first frame (its caller is on another thread).
            let src = match self.frames.last() {
                Some(f) if f.domain.id == c.domain.id => f.mem(),
                _ => c.domain.mem(),
            };
            let copied = copy::copy_in(src, frame.mem(), plan, top, inputs.as_mut());
            if let Some(t) = ticket {
                t.unclaim();
            }
            if let Err(e) = copied {
                log::error!("copy into `{}` failed after validation: {e}", callee.name);
                return Err(ErrorCode::BadPointer);
            }
            frame.copy_in_cycles = clock::now().wrapping_sub(t);
            if frame.plan.lends() {
                let held = self.frames.last().map_or(&[][..], |f| f.leases.as_slice());
                frame.leases = Self::lend(c.domain, held, callee, &frame.plan)?;
            }
        }
        let (top, plan) = (frame.top, &frame.plan);
        let mut inv = Invocation {
            caller_domain: caller.as_ref().map_or(NO_CALLER, |c| c.domain.id.raw()),
            entry: frame.entry.raw(),
            thread_id: self.thread.raw(),
            depth: u32::try_from(self.depth()).unwrap_or(u32::MAX),
            nargs: u32::try_from(plan.count()).unwrap_or(0),
            scalars,
            args: [ArgDesc::default(); MAX_ARGS],
        };
        let mut leases = frame.leases.iter();
        for (d, p) in inv.args.iter_mut().zip(plan.objects()) {
            let lease = if p.lent { leases.next() } else { None };
            *d = ArgDesc {
                addr: if p.in_place {
                    p.caller.addr()
                } else {
                    lease.map_or(top - p.offset_from_top, Lease::addr)
                },
                len: p.len(),
                mode: p.mode as u32,
                flags: if lease.is_some() { ARG_LEND } else { 0 },
            };
        }
        let inv_addr = top - plan.invocation_offset;
        let bytes = guest_io::encode_invocation(&inv);
        let used = bytes
            .get(..guest_io::invocation_len(plan.count()))
            .unwrap_or(&bytes);
        let written = guest_io::write(frame.mem(), inv_addr, used)
            .and_then(|()| guest_io::write(frame.mem(), inv_addr - 8, &[0u8; 8]));
        if let Err(e) = written {
            log::error!(
                "writing the invocation frame into `{}` failed: {e}",
                callee.name
            );
            return Err(ErrorCode::BadPointer);
        }
        let (dispatcher, entry) = (callee.dispatcher, frame.entry.raw());
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
        if let (Some(c), Some(inputs)) = (&caller, inputs) {
            frame.observed = Some(Box::new(Observed {
                caller: c.domain.id,
                slot: c.slot,
                scalars,
                inputs,
            }));
        }
        Ok(())
    }

    /// Lend `plan`'s lent objects to `callee`, in descriptor order:
    /// read-only for IN, writable for OUT and INOUT. An object in the
    /// caller's own memory is lent from there; one in the caller frame's
    /// lease window (`held`) is lent on from the lease it lies in (the same
    /// pages: nothing is copied at any depth). An OUT object's pages are
    /// zero-filled first, so the callee never reads the old bytes (as with
    /// a copy, where it gets zeros). On a failure the leases made so far are
    /// taken back: a full window is `TooLarge`, any other failure the VMM's
    /// own (`Internal`).
    fn lend(
        caller: &Domain,
        held: &[Lease],
        callee: &Domain,
        plan: &ArgPlan,
    ) -> Result<Vec<Lease>, ErrorCode> {
        let mut leases = Vec::new();
        for p in plan.objects().iter().filter(|p| p.lent) {
            let (addr, len) = (p.caller.addr(), p.len());
            let pages = if addr >= LEASE_WINDOW_BASE {
                held.iter().find_map(|l| l.pages(addr, len))
            } else {
                caller.pages(addr, len)
            };
            let made = match pages {
                Some(pages) => {
                    if p.mode == ArgMode::Out {
                        pages.zero();
                    }
                    callee
                        .lend(pages, p.mode.copies_out())
                        .map_err(|e| match e {
                            LeaseError::WindowFull(_) => ErrorCode::TooLarge,
                            other => {
                                log::error!("lending to `{}` failed: {other}", callee.name);
                                ErrorCode::Internal
                            }
                        })
                }
                None => {
                    log::error!(
                        "a lent object of `{}` has no pages after validation",
                        caller.name
                    );
                    Err(ErrorCode::Internal)
                }
            };
            match made {
                Ok(lease) => leases.push(lease),
                Err(code) => {
                    for l in leases {
                        callee.take_back(l);
                    }
                    return Err(code);
                }
            }
        }
        Ok(leases)
    }

    /// Hand a validated call to a server of a message-mode `callee` and
    /// sleep until it replies, at most the call's wait limit (`asked.wait`,
    /// counted from before the request is queued): then `Timeout`, and the
    /// server's late reply is dropped with nothing copied. Counted like a
    /// migrated call: only once the callee is known to have been entered.
    #[allow(
        clippy::too_many_arguments,
        reason = "the validated call, passed on as it was decoded"
    )]
    fn forward(
        &mut self,
        caller: &'e Domain,
        callee: &'e Domain,
        slot: Slot,
        entry: EntryIndex,
        plan: ArgPlan,
        scalars: [u64; MAX_SCALARS],
        asked: Asked,
    ) -> Step {
        // A callee being reset is not refused here: its server waits for
        // the reset within the wait limit, as a migrating call does.
        let health = callee.health();
        if let Some(code) = health.refusal().filter(|_| health != Health::Resetting) {
            return self.refuse(Some(callee), slot, code, &callee.name);
        }
        // This hand-off sleeps anyway: reading the clocks here (the wall
        // clock for the deadline, the CPU clock for the remaining budget)
        // costs nothing a migrating call pays.
        let deadline = asked.wait.and_then(|w| Instant::now().checked_add(w));
        let remaining = self.meter.as_ref().map_or(UNLIMITED, |m| m.remaining());
        let ticket = self
            .reply
            .get_or_insert_with(|| Arc::new(ReplySlot::default()))
            .arm();
        let call = Handoff {
            thread: self.thread,
            caller: caller.id,
            slot,
            entry,
            plan,
            scalars,
            ancestors: self.ancestors.extended(self.domains()),
            budget: asked.budget.min(remaining),
            deadline,
            reply: ticket.clone(),
        };
        let held = self.held_in(callee.id);
        if let Err(code) = self.engine.forward(callee.id, call, held) {
            return self.refuse(Some(callee), slot, code, &callee.name);
        }
        let reply = ticket.wait(deadline);
        if reply.entered() {
            self.engine.counters().call();
            self.time.calls += 1;
        }
        match reply {
            Reply::Returned {
                status,
                results,
                time,
            } => {
                self.engine.counters().ret();
                self.time.absorb_served(&time);
                self.resume_caller(callee, status, [results[0], results[1], 0, 0])
            }
            Reply::Refused(code) => self.refuse(Some(callee), slot, code, &callee.name),
            Reply::Fault(report) => self.unwind(callee, report),
            Reply::Exited => self.resume_caller(callee, ErrorCode::CalleeExited as u64, [0; 4]),
            Reply::TimedOut => self.refuse(
                Some(callee),
                slot,
                ErrorCode::Timeout,
                &"no reply within the call's wait limit",
            ),
        }
    }
}
