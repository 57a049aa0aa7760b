//! Validation of a caller's argument list: a pure function, so it can be
//! property-tested without a VM.
//!
//! Everything a guest hands over is hostile until this says otherwise: the
//! count, each mode, each range (both ends, against the caller's data
//! region, without overflow), the absence of overlap between ranges the VMM
//! will write back, and the total size against the callee's stack budget.
//! The result also fixes where each object goes on the callee's new stack,
//! so the copy step does no arithmetic of its own.

use crate::region::{DataRegion, GuestRange, RangeError};
use arrayvec::ArrayVec;
use shared_abi::layout::{LEASE_WINDOW_SIZE, STACK_WINDOW_BASE, STACK_WINDOW_SIZE};
use shared_abi::{ArgMode, CallRequest, ErrorCode, Invocation, ARG_FLAGS, ARG_LEND, MAX_ARGS};

/// Objects are placed on the callee's stack at this alignment.
pub const OBJECT_ALIGN: u64 = 16;

/// Bytes of the invocation frame on the callee's stack (16-aligned).
pub const INVOCATION_FOOTPRINT: u64 = round_up(core::mem::size_of::<Invocation>() as u64);

const fn round_up(v: u64) -> u64 {
    (v + OBJECT_ALIGN - 1) & !(OBJECT_ALIGN - 1)
}

/// Why an argument list was refused; each maps to one [`ErrorCode`].
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgListError {
    #[error("{0} descriptors (at most {MAX_ARGS})")]
    TooManyArgs(u32),
    #[error("descriptor {index}: mode {mode} / flags {flags:#x} is not valid")]
    BadMode {
        /// Which descriptor.
        index: usize,
        /// Its mode word.
        mode: u32,
        /// Its flags word.
        flags: u32,
    },
    #[error("descriptor {index}: {range}")]
    Overflow {
        /// Which descriptor.
        index: usize,
        /// The range error.
        range: RangeError,
    },
    #[error("descriptor {index}: {range}")]
    OutOfRange {
        /// Which descriptor.
        index: usize,
        /// The range error.
        range: RangeError,
    },
    #[error("output descriptors {a} and {b} overlap")]
    OverlappingOutputs {
        /// First descriptor.
        a: usize,
        /// Second descriptor.
        b: usize,
    },
    #[error("objects need {need} bytes of the callee's stack, budget is {budget}")]
    TooLarge {
        /// Bytes needed, invocation frame included.
        need: u64,
        /// The callee's budget.
        budget: u64,
    },
    #[error(
        "lent objects need {need} bytes of the callee's lease window, it has {LEASE_WINDOW_SIZE}"
    )]
    WindowTooSmall {
        /// Bytes of all lent objects.
        need: u64,
    },
}

impl ArgListError {
    /// The code the caller receives.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooManyArgs(_) => ErrorCode::TooManyArgs,
            Self::BadMode { .. } => ErrorCode::BadMode,
            Self::Overflow { .. } => ErrorCode::Overflow,
            Self::OutOfRange { .. } => ErrorCode::OutOfRange,
            Self::OverlappingOutputs { .. } => ErrorCode::OverlappingOutputs,
            Self::TooLarge { .. } | Self::WindowTooSmall { .. } => ErrorCode::TooLarge,
        }
    }
}

/// One accepted object: where it is in the caller and where it goes below
/// the top of the callee's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Where it is in the caller (checked; empty for a zero-length object).
    pub caller: GuestRange,
    /// Its mode, decoded once by the validator.
    pub mode: ArgMode,
    /// The copy starts `offset_from_top` bytes below the callee stack's top
    /// (0 for a lent object or one passed in place: it takes no room on the stack).
    pub offset_from_top: u64,
    /// Lent (mapped into the callee's lease window), not copied.
    pub lent: bool,
    /// Passed in place (mapped stack mode): the object lies on the
    /// thread's window stack, which the callee runs on too; it is neither
    /// copied in nor back, and the callee gets the caller's address.
    pub in_place: bool,
}

