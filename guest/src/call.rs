//! Migrating calls into other domains.

use crate::hypercall::{hypercall, rdtsc};
use crate::samples::record;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};
use shared_abi::{
    ArgDesc, ArgMode, CallRequest, CallStatus, ErrorCode, Hypercall, MAX_ARGS, MAX_SCALARS,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Why a [`call`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Ferry refused or failed the call (never `ErrorCode::Fault`: that one
    /// is [`CallError::Fault`]). `ErrorCode::Internal` is the VMM's own
    /// failure: nothing ran in the callee and the caller did nothing wrong.
    Ferry(ErrorCode),
    /// The callee returned this application status.
    App(u32),
    /// The callee faulted (or panicked: `vector` is then
    /// `shared_abi::pseudo_vector::PANIC`); registers as the VMM reported them.
    Fault {
        /// CPU exception vector, or a `shared_abi::pseudo_vector`.
        vector: u64,
        /// RIP of the faulting instruction.
        rip: u64,
        /// The exception's error code (0 if it has none).
        error_code: u64,
        /// CR2 (the faulting address of a page fault).
        cr2: u64,
    },
    /// A status word this ABI version does not define.
    Unknown(u64),
}

impl CallError {
    /// The raw status word the VMM returned in RAX, for tests and logs.
    pub fn code(&self) -> u64 {
        match *self {
            Self::Ferry(e) => CallStatus::Ferry(e).to_u64(),
            Self::App(n) => CallStatus::App(n).to_u64(),
            Self::Fault { .. } => ErrorCode::Fault as u64,
            Self::Unknown(v) => v,
        }
    }

    /// Decode a non-zero status word and the registers that came with it.
    pub(crate) fn decode(status: u64, regs: [u64; 4]) -> Self {
        match CallStatus::from_u64(status) {
            CallStatus::Ferry(ErrorCode::Fault) => Self::Fault {
                vector: regs[0],
                rip: regs[1],
                error_code: regs[2],
                cr2: regs[3],
            },
            CallStatus::Ferry(e) => Self::Ferry(e),
            CallStatus::App(n) => Self::App(n),
            // Ok is handled by the caller; treat a stray 0 as unknown.
            CallStatus::Ok | CallStatus::Unknown(_) => Self::Unknown(status),
        }
    }
}

/// Only plain-bytes types travel as call objects: zerocopy's `IntoBytes`
/// (no padding: the VMM copies raw bytes out), `FromBytes` (every bit
/// pattern valid: it copies raw bytes into OUT/INOUT objects) and
/// `Immutable` (no interior mutability behind a shared borrow). This also
/// keeps `&Vec<u8>` from silently sending the `Vec`'s header instead of its
/// contents: write `&v[..]`.
pub trait Pod: IntoBytes + FromBytes + Immutable {}

impl<T: ?Sized + IntoBytes + FromBytes + Immutable> Pod for T {}

/// One object of a call's argument list: a descriptor of caller memory,
/// borrowed for the duration of the call (`'a`) so the VMM's copy-back into
/// OUT/INOUT objects cannot race with Rust references.
#[derive(Debug)]
pub struct Arg<'a> {
    desc: ArgDesc,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Arg<'a> {
    fn new(addr: u64, len: usize, mode: ArgMode) -> Self {
        Self {
            desc: ArgDesc {
                addr,
                len: len as u64,
                mode: mode as u32,
                flags: 0,
            },
            _borrow: PhantomData,
        }
    }

    /// An IN object: the callee gets a copy of `v`; never written back.
    pub fn input<T: ?Sized + Pod>(v: &'a T) -> Self {
        let len = core::mem::size_of_val(v);
        Self::new(v as *const T as *const u8 as u64, len, ArgMode::In)
    }

    /// An OUT object: the callee gets zeros; `v` is overwritten with the
    /// callee's bytes only if the call succeeds.
    pub fn output<T: ?Sized + Pod>(v: &'a mut T) -> Self {
        let len = core::mem::size_of_val(v);
        Self::new(v as *mut T as *mut u8 as u64, len, ArgMode::Out)
    }

    /// An INOUT object: copied in, and copied back if the call succeeds.
    pub fn inout<T: ?Sized + Pod>(v: &'a mut T) -> Self {
        let len = core::mem::size_of_val(v);
        Self::new(v as *mut T as *mut u8 as u64, len, ArgMode::InOut)
    }

    /// Ask the VMM to lend this object instead of copying it
    /// ([`shared_abi::ARG_LEND`]): for the call, the callee works on these
    /// very pages, mapped into its lease window (read-only for an IN
    /// object). Only whole pages are lent (page-aligned start, length a
    /// multiple of 4 KiB: see [`PageBuf`](crate::PageBuf)); anything else,
    /// or a call to a message-mode domain, is copied as without this.
    /// Lending an OUT object zero-fills it when the call starts; a lent
    /// OUT/INOUT object holds whatever the callee wrote, even if the call
    /// fails.
    pub fn lend(mut self) -> Self {
        self.desc.flags |= shared_abi::ARG_LEND;
        self
    }

    /// Any descriptor at all, for tests that feed the VMM hostile input.
    ///
    /// # Safety
    /// If the VMM accepts the descriptor, it reads and (for OUT/INOUT) writes
    /// that memory: it must be memory the caller may let it write.
    pub unsafe fn raw(desc: ArgDesc) -> Self {
        Self {
            desc,
            _borrow: PhantomData,
        }
    }

    /// The descriptor as it goes on the wire.
    pub fn desc(&self) -> ArgDesc {
        self.desc
    }
}

/// Limits a caller sets on one call: the same type typed stubs take
/// (`ferry_interface::Limits`), so raw and typed calls share it.
pub use ferry_interface::Limits;

/// A call's outcome and the callee's generation as of the answer: a caller
/// that sees the generation change knows the callee restarted (and lost
/// its state) since its earlier call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The results, or why there are none.
    pub result: Result<[u64; 2], CallError>,
    /// The callee's generation (0 until its first restart; 0 too when the
    /// VMM could not tell which callee was meant, e.g. `BadSlot`).
    pub generation: u64,
}

