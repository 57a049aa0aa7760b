//! The migration engine: a thread's invocation chain and the moves that
//! change it, `call` (A → B on a fresh stack of B) and `ret` (B → A, copying
//! results back). Split by concern: [`dispatch`] decodes an exit into a
//! move, [`call`] builds frames, [`ret`] settles answers, [`unwind`] pops
//! frames after faults and `Exit` (only a thread's bottom frame ends the
//! thread), [`serve`] runs a handed-off call for a message-mode server.
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

mod budget;
mod call;
use budget::Asked;
use call::Caller;
pub mod context;
mod dispatch;
mod mapped;
mod ret;
mod serve;
mod unwind;

pub use context::Engine;

use crate::domain::lease::Lease;
use crate::domain::Domain;
use crate::ids::{DomainId, EntryIndex, Slot, StackIndex, ThreadId};
use crate::thread::arglist::ArgPlan;
use crate::thread::copy::Kept;
use crate::thread::handoff::{ReplySlot, Ticket};
use crate::thread::profile::WorkLog;
use crate::thread::{Ancestors, NotStarted, ThreadResult, ThreadTime, MAX_DEPTH};
use crate::vcpu::Vcpu;
use crate::watch::{Meter, Registration};
use shared_abi::MAX_SCALARS;
use std::sync::Arc;

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

/// What the observer saw of a call, captured only when one is installed:
/// the input bytes are those the VMM copied, kept at the moment it copied
/// them (never read again from guest memory another vCPU can write).
struct Observed {
    caller: DomainId,
    slot: Slot,
    scalars: [u64; MAX_SCALARS],
    inputs: Kept,
}

/// One activation of the thread in one domain.
struct Frame<'e> {
    domain: &'e Domain,
    entry: EntryIndex,
    vcpu: Vcpu,
    stack: StackIndex,
    top: u64,
    plan: ArgPlan,
    /// The objects lent to this frame (mapped into its domain's lease
    /// window), in descriptor order: taken back when the frame is popped.
    leases: Vec<Lease>,
    observed: Option<Box<Observed>>,
    /// VMM cycles spent on the call path that created this frame.
    enter_cycles: u64,
    /// Host cycles of the copy into this frame's stack.
    copy_in_cycles: u64,
    /// Its id on the thread's meter (a new one when it gets a grace).
    id: u64,
    /// A CPU budget this frame is under ran out: it is resumed with
    /// `Timeout`, and its own caller gets `Timeout` when it returns.
    timed_out: bool,
    /// It had its grace period already (there is only one).
    graced: bool,
    /// It runs on the thread's window stack (mapped mode): the memory and
    /// data region the VMM uses for it include the thread's window slot.
    view: Option<Box<mapped::FrameView>>,
    /// It runs on the window and called out: the window below this is
    /// free for its callees (its checked stack pointer less the red zone).
    window_floor: Option<u64>,
    /// Its entry mapped the window slot into its domain; its exit unmaps it.
    maps_window: bool,
}

impl Frame<'_> {
    /// The memory the VMM reads and writes for this frame.
    fn mem(&self) -> &vm_memory::GuestMemoryMmap {
        self.view.as_ref().map_or(self.domain.mem(), |v| &v.mem)
    }

    /// What this frame's descriptors and hypercall pointers may name.
    fn region(&self) -> &crate::region::DataRegion {
        self.view
            .as_ref()
            .map_or(&self.domain.region, |v| &v.region)
    }
}

/// The result of running one exit's worth of the thread.
enum Step {
    /// Keep running the (possibly new) top frame.
    Continue,
    /// The thread is over.
    Done(ThreadResult),
}

/// How a thread run to its end went.
#[derive(Debug)]
pub struct ThreadRun {
    /// How it ended.
    pub result: ThreadResult,
    /// Where its time went.
    pub time: ThreadTime,
    /// Its VMM-work and copy samples, when the system was profiling.
    pub work: Option<Box<WorkLog>>,
}

/// A migrating thread's invocation chain (A→B→C…): its frames, bottom first.
/// Every frame names its domain by reference, so a frame in an unknown
/// domain cannot exist.
pub struct Chain<'e, E: Engine> {
    engine: &'e E,
    thread: ThreadId,
    frames: Vec<Frame<'e>>,
    time: ThreadTime,
    last_exit: u64,
    pending: Pending,
    work: Option<Box<WorkLog>>,
    /// Domains this thread is in on other host threads (message mode).
    ancestors: Ancestors,
    /// A served chain's bottom frame answers this caller domain, whose
    /// thread waits on another host thread.
    served_caller: Option<&'e Domain>,
    /// A served chain's claim on its caller's reply slot: taken before
    /// every copy into or out of the caller, which may have stopped waiting.
    ticket: Option<Ticket>,
    /// Where this chain's message-mode calls get their replies.
    reply: Option<Arc<ReplySlot>>,
    /// This host thread's budget record, while the watchdog lists it.
    meter: Option<Arc<Meter>>,
    /// Its stack-window slot (mapped mode), once it needs one; declared
    /// after `frames`: the mappings go only once no frame uses them.
    window: Option<mapped::ThreadWindow<'e>>,
    /// Keeps the meter listed; dropped with the chain, on this thread.
    _registration: Option<Registration>,
}