impl Default for Placed {
    fn default() -> Self {
        Self {
            caller: GuestRange::EMPTY,
            mode: ArgMode::In,
            offset_from_top: 0,
            lent: false,
            in_place: false,
        }
    }
}

impl Placed {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.caller.len()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.caller.is_empty()
    }
}

/// An argument list that passed every check, with its callee-side layout.
/// Fixed capacity: validating allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgPlan {
    /// The objects, in descriptor order.
    objects: ArrayVec<Placed, MAX_ARGS>,
    /// The invocation frame starts this many bytes below the stack's top.
    pub invocation_offset: u64,
}

impl ArgPlan {
    /// No objects: a thread's first entry, which has no caller.
    pub fn empty() -> Self {
        Self {
            objects: ArrayVec::new(),
            invocation_offset: INVOCATION_FOOTPRINT,
        }
    }

    /// The accepted objects.
    pub fn objects(&self) -> &[Placed] {
        &self.objects
    }

    /// How many.
    pub fn count(&self) -> usize {
        self.objects.len()
    }

    /// Whether any object is lent (the call maps pages into the callee).
    pub fn lends(&self) -> bool {
        self.objects.iter().any(|p| p.lent)
    }
}

/// Whether an object marked [`ARG_LEND`] at `addr` of `len` bytes can be
/// lent: whole pages only (a memory slot maps whole pages).
pub const fn lendable(addr: u64, len: u64) -> bool {
    crate::region::whole_pages(addr, len)
}

/// Check `req`'s argument list against the caller's `region` and the callee's
/// stack `budget`, and lay the objects out from the top of the callee's
/// stack. Nothing is lent: an object marked [`ARG_LEND`] is copied.
pub fn validate(
    req: &CallRequest,
    region: &DataRegion,
    budget: u64,
) -> Result<ArgPlan, ArgListError> {
    validate_with(req, region, budget, false, None)
}

/// [`validate`], and with `lending`, every object marked [`ARG_LEND`] that
/// is [`lendable`] is planned as lent: it takes no stack room, and all lent
/// objects together must fit the callee's lease window.
pub fn validate_lending(
    req: &CallRequest,
    region: &DataRegion,
    budget: u64,
    lending: bool,
) -> Result<ArgPlan, ArgListError> {
    validate_with(req, region, budget, lending, None)
}

/// [`validate`], for a callee that runs on the thread's window stack
/// `[lo, hi)` (mapped stack mode): an object wholly inside it is passed in
/// place (no copy, no room taken below the top); every other object is
/// laid out as [`validate`] does.
pub fn validate_in_place(
    req: &CallRequest,
    region: &DataRegion,
    budget: u64,
    in_place: Option<(u64, u64)>,
) -> Result<ArgPlan, ArgListError> {
    validate_with(req, region, budget, false, in_place)
}