/// Call capability `slot` of this domain with `scalars` and `args` (the
/// thread migrates into the callee and back). Returns the callee's two
/// results. Times itself with `rdtsc` around the hypercall and records a
/// sample for the slot.
///
/// More than 6 scalars or 16 args fail with `TooManyArgs` without a
/// hypercall.
pub fn call(slot: u32, scalars: &[u64], args: &mut [Arg<'_>]) -> Result<[u64; 2], CallError> {
    call_with(slot, scalars, args, Limits::default()).result
}

/// [`call`] with explicit [`Limits`], answering the callee's generation too.
pub fn call_with(slot: u32, scalars: &[u64], args: &mut [Arg<'_>], limits: Limits) -> Answer {
    if scalars.len() > MAX_SCALARS || args.len() > MAX_ARGS {
        return Answer {
            result: Err(CallError::Ferry(ErrorCode::TooManyArgs)),
            generation: 0,
        };
    }
    let mut req = CallRequest {
        slot,
        nargs: args.len() as u32,
        ..CallRequest::default()
    };
    req.scalars[..scalars.len()].copy_from_slice(scalars);
    for (d, a) in req.args.iter_mut().zip(args.iter()) {
        *d = a.desc;
    }
    // SAFETY: every descriptor came from a live borrow (`Arg::input` etc.,
    // held for `'_` by `args`) or from `Arg::raw`, whose caller vouched for
    // it; the request itself is a local.
    let (status, regs) = unsafe { timed_call(&req, limits) };
    let [r0, r1, r2, r3, generation] = regs;
    let result = if status == 0 {
        Ok([r0, r1])
    } else {
        Err(CallError::decode(status, [r0, r1, r2, r3]))
    };
    Answer { result, generation }
}

/// The `Call` hypercall on `req` with `limits`, timed with `rdtsc` and
/// recorded in the sample ring under `req.slot`: the one path of both raw
/// ([`call_with`]) and typed ([`Vmm`](crate::Vmm)) calls, so `ferry bench`
/// sees them alike.
///
/// # Safety
/// As for [`call_raw`]: if the VMM accepts the request, it writes
/// OUT/INOUT objects back into the memory they name.
#[inline(always)]
pub(crate) unsafe fn timed_call(req: &CallRequest, limits: Limits) -> (u64, [u64; 5]) {
    let t0 = rdtsc();
    // SAFETY: forwarded to the caller; the request is a live reference.
    let answer = unsafe {
        hypercall(
            Hypercall::Call as u32,
            [
                core::ptr::from_ref(req) as u64,
                limits.budget_us,
                limits.wait_us,
                0,
                0,
                0,
            ],
        )
    };
    let t1 = rdtsc();
    let cycles = t1.wrapping_sub(t0);
    record(req.slot, cycles);
    LAST_CALL_CYCLES.store(cycles, Ordering::Relaxed);
    answer
}

/// Cycles of the latest timed `Call` hypercall in this domain.
static LAST_CALL_CYCLES: AtomicU64 = AtomicU64::new(0);

/// The cycles the latest `Call` of this domain spent in its hypercall
/// (the same figure its latency sample holds), so a caller timing a whole
/// call can subtract the exit and keep its own work: what the benchmark's
/// typed-stub-against-raw-API figure measures. Shared by the domain's
/// vCPUs: meaningful when one thread calls at a time.
pub fn last_call_cycles() -> u64 {
    LAST_CALL_CYCLES.load(Ordering::Relaxed)
}

/// The `Call` hypercall on any request, however malformed (also a wild
/// `req` pointer), with default limits: returns RAX and RDI, RSI, RDX, R10,
/// R8 untouched. Records no sample.
///
/// # Safety
/// If the VMM accepts the request, it writes OUT/INOUT objects back into
/// the memory they name: that memory must be the caller's to give.
pub unsafe fn call_raw(req: *const CallRequest) -> (u64, [u64; 5]) {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall(Hypercall::Call as u32, [req as u64, 0, 0, 0, 0, 0]) }
}