/// Answer a hypercall other than `Call`: RAX and RDI, RSI, RDX, R10
/// (every other register, R8 included, is preserved).
fn answer(vcpu: &mut Vcpu, status: u64, values: [u64; 4]) {
    vcpu.set_regs(|r| {
        r.rax = status;
        r.rdi = values[0];
        r.rsi = values[1];
        r.rdx = values[2];
        r.r10 = values[3];
    });
}

/// Answer a `Call`: as [`answer`], plus R8 = the callee's generation as of
/// now, so a caller notices that its callee restarted (and lost its state)
/// since an earlier answer; 0 when the VMM could not tell which callee was
/// meant (`BadPointer` on the request, `BadSlot`).
fn answer_call(vcpu: &mut Vcpu, status: u64, values: [u64; 4], callee: Option<&Domain>) {
    let generation = callee.map_or(0, Domain::generation);
    answer(vcpu, status, values);
    vcpu.set_regs(|r| r.r8 = generation);
}

impl<'e, E: Engine> Chain<'e, E> {
    /// An empty chain for `thread`. A thread's own chain is profiled when
    /// the system is; a served chain never is (nothing would collect it).
    fn new(
        engine: &'e E,
        thread: ThreadId,
        ancestors: Ancestors,
        served_caller: Option<&'e Domain>,
    ) -> Self {
        let work = (served_caller.is_none() && engine.profiling()).then(WorkLog::prefaulted);
        let registration = engine.watchdog().and_then(|w| {
            w.register(thread.raw())
                .inspect_err(|e| log::warn!("{thread} runs without CPU budgets: {e}"))
                .ok()
        });
        Chain {
            engine,
            thread,
            frames: Vec::with_capacity(MAX_DEPTH),
            time: ThreadTime::default(),
            last_exit: 0,
            pending: Pending::Nothing,
            work,
            ancestors,
            served_caller,
            ticket: None,
            reply: None,
            meter: registration.as_ref().map(|r| Arc::clone(r.meter())),
            window: None,
            _registration: registration,
        }
    }

    /// Run thread `thread` from `entry` of `domain` with `scalars` to its
    /// end, on this host thread.
    pub fn run_thread(
        engine: &'e E,
        thread: ThreadId,
        domain: &'e Domain,
        entry: EntryIndex,
        scalars: [u64; MAX_SCALARS],
    ) -> ThreadRun {
        let mut chain = Chain::new(engine, thread, Ancestors::default(), None);
        if let Err(e) = chain.ensure_window(domain) {
            log::warn!("{thread} not started: {e}");
            return ThreadRun {
                result: ThreadResult::NotStarted(NotStarted::NoWindowSlot),
                time: ThreadTime::default(),
                work: None,
            };
        }
        let asked = Asked::root(domain);
        match chain.enter(domain, None, entry, ArgPlan::empty(), scalars, asked) {
            Ok(frame) => chain.push(frame, asked),
            Err(code) => {
                return ThreadRun {
                    result: ThreadResult::NotStarted(NotStarted::Refused {
                        domain: domain.name.clone(),
                        code,
                    }),
                    time: ThreadTime::default(),
                    work: None,
                }
            }
        }
        let result = chain.run_to_end();
        ThreadRun {
            result,
            time: chain.time,
            work: chain.work,
        }
    }

    /// Step until the thread is over.
    fn run_to_end(&mut self) -> ThreadResult {
        loop {
            if let Step::Done(result) = self.step() {
                return result;
            }
        }
    }

    /// Domains of the chain, bottom first: the thread's invocation chain.
    fn domains(&self) -> impl Iterator<Item = DomainId> + '_ {
        self.frames.iter().map(|f| f.domain.id)
    }

    /// Frames this thread has in `domain`, here and on other host threads.
    fn held_in(&self, domain: DomainId) -> u32 {
        let here = self.frames.iter().filter(|f| f.domain.id == domain).count();
        let elsewhere = self
            .ancestors
            .as_slice()
            .iter()
            .filter(|d| **d == domain)
            .count();
        u32::try_from(here + elsewhere).unwrap_or(u32::MAX)
    }

    /// The depth a new frame would have, across every host thread.
    fn depth(&self) -> usize {
        self.ancestors.len() + self.frames.len()
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
                    w.work(call_path + cycles);
                }
            }
        }
    }

    /// The chain has no frame left but was asked to run: an engine bug
    /// (every path that pops the last frame ends the thread). Stated, not
    /// hidden: it fails debug builds and is logged in release ones.
    fn lost(&self, why: &'static str) -> Step {
        debug_assert!(false, "{} lost: {why}", self.thread);
        log::error!("{} lost: {why} (engine bug)", self.thread);
        Step::Done(ThreadResult::Lost(why))
    }
}