/// The one validator behind the three above: an object inside `in_place`
/// passes in place; else, with `lending`, a lendable object marked
/// [`ARG_LEND`] is lent; every other object is copied.
pub fn validate_with(
    req: &CallRequest,
    region: &DataRegion,
    budget: u64,
    lending: bool,
    in_place: Option<(u64, u64)>,
) -> Result<ArgPlan, ArgListError> {
    let count = req.nargs as usize;
    let descs = req
        .args
        .get(..count)
        .ok_or(ArgListError::TooManyArgs(req.nargs))?;
    let mut plan = ArgPlan {
        objects: ArrayVec::new(),
        invocation_offset: 0,
    };
    let mut used: u64 = 0;
    let mut window: u64 = 0;
    for (index, d) in descs.iter().enumerate() {
        let mode = match ArgMode::from_u32(d.mode) {
            Some(m) if d.flags & !ARG_FLAGS == 0 => m,
            _ => {
                return Err(ArgListError::BadMode {
                    index,
                    mode: d.mode,
                    flags: d.flags,
                })
            }
        };
        let caller = if d.len > 0 {
            match region.check(d.addr, d.len) {
                Ok(r) => r,
                Err(e @ RangeError::Overflow { .. }) => {
                    return Err(ArgListError::Overflow { index, range: e })
                }
                Err(e @ RangeError::Outside { .. }) => {
                    return Err(ArgListError::OutOfRange { index, range: e })
                }
            }
        } else {
            GuestRange::EMPTY
        };
        let here = !caller.is_empty()
            && in_place.is_some_and(|(lo, hi)| caller.addr() >= lo && caller.end() <= hi);
        // An object on a thread's window stack (mapped mode) is never lent:
        // its pages are the thread's, not the caller domain's; it is copied.
        let on_window = caller.addr() >= STACK_WINDOW_BASE
            && caller.addr() < STACK_WINDOW_BASE.saturating_add(STACK_WINDOW_SIZE);
        let lent =
            !here && !on_window && lending && d.flags & ARG_LEND != 0 && lendable(d.addr, d.len);
        if lent {
            window = window.saturating_add(d.len);
        } else if !here {
            // In range implies len < 2^64 - addr, so this cannot overflow for
            // realistic memory; saturate anyway so the budget check catches it.
            used = used.saturating_add(round_up(d.len.min(u64::MAX - OBJECT_ALIGN)));
        }
        // Cannot fail: `descs` has at most MAX_ARGS entries.
        let _ = plan.objects.try_push(Placed {
            caller,
            mode,
            offset_from_top: if lent || here { 0 } else { used },
            lent,
            in_place: here,
        });
    }
    for (a, pa) in plan.objects().iter().enumerate() {
        for (b, pb) in plan.objects().iter().enumerate().skip(a + 1) {
            let both_out = pa.mode.copies_out() && pb.mode.copies_out();
            if both_out && pa.caller.overlaps(pb.caller) {
                return Err(ArgListError::OverlappingOutputs { a, b });
            }
        }
    }
    let need = used.saturating_add(INVOCATION_FOOTPRINT);
    if need > budget {
        return Err(ArgListError::TooLarge { need, budget });
    }
    if window > LEASE_WINDOW_SIZE {
        return Err(ArgListError::WindowTooSmall { need: window });
    }
    plan.invocation_offset = need;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shared_abi::layout::PAGE_SIZE;
    use shared_abi::ArgDesc;

    const LO: u64 = 0x10_0000;
    const HI: u64 = 0x20_0000;

    fn region() -> DataRegion {
        DataRegion::from_pieces(vec![(LO, HI), (0x30_0000, 0x30_4000)])
    }

    fn req(descs: &[ArgDesc]) -> CallRequest {
        let mut r = CallRequest {
            nargs: u32::try_from(descs.len()).unwrap(),
            ..Default::default()
        };
        r.args[..descs.len()].copy_from_slice(descs);
        r
    }

    fn d(addr: u64, len: u64, mode: ArgMode) -> ArgDesc {
        ArgDesc {
            addr,
            len,
            mode: mode as u32,
            flags: 0,
        }
    }

    #[test]
    fn each_class_is_named() {
        let r = region();
        let big = 1 << 20;
        let mut many = req(&[]);
        many.nargs = 17;
        assert_eq!(validate(&many, &r, big), Err(ArgListError::TooManyArgs(17)));
        let bad = ArgDesc {
            addr: LO,
            len: 1,
            mode: 9,
            flags: 0,
        };
        assert_eq!(
            validate(&req(&[bad]), &r, big).unwrap_err().code(),
            ErrorCode::BadMode
        );
        let res = ArgDesc {
            flags: 2,
            ..d(LO, 1, ArgMode::In)
        };
        assert_eq!(
            validate(&req(&[res]), &r, big).unwrap_err().code(),
            ErrorCode::BadMode
        );
        let ovf = d(u64::MAX - 4, 16, ArgMode::In);
        assert_eq!(
            validate(&req(&[ovf]), &r, big).unwrap_err().code(),
            ErrorCode::Overflow
        );
        let out = d(HI - 8, 16, ArgMode::In);
        assert_eq!(
            validate(&req(&[out]), &r, big).unwrap_err().code(),
            ErrorCode::OutOfRange
        );
        let a = d(LO, 64, ArgMode::Out);
        let b = d(LO + 32, 64, ArgMode::InOut);
        assert_eq!(
            validate(&req(&[a, b]), &r, big),
            Err(ArgListError::OverlappingOutputs { a: 0, b: 1 })
        );
        let huge = d(LO, 0x8000, ArgMode::In);
        assert_eq!(
            validate(&req(&[huge]), &r, 0x4000).unwrap_err().code(),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn inputs_may_overlap_and_empty_objects_go_anywhere() {
        let r = region();
        let a = d(LO, 64, ArgMode::In);
        let b = d(LO, 64, ArgMode::Out);
        let empty = d(1, 0, ArgMode::Out);
        let plan = validate(&req(&[a, b, empty]), &r, 1 << 20).unwrap();
        assert_eq!(plan.count(), 3);
        assert_eq!(plan.objects()[0].offset_from_top, 64);
        assert_eq!(plan.objects()[1].offset_from_top, 128);
        assert_eq!(plan.invocation_offset, 128 + INVOCATION_FOOTPRINT);
    }

    #[test]
    fn whole_pages_marked_lend_are_lent_the_rest_copied() {
        let r = DataRegion::from_pieces(vec![(0x10_0000, 0x30_0000)]);
        let lend = |addr, len, mode: ArgMode| ArgDesc {
            flags: ARG_LEND,
            ..d(addr, len, mode)
        };
        let descs = [
            lend(0x10_0000, 0x2000, ArgMode::In),
            lend(0x10_0800, 0x1000, ArgMode::Out), // not page-aligned: copied
            lend(0x12_0000, 0x1800, ArgMode::InOut), // not whole pages: copied
            lend(0x13_0000, 0, ArgMode::Out),      // empty: nothing to lend
            d(0x14_0000, 0x1000, ArgMode::In),     // not marked: copied
        ];
        let plan = validate_lending(&req(&descs), &r, 1 << 20, true).unwrap();
        let lent: Vec<bool> = plan.objects().iter().map(|p| p.lent).collect();
        assert_eq!(lent, [true, false, false, false, false]);
        assert!(plan.lends());
        assert_eq!(plan.objects()[0].offset_from_top, 0);
        assert_eq!(plan.objects()[1].offset_from_top, 0x1000);
        assert_eq!(
            plan.invocation_offset,
            0x1000 + 0x1800 + 0x1000 + INVOCATION_FOOTPRINT
        );
        // Without lending (a message-mode callee) the same list is all copied.
        let copied = validate(&req(&descs), &r, 1 << 20).unwrap();
        assert!(!copied.lends());
        // A lent object takes no stack room: 1 MiB passes a 4 KiB budget.
        let big = [lend(0x10_0000, 0x10_0000, ArgMode::InOut)];
        assert!(validate_lending(&req(&big), &r, 0x1000, true).is_ok());
        assert_eq!(
            validate(&req(&big), &r, 0x1000).unwrap_err().code(),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn lent_objects_must_fit_the_lease_window() {
        let top = LEASE_WINDOW_SIZE + 0x20_0000;
        let r = DataRegion::from_pieces(vec![(0x10_0000, 0x10_0000 + top)]);
        let half = LEASE_WINDOW_SIZE / 2;
        let lend = |addr, len| ArgDesc {
            flags: ARG_LEND,
            ..d(addr, len, ArgMode::In)
        };
        let fits = [lend(0x10_0000, half), lend(0x10_0000 + half, half)];
        assert!(validate_lending(&req(&fits), &r, 0x1000, true).is_ok());
        let over = [lend(0x10_0000, half), lend(0x10_0000, half + PAGE_SIZE)];
        assert_eq!(
            validate_lending(&req(&over), &r, 0x1000, true),
            Err(ArgListError::WindowTooSmall {
                need: LEASE_WINDOW_SIZE + PAGE_SIZE
            })
        );
    }

    #[test]
    fn objects_on_the_window_are_never_lent() {
        let base = STACK_WINDOW_BASE;
        let r = DataRegion::from_pieces(vec![(base, base + 0x10_0000)]);
        let on_window = ArgDesc {
            flags: ARG_LEND,
            ..d(base + 0x1000, 0x2000, ArgMode::In)
        };
        let plan = validate_lending(&req(&[on_window]), &r, 1 << 20, true).unwrap();
        assert!(!plan.objects()[0].lent, "copied, not lent");
        assert_eq!(plan.objects()[0].offset_from_top, 0x2000);
    }

    #[test]
    fn objects_on_the_window_pass_in_place() {
        let r = region();
        let window = (0x30_0000, 0x30_4000);
        let on_stack = d(0x30_1000, 64, ArgMode::InOut);
        let heap = d(LO, 32, ArgMode::In);
        let plan = validate_in_place(&req(&[on_stack, heap]), &r, 1 << 20, Some(window)).unwrap();
        assert!(plan.objects()[0].in_place);
        assert_eq!(plan.objects()[0].offset_from_top, 0);
        assert!(!plan.objects()[1].in_place);
        assert_eq!(plan.objects()[1].offset_from_top, 32);
        assert_eq!(plan.invocation_offset, 32 + INVOCATION_FOOTPRINT);
        // Without a window the same object is copied.
        let plan = validate(&req(&[on_stack]), &r, 1 << 20).unwrap();
        assert!(!plan.objects()[0].in_place);
    }

    fn any_desc() -> impl Strategy<Value = ArgDesc> {
        let addr = prop_oneof![
            LO - 0x100..HI + 0x100,
            0x30_0000u64 - 0x100..0x30_4100,
            any::<u64>(),
            Just(u64::MAX - 3),
            (LO / PAGE_SIZE..HI / PAGE_SIZE).prop_map(|p| p * PAGE_SIZE),
        ];
        let len = prop_oneof![
            0u64..0x200,
            0u64..0x4_0000,
            any::<u64>(),
            (1u64..16).prop_map(|n| n * PAGE_SIZE),
        ];
        let mode = prop_oneof![1u32..=3, any::<u32>()];
        let reserved = prop_oneof![8 => Just(0u32), 2 => Just(ARG_LEND), 1 => any::<u32>()];
        (addr, len, mode, reserved).prop_map(|(addr, len, mode, reserved)| ArgDesc {
            addr,
            len,
            mode,
            flags: reserved,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// With a window (mapped stack mode), an object is passed in place
        /// exactly when it lies wholly inside the window; only the others
        /// take room below the top, and the plan is otherwise the same
        /// checks as without one.
        #[test]
        fn in_place_objects_lie_in_the_window(descs in proptest::collection::vec(any_desc(), 0..=MAX_ARGS),
                                              budget in 0u64..0x8_0000) {
            let r = region();
            let window = (0x30_0000u64, 0x30_4000u64);
            let rq = req(&descs);
            let plain = validate(&rq, &r, u64::MAX);
            match validate_in_place(&rq, &r, budget, Some(window)) {
                Ok(plan) => {
                    prop_assert!(plain.is_ok());
                    let mut copied = 0;
                    for p in plan.objects() {
                        let inside = !p.is_empty()
                            && p.caller.addr() >= window.0
                            && p.caller.end() <= window.1;
                        prop_assert_eq!(p.in_place, inside);
                        if p.in_place {
                            prop_assert_eq!(p.offset_from_top, 0);
                        } else {
                            copied += (p.len() + OBJECT_ALIGN - 1) & !(OBJECT_ALIGN - 1);
                            prop_assert_eq!(p.offset_from_top, copied);
                        }
                    }
                    prop_assert_eq!(plan.invocation_offset, copied + INVOCATION_FOOTPRINT);
                    prop_assert!(plan.invocation_offset <= budget);
                }
                Err(ArgListError::TooLarge { need, budget: b }) => prop_assert!(need > b),
                Err(e) => prop_assert_eq!(plain.unwrap_err(), e),
            }
        }

        /// Whatever a guest sends, an accepted plan only names memory inside
        /// one data-region piece, never overlaps two outputs, and fits the
        /// budget with every object at its own 16-aligned place.
        #[test]
        fn accepted_plans_are_safe(descs in proptest::collection::vec(any_desc(), 0..=18),
                                   nargs_fudge in 0u32..3, budget in 0u64..0x8_0000,
                                   lending in any::<bool>()) {
            let r = region();
            let mut rq = req(&descs[..descs.len().min(MAX_ARGS)]);
            if descs.len() > MAX_ARGS { rq.nargs = u32::try_from(descs.len()).unwrap() + nargs_fudge; }
            match validate_lending(&rq, &r, budget, lending) {
                Ok(plan) => {
                    prop_assert!(rq.nargs as usize <= MAX_ARGS);
                    prop_assert!(plan.invocation_offset <= budget);
                    let mut prev_end = 0;
                    for (p, dd) in plan.objects().iter().zip(rq.args.iter()) {
                        if !p.is_empty() {
                            prop_assert!(r.check(p.caller.addr(), p.len()).is_ok());
                        }
                        // Lent: only when asked, allowed, and whole pages.
                        prop_assert_eq!(p.lent, lending && dd.flags & ARG_LEND != 0 && lendable(dd.addr, dd.len));
                        if p.lent {
                            prop_assert_eq!(p.offset_from_top, 0);
                            continue;
                        }
                        // Callee copies are disjoint and below the top.
                        prop_assert!(p.offset_from_top >= prev_end + p.len());
                        prop_assert_eq!(p.offset_from_top % OBJECT_ALIGN, 0);
                        prev_end = p.offset_from_top;
                    }
                    for (i, a) in plan.objects().iter().enumerate() {
                        for b in plan.objects().iter().skip(i + 1) {
                            if a.mode.copies_out() && b.mode.copies_out() {
                                prop_assert!(!a.caller.overlaps(b.caller));
                            }
                        }
                    }
                }
                Err(e) => {
                    // A refusal always names a real defect.
                    match e {
                        ArgListError::TooManyArgs(n) => prop_assert!(n as usize > MAX_ARGS),
                        ArgListError::BadMode { index, .. } => {
                            let dd = rq.args[index];
                            prop_assert!(ArgMode::from_u32(dd.mode).is_none() || dd.flags & !ARG_FLAGS != 0);
                        }
                        ArgListError::Overflow { index, .. } => {
                            let dd = rq.args[index];
                            prop_assert!(dd.addr.checked_add(dd.len).is_none());
                        }
                        ArgListError::OutOfRange { index, .. } => {
                            let dd = rq.args[index];
                            prop_assert!(dd.len > 0 && r.check(dd.addr, dd.len).is_err());
                        }
                        ArgListError::OverlappingOutputs { a, b } => {
                            let (x, y) = (rq.args[a], rq.args[b]);
                            prop_assert!(x.addr < y.addr + y.len && y.addr < x.addr + x.len);
                        }
                        ArgListError::TooLarge { need, budget: b } => prop_assert!(need > b),
                        ArgListError::WindowTooSmall { need } => prop_assert!(need > LEASE_WINDOW_SIZE),
                    }
                }
            }
        }
    }
}
