//! Exported entries: what a raw entry sees ([`Call`]), and the dispatcher
//! the VMM starts every invocation at, which runs a served interface's
//! method or a raw entry.

use crate::hypercall::hypercall_scalar;
use crate::image::{tables, Target};
use ferry_interface::Incoming;
use shared_abi::{runtime_status, ArgMode, Hypercall, Invocation, MAX_ARGS};

/// An entry: reads its invocation through [`Call`], returns two results or
/// a non-zero application status (the caller sees `CallError::App(status)`).
pub type EntryFn = fn(&mut Call) -> Result<[u64; 2], u32>;

/// Status returned when the VMM starts an entry index the table lacks
/// (`shared_abi::runtime_status::UNKNOWN_ENTRY`, kept under its old name).
pub const UNKNOWN_ENTRY_STATUS: u64 = runtime_status::UNKNOWN_ENTRY as u64;

/// Status reported when an entry returns `Err(0)`, which would read as
/// success (`shared_abi::runtime_status::BAD_ERROR`, kept under its old name).
pub const BAD_ERROR_STATUS: u64 = runtime_status::BAD_ERROR as u64;

/// What an entry sees of its invocation: scalars, objects (the copies on
/// this stack) and who called.
pub struct Call {
    inv: &'static mut Invocation,
}

impl Call {
    /// Scalar `i` (0 for `i >= 6`).
    pub fn scalar(&self, i: usize) -> u64 {
        self.inv.scalars.get(i).copied().unwrap_or(0)
    }

    /// Number of objects.
    pub fn nargs(&self) -> usize {
        (self.inv.nargs as usize).min(MAX_ARGS)
    }

    /// Object `i`'s bytes (any mode), or `None` if there is no object `i`.
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        let d = self.inv.args[..self.nargs()].get(i)?;
        if d.len == 0 {
            return Some(&[]);
        }
        // SAFETY: the VMM copied object `i` to `addr..addr+len` on this
        // invocation's stack, or lent it there (mapped in the lease window),
        // and either stays live until the dispatcher's Return; the borrow of
        // `self` keeps `arg_mut` from aliasing it.
        Some(unsafe { core::slice::from_raw_parts(d.addr as *const u8, d.len as usize) })
    }

    /// Object `i`'s bytes, writable, if it is OUT or INOUT (`None` for IN
    /// objects and missing ones). What is here when the entry returns `Ok`
    /// goes back to the caller.
    pub fn arg_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let n = self.nargs();
        let d = self.inv.args[..n].get(i)?;
        if !ArgMode::from_u32(d.mode)?.copies_out() {
            return None;
        }
        if d.len == 0 {
            return Some(&mut []);
        }
        // SAFETY: as in `arg`; objects do not overlap each other or the
        // invocation frame, and `&mut self` makes this borrow unique.
        Some(unsafe { core::slice::from_raw_parts_mut(d.addr as *mut u8, d.len as usize) })
    }

    /// Whether object `i` was lent (its pages mapped from the caller for
    /// this call: read-only if IN), not copied: `shared_abi::ARG_LEND` in
    /// its descriptor. `false` for a missing object.
    pub fn lent(&self, i: usize) -> bool {
        self.inv.args[..self.nargs()]
            .get(i)
            .is_some_and(|d| d.flags & shared_abi::ARG_LEND != 0)
    }

    /// The calling domain's id (`shared_abi::NO_CALLER` for a thread's
    /// first frame): the callee's credential of who asked.
    pub fn caller_domain(&self) -> u32 {
        self.inv.caller_domain
    }

    /// The migrating thread's id (the same in every domain it visits).
    pub fn thread_id(&self) -> u64 {
        self.inv.thread_id
    }

    /// Depth of this invocation in the thread's chain (first frame: 0).
    pub fn depth(&self) -> u32 {
        self.inv.depth
    }

    /// The raw invocation frame.
    pub fn invocation(&self) -> &Invocation {
        self.inv
    }
}

/// Where the VMM starts every invocation (announced in `Hello`): RDI → the
/// `Invocation` on the fresh stack, RSI = entry index. Runs the entry (a
/// served method through its interface's dispatch, or a raw entry) and
/// returns its outcome with the `Return` hypercall; never returns itself.
pub(crate) extern "C" fn dispatch(inv: *mut Invocation, entry: u64) -> ! {
    let outcome = match tables().targets.get(entry as usize) {
        Some(Target::Raw(f)) => {
            // SAFETY: the VMM passes a valid, exclusively ours frame that
            // lives on this stack until Return (which never comes back).
            let inv = unsafe { &mut *inv };
            let mut call = Call { inv };
            f(&mut call)
        }
        Some(Target::Served(server, method)) => {
            // SAFETY: as above; the VMM copied every object to its own
            // disjoint place on this stack, none overlapping the frame,
            // all live until Return.
            let mut incoming = unsafe { Incoming::new(&*inv) };
            server.dispatch(*method, &mut incoming)
        }
        None => Err(runtime_status::UNKNOWN_ENTRY),
    };
    let (status, r) = match outcome {
        Ok(r) => (0, r),
        Err(0) => (BAD_ERROR_STATUS, [0, 0]),
        Err(code) => (u64::from(code), [0, 0]),
    };
    loop {
        hypercall_scalar(Hypercall::Return, [status, r[0], r[1], 0, 0, 0]);
    }
}
