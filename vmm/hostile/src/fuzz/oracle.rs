//! The oracle: what every recorded hypercall must have been answered, from
//! the ABI's promises (docs/ABI.md) and a model of `Call`'s checks
//! ([`wire::predict`]) written from them, independent of the engine's own
//! validator. A record passes when its answer registers, the registers the
//! ABI says are preserved, and the digest of the worker's scratch after the
//! answer are all one of the outcomes allowed for it.

use super::memory::pattern_bytes;
use super::wire::{
    self, act, bad, combine, digest, flag, in_lease_window, lent, op, predict, predict_nest,
    race_alternative, transform, Record, Region, DIGEST_SEED, MAX_WORKERS, NREGS, R10, R8, RAX,
    RDI, RDX, RSI, SCRATCH_LEN, SLOT_CHECK, SLOT_DEEP, SLOT_HOSTILE,
};
use shared_abi::{pseudo_vector, ArgMode, CallRequest, ErrorCode, Hypercall, APP_ERROR_BASE};

/// What the oracle knows about the system during one batch.
#[derive(Clone, Debug)]
pub struct Context {
    /// The fuzzer's data region.
    pub region: Region,
    /// Capability slots of the fuzzer.
    pub slots: u32,
    /// Argument budget of each slot's callee.
    pub budgets: [u64; 4],
    /// Each worker's scratch address.
    pub scratch: [u64; MAX_WORKERS],
    /// The raced request's OUT area `[start, end)`.
    pub race_out: (u64, u64),
    /// Entries of the fuzzer's image (a `Spawn` of a higher index is refused).
    pub spawn_entries: u64,
    /// Whether a `System::run` was in progress (spawns may be accepted).
    pub spawns_open: bool,
    /// Generation of each slot's callee before and after the batch.
    pub generations: [(u64, u64); 4],
    /// The hostile callee's image `[start, end)`: fault RIPs lie there.
    pub callee_image: (u64, u64),
}

impl Context {
    fn slot(&self, slot: u32) -> usize {
        usize::try_from(slot).unwrap_or(usize::MAX).min(3)
    }

    /// Whether the callee of `slot` restarted during the batch (then calls
    /// into it may also see it quarantined or being reset).
    fn disturbed(&self, slot: u32) -> bool {
        let (a, b) = self.generations[self.slot(slot)];
        a != b
    }
}

/// How one record was judged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The callee ran (the answer came from inside it).
    pub entered: bool,
    /// The status word, when it is a defined one: 0..=20.
    pub code: Option<usize>,
    /// The status was an application status.
    pub app: bool,
    /// A refusal reported from inside a deep chain (`TooDeep`, `NoStack`).
    pub nested: Option<usize>,
    /// Hypercalls the callees made on the fuzzer's behalf, by number.
    pub callee_numbers: [u64; 10],
    /// A raced request was answered as the rewritten variant.
    pub alternative: bool,
    /// The callee was entered with at least one object lent ([`lent`]).
    pub lent: bool,
    /// A store into a read-only (IN) lease faulted in the callee.
    pub lease_fault: bool,
    /// What was wrong, if anything.
    pub problems: Vec<String>,
}

thread_local! {
    /// The last scratch computed, by tag: a record is judged against the
    /// same filled scratch several times (candidates, outcomes).
    static FILLED: std::cell::RefCell<(u64, std::rc::Rc<Vec<u8>>, u64)> =
        std::cell::RefCell::new((0, std::rc::Rc::new(Vec::new()), 0));
}

/// The scratch of a worker as it was filled before the hypercall, and its
/// digest.
fn filled_with_digest(tag: u64) -> (std::rc::Rc<Vec<u8>>, u64) {
    FILLED.with(|c| {
        let mut c = c.borrow_mut();
        if c.1.is_empty() || c.0 != tag {
            let bytes = pattern_bytes(tag, 0, SCRATCH_LEN);
            let d = digest(&bytes);
            *c = (tag, std::rc::Rc::new(bytes), d);
        }
        (std::rc::Rc::clone(&c.1), c.2)
    })
}

fn filled(tag: u64) -> std::rc::Rc<Vec<u8>> {
    filled_with_digest(tag).0
}

/// Digest of the scratch if nothing wrote it.
fn untouched(rec: &Record) -> u64 {
    filled_with_digest(rec.tag).1
}

fn used(req: &CallRequest) -> &[shared_abi::ArgDesc] {
    let n = usize::try_from(req.nargs)
        .unwrap_or(0)
        .min(shared_abi::MAX_ARGS);
    req.args.get(..n).unwrap_or(&[])
}

/// Whether any used object of `req` is lent.
fn lends(req: &CallRequest) -> bool {
    used(req).iter().any(lent)
}

/// Whether any used OUT/INOUT object of `req` is lent (the callee's writes,
/// and an OUT object's zero-fill, land in the caller whatever the outcome).
fn lends_output(req: &CallRequest) -> bool {
    used(req)
        .iter()
        .any(|d| lent(d) && ArgMode::from_u32(d.mode).is_some_and(ArgMode::copies_out))
}

/// Scratch digest and written-bytes digest after an accepted call whose
/// callee returned 0 having XORed `transform(salt, …)` into its outputs
/// (`salt = None`: a callee that wrote nothing, so OUT objects come back
/// zero and INOUT ones unchanged). Outputs in the race area leave the
/// scratch alone; anywhere else they are a generator bug, reported.
fn after(
    ctx: &Context,
    w: usize,
    rec: &Record,
    req: &CallRequest,
    salt: Option<u64>,
) -> Result<(u64, u64), String> {
    after_some(ctx, w, rec, req, salt, false)
}

/// The scratch digest after a call that did not succeed: copied outputs
/// are not written back, lent ones *are* the caller's memory (OUT ones
/// zero-filled when the call started, then whatever the callee wrote —
/// `transform(salt, …)` when `salt` is given, nothing for `None`).
fn after_failure(
    ctx: &Context,
    w: usize,
    rec: &Record,
    req: &CallRequest,
    salt: Option<u64>,
) -> Result<u64, String> {
    after_some(ctx, w, rec, req, salt, true).map(|(scratch, _)| scratch)
}

fn after_some(
    ctx: &Context,
    w: usize,
    rec: &Record,
    req: &CallRequest,
    salt: Option<u64>,
    lent_only: bool,
) -> Result<(u64, u64), String> {
    let base = ctx.scratch[w];
    let before = filled(rec.tag);
    let mut now: Vec<u8> = before.as_ref().clone();
    let mut wrote = DIGEST_SEED;
    for (i, d) in used(req).iter().enumerate() {
        let mode = ArgMode::from_u32(d.mode).ok_or("accepted an invalid mode")?;
        if !mode.copies_out() || d.len == 0 || (lent_only && !lent(d)) {
            continue;
        }
        let in_scratch = d.addr >= base
            && d.addr
                .checked_add(d.len)
                .is_some_and(|e| e <= base + SCRATCH_LEN);
        let in_race = d.addr >= ctx.race_out.0
            && d.addr
                .checked_add(d.len)
                .is_some_and(|e| e <= ctx.race_out.1);
        if !in_scratch && !in_race {
            return Err(format!(
                "generator bug: accepted output {i} at {:#x}+{:#x} is outside the scratch",
                d.addr, d.len
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(d.len).unwrap_or(0));
        for j in 0..d.len {
            let input = if mode == ArgMode::InOut && in_scratch {
                before[usize::try_from(d.addr - base + j).unwrap_or(0)]
            } else {
                0
            };
            let t = salt.map_or(0, |s| transform(s, i as u64, j));
            bytes.push(input ^ t);
        }
        wrote = combine(wrote, i as u64, digest(&bytes));
        if in_scratch {
            let off = usize::try_from(d.addr - base).unwrap_or(0);
            now[off..off + bytes.len()].copy_from_slice(&bytes);
        }
    }
    Ok((digest(&now), wrote))
}

/// Check `want` (register index, value) pairs; name the first mismatch.
fn regs(out: &[u64; NREGS], want: &[(usize, u64)]) -> Result<(), String> {
    for &(i, v) in want {
        if out[i] != v {
            return Err(format!(
                "{} = {:#x}, expected {v:#x}",
                wire::REG_NAMES[i],
                out[i]
            ));
        }
    }
    Ok(())
}

/// `RAX = status` and `RDI, RSI, RDX, R10 = 0`.
fn plain(out: &[u64; NREGS], status: u64) -> Result<(), String> {
    regs(
        out,
        &[(RAX, status), (RDI, 0), (RSI, 0), (RDX, 0), (R10, 0)],
    )
}

fn post(rec: &Record, want: u64) -> Result<(), String> {
    post_any(rec, &[want])
}

/// The scratch after the answer is one of `allowed`.
fn post_any(rec: &Record, allowed: &[u64]) -> Result<(), String> {
    if allowed.contains(&rec.post) {
        Ok(())
    } else {
        Err("the scratch after the answer is not what the answer allows".into())
    }
}

/// One outcome the record may show, and what it means.
struct Outcome {
    entered: bool,
    callee_numbers: [(usize, u64); 2],
    alternative: bool,
    lease_fault: bool,
}

const NONE: [(usize, u64); 2] = [(0, 0), (0, 0)];

fn outcome(entered: bool) -> Outcome {
    Outcome {
        entered,
        callee_numbers: NONE,
        alternative: false,
        lease_fault: false,
    }
}

/// Judge one record of worker `w`.
pub fn judge(ctx: &Context, w: usize, rec: &Record) -> Verdict {
    let out = &rec.regs_out;
    let mut v = Verdict::default();
    let status = out[RAX];
    if let Ok(i) = usize::try_from(status) {
        if i <= 20 {
            v.code = Some(i);
        }
    }
    v.app = status >= APP_ERROR_BASE && status <= APP_ERROR_BASE + u64::from(u32::MAX);
    // Registers no hypercall may change.
    let mut preserved = vec![6, 7, 8, 9];
    if !is_call(rec) {
        preserved.push(R8);
    }
    for i in preserved {
        if rec.regs_in[i] != out[i] {
            v.problems.push(format!(
                "{} changed: {:#x} → {:#x}",
                wire::REG_NAMES[i],
                rec.regs_in[i],
                out[i]
            ));
        }
    }
    let result = if is_call(rec) {
        judge_call(ctx, w, rec)
    } else {
        judge_simple(ctx, rec)
    };
    match result {
        Ok(o) => {
            v.entered = o.entered;
            v.alternative = o.alternative;
            v.lease_fault = o.lease_fault;
            v.lent = o.entered && is_call(rec) && lends(&rec.req);
            for (n, k) in o.callee_numbers {
                if let Some(c) = v.callee_numbers.get_mut(n) {
                    *c += k;
                }
            }
            if rec.op == op::DEEP && status == 0 {
                v.nested = usize::try_from(out[RDI])
                    .ok()
                    .filter(|c| (1..=20).contains(c));
            }
        }
        Err(e) => v.problems.push(e),
    }
    v
}

fn is_call(rec: &Record) -> bool {
    rec.regs_in[RAX] == Hypercall::Call as u64
}

fn judge_simple(ctx: &Context, rec: &Record) -> Result<Outcome, String> {
    let out = &rec.regs_out;
    let number = rec.regs_in[RAX];
    let known = u32::try_from(number)
        .ok()
        .and_then(|n| Hypercall::try_from(n).ok());
    post(rec, untouched(rec))?;
    match known {
        Some(Hypercall::Nop) | Some(Hypercall::Print) => plain(out, 0)?,
        Some(Hypercall::Hello) | Some(Hypercall::Ready) => plain(out, ErrorCode::BootOver as u64)?,
        Some(Hypercall::Spawn) => {
            let entry = rec.regs_in[RDI];
            if entry >= ctx.spawn_entries {
                plain(out, ErrorCode::NoSuchEntry as u64)?;
            } else if out[RAX] == 0 && ctx.spawns_open {
                if out[RDI] == 0 {
                    return Err("a spawned thread got id 0".into());
                }
                regs(out, &[(RSI, 0), (RDX, 0), (R10, 0)])?;
            } else {
                plain(out, ErrorCode::QuotaExceeded as u64)?;
            }
        }
        None => plain(out, ErrorCode::UnknownHypercall as u64)?,
        Some(other) => return Err(format!("the fuzzer sent {other:?} from its bottom frame")),
    }
    Ok(outcome(false))
}

fn judge_call(ctx: &Context, w: usize, rec: &Record) -> Result<Outcome, String> {
    let candidates = if rec.flags & flag::RACY != 0 {
        vec![rec.req, race_alternative(&rec.req, rec.detail)]
    } else {
        vec![rec.req]
    };
    let mut first_err = None;
    for (i, req) in candidates.iter().enumerate() {
        match judge_candidate(ctx, w, rec, req) {
            Ok(o) => {
                return Ok(Outcome {
                    alternative: i == 1,
                    ..o
                })
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_default())
}

fn judge_candidate(
    ctx: &Context,
    w: usize,
    rec: &Record,
    req: &CallRequest,
) -> Result<Outcome, String> {
    let out = &rec.regs_out;
    let slot = ctx.slot(req.slot);
    let (g0, g1) = ctx.generations[slot];
    let predicted = predict(rec.regs_in[RDI], req, &ctx.region, ctx.slots, |s| {
        ctx.budgets[ctx.slot(s)]
    });
    if let Err(code) = predicted {
        plain(out, code as u64).map_err(|e| format!("{e} (refusal {code:?})"))?;
        let r8_ok = if matches!(code, ErrorCode::BadPointer | ErrorCode::BadSlot) {
            out[R8] == 0
        } else {
            (g0..=g1).contains(&out[R8])
        };
        if !r8_ok {
            return Err(format!("r8 = {:#x} after {code:?}", out[R8]));
        }
        post(rec, untouched(rec))?;
        return Ok(outcome(false));
    }
    if !(g0..=g1).contains(&out[R8]) {
        return Err(format!(
            "r8 = {:#x}, not a generation of the callee ({g0}..={g1})",
            out[R8]
        ));
    }
    // The scratch after an entered call that did not succeed: untouched
    // but for lent OUT objects, zero-filled when the call started.
    let intact = after_failure(ctx, w, rec, req, None)?;
    // Before the callee was entered (or the leases made): untouched.
    let refused = untouched(rec);
    // Answers any accepted call may get when its callee went down during
    // the batch (another worker's fault), or its own small budget ran out.
    let status = out[RAX];
    let disturbed = ctx.disturbed(req.slot);
    let small = rec.flags & flag::SMALL_BUDGET != 0;
    if (disturbed || small) && status == ErrorCode::Timeout as u64 {
        plain(out, status)?;
        // `check` may have written part of a lent output before its budget
        // ran out: then no scratch can be predicted (only the answer).
        if !(req.slot == SLOT_CHECK && lends_output(req)) {
            post_any(rec, &[intact, refused])?;
        }
        return Ok(outcome(small));
    }
    if disturbed && status == ErrorCode::Restarting as u64 {
        plain(out, status)?;
        post_any(rec, &[intact, refused])?;
        return Ok(outcome(false));
    }
    if disturbed && status == ErrorCode::Fault as u64 && out[RDI] == pseudo_vector::DOMAIN_DOWN {
        regs(
            out,
            &[
                (RAX, status),
                (RDI, pseudo_vector::DOMAIN_DOWN),
                (RSI, 0),
                (RDX, 0),
                (R10, 0),
            ],
        )?;
        // As for `Timeout`: `check` may have been stopped mid-write.
        if !(req.slot == SLOT_CHECK && lends_output(req)) {
            post_any(rec, &[intact, refused])?;
        }
        return Ok(outcome(true));
    }
    match req.slot {
        SLOT_CHECK => judge_check(ctx, w, rec, req, intact),
        SLOT_HOSTILE => judge_hostile(ctx, w, rec, req, intact),
        SLOT_DEEP => {
            let (code, depth) = predict_nest(req.scalars[0], req.scalars[1]);
            regs(
                out,
                &[(RAX, 0), (RDI, code), (RSI, depth), (RDX, 0), (R10, 0)],
            )
            .map_err(|e| format!("{e} (nest({}) → {code}, depth {depth})", req.scalars[0]))?;
            post(rec, intact)?;
            let calls = if code == 0 { depth - 1 } else { depth };
            Ok(Outcome {
                callee_numbers: [(4, calls), (5, depth)],
                ..outcome(true)
            })
        }
        other => Err(format!("accepted a call on slot {other}")),
    }
}

fn judge_check(
    ctx: &Context,
    w: usize,
    rec: &Record,
    req: &CallRequest,
    intact: u64,
) -> Result<Outcome, String> {
    let out = &rec.regs_out;
    let s = req.scalars;
    let fail = s[2] >> 32;
    let returned = Outcome {
        callee_numbers: [(5, 1), (0, 0)],
        ..outcome(true)
    };
    let status = out[RAX];
    if rec.flags & flag::RACY_IN != 0 && status == APP_ERROR_BASE + u64::from(bad::DIGEST) {
        plain(out, status)?;
        post(rec, intact)?;
        return Ok(returned);
    }
    if fail != 0 {
        plain(out, APP_ERROR_BASE + fail)?;
        // `check` wrote its outputs before failing: the lent ones keep it.
        let kept = after_failure(ctx, w, rec, req, Some(s[0]))?;
        if rec.flags & flag::RACY == 0 {
            post(rec, kept)?;
        }
        return Ok(returned);
    }
    if s[1] != rec.in_digest {
        return Err("generator bug: scalar 1 is not the recorded IN digest".into());
    }
    let (scratch, wrote) = after(ctx, w, rec, req, Some(s[0]))?;
    regs(
        out,
        &[
            (RAX, 0),
            (RDI, rec.in_digest),
            (RSI, wrote),
            (RDX, 0),
            (R10, 0),
        ],
    )?;
    if rec.flags & flag::RACY == 0 {
        post(rec, scratch)?;
    }
    Ok(returned)
}

fn in_image(ctx: &Context, rip: u64) -> bool {
    (ctx.callee_image.0..ctx.callee_image.1).contains(&rip)
}

fn judge_hostile(
    ctx: &Context,
    w: usize,
    rec: &Record,
    req: &CallRequest,
    intact: u64,
) -> Result<Outcome, String> {
    let out = &rec.regs_out;
    let s = req.scalars;
    let fault = |vector: u64| -> Result<(), String> {
        regs(out, &[(RAX, ErrorCode::Fault as u64), (RDI, vector)])?;
        if !in_image(ctx, out[RSI]) {
            return Err(format!(
                "fault RIP {:#x} is not in the callee's image",
                out[RSI]
            ));
        }
        Ok(())
    };
    let entered = |numbers: [(usize, u64); 2]| Outcome {
        callee_numbers: numbers,
        ..outcome(true)
    };
    match s[0] {
        act::RETURN if s[1] == 0 => {
            let (scratch, _) = after(ctx, w, rec, req, None)?;
            regs(
                out,
                &[(RAX, 0), (RDI, s[2]), (RSI, s[3]), (RDX, 0), (R10, 0)],
            )?;
            post(rec, scratch)?;
            Ok(entered([(5, 1), (0, 0)]))
        }
        act::RETURN => {
            plain(out, APP_ERROR_BASE + s[1].min(u64::from(u32::MAX)))?;
            post(rec, intact)?;
            Ok(entered([(5, 1), (0, 0)]))
        }
        act::EXIT => {
            plain(out, ErrorCode::CalleeExited as u64)?;
            post(rec, intact)?;
            Ok(entered([(8, 1), (0, 0)]))
        }
        act::PRINT => {
            let (scratch, _) = after(ctx, w, rec, req, None)?;
            regs(
                out,
                &[(RAX, 0), (RDI, s[3]), (RSI, s[4]), (RDX, 0), (R10, 0)],
            )?;
            post(rec, scratch)?;
            Ok(entered([(3, 1), (5, 1)]))
        }
        act::PANIC => {
            fault(pseudo_vector::PANIC)?;
            regs(out, &[(RDX, 0), (R10, 0)])?;
            post(rec, intact)?;
            Ok(entered([(7, 1), (0, 0)]))
        }
        act::UD2 => {
            fault(6)?;
            regs(out, &[(RDX, 0), (R10, 0)])?;
            post(rec, intact)?;
            Ok(entered(NONE))
        }
        act::WILD => {
            let addr = s[1];
            let canonical = !((1 << 47)..0xffff_8000_0000_0000).contains(&addr);
            if canonical {
                fault(14)?;
                regs(out, &[(R10, addr)])?;
                if out[RDX] & 6 != 6 {
                    return Err(format!("#PF error code {:#x} lacks write|user", out[RDX]));
                }
            } else {
                fault(13)?;
                regs(out, &[(RDX, 0), (R10, 0)])?;
            }
            post(rec, intact)?;
            Ok(entered(NONE))
        }
        act::WRITE_IN => {
            let Some(d) = used(req).first().filter(|d| d.len > 0) else {
                plain(out, APP_ERROR_BASE + 3)?;
                post(rec, intact)?;
                return Ok(entered([(5, 1), (0, 0)]));
            };
            if lent(d) && d.mode == ArgMode::In as u32 {
                // A read-only lease: the store is a page fault (present,
                // write, user) at the lent address, in the lease window.
                fault(14)?;
                if out[RDX] != 7 || !in_lease_window(out[R10]) {
                    return Err(format!(
                        "a store into an IN lease: error code {:#x}, CR2 {:#x} (want 7, in the lease window)",
                        out[RDX], out[R10]
                    ));
                }
                post(rec, intact)?;
                Ok(Outcome {
                    lease_fault: true,
                    ..outcome(true)
                })
            } else {
                // A copy: the store hits the callee's own stack.
                regs(
                    out,
                    &[(RAX, 0), (RDI, act::WROTE), (RSI, 0), (RDX, 0), (R10, 0)],
                )?;
                let (scratch, _) = after(ctx, w, rec, req, None)?;
                post(rec, scratch)?;
                Ok(entered([(5, 1), (0, 0)]))
            }
        }
        act::SPIN => Err(format!(
            "a spinning callee answered {:#x} instead of Timeout",
            out[RAX]
        )),
        other => Err(format!("generator bug: hostile action {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_abi::layout::DomainLayout;
    use zerocopy::FromZeros;

    fn ctx() -> Context {
        let l = DomainLayout {
            image_end: 0x80_0000,
            memory_size: 16 << 20,
            stack_count: 7,
            stack_size: 0x1_0000,
        };
        Context {
            region: Region::of(&l),
            slots: 3,
            budgets: [8192, 8192, 4096, 0],
            scratch: [0x40_0000, 0x40_1000, 0x40_2000, 0x40_3000],
            race_out: (0x50_0000, 0x50_0080),
            spawn_entries: 3,
            spawns_open: false,
            generations: [(0, 0); 4],
            callee_image: (0x20_0000, 0x21_0000),
        }
    }

    fn nop() -> Record {
        let mut r = Record::new_zeroed();
        r.op = op::NOP;
        r.regs_in = [6, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        r.regs_out = [0, 0, 0, 0, 0, 5, 6, 7, 8, 9];
        r.tag = 42;
        r.post = untouched(&r);
        r
    }

    /// A check call with one OUT object of 16 bytes at the scratch start.
    fn check_call(c: &Context) -> Record {
        let mut r = nop();
        r.op = op::CHECK;
        r.regs_in[RAX] = Hypercall::Call as u64;
        r.regs_in[RDI] = 0x30_0000;
        r.req.slot = SLOT_CHECK;
        r.req.nargs = 1;
        r.req.args[0] = shared_abi::ArgDesc {
            addr: c.scratch[0],
            len: 16,
            mode: ArgMode::Out as u32,
            flags: 0,
        };
        r.in_digest = DIGEST_SEED;
        r.req.scalars = [7, DIGEST_SEED, 1, 0, 0, 0];
        let (scratch, wrote) = after(c, 0, &r, &r.req.clone(), Some(7)).unwrap();
        r.regs_out = [0, DIGEST_SEED, wrote, 0, 0, 0, 6, 7, 8, 9];
        r.post = scratch;
        r
    }

    #[test]
    fn a_right_answer_passes() {
        let c = ctx();
        assert_eq!(judge(&c, 0, &nop()).problems, Vec::<String>::new());
        assert_eq!(judge(&c, 0, &check_call(&c)).problems, Vec::<String>::new());
    }

    #[test]
    fn a_wrong_status_a_clobbered_register_or_a_written_scratch_fails() {
        let c = ctx();
        let mut r = nop();
        r.regs_out[RAX] = 8;
        assert!(!judge(&c, 0, &r).problems.is_empty(), "wrong status");
        let mut r = nop();
        r.regs_out[7] ^= 1;
        assert!(!judge(&c, 0, &r).problems.is_empty(), "r11 clobbered");
        let mut r = nop();
        r.post ^= 1;
        assert!(!judge(&c, 0, &r).problems.is_empty(), "scratch written");
        let mut r = check_call(&c);
        r.regs_out[RSI] ^= 1;
        assert!(
            !judge(&c, 0, &r).problems.is_empty(),
            "wrong written digest"
        );
        let mut r = check_call(&c);
        r.post = untouched(&r);
        assert!(
            !judge(&c, 0, &r).problems.is_empty(),
            "outputs not copied back"
        );
    }

    #[test]
    fn a_malformed_request_must_be_refused_with_its_code() {
        let c = ctx();
        let mut r = check_call(&c);
        r.req.args[0].mode = 7;
        r.regs_out = [ErrorCode::BadMode as u64, 0, 0, 0, 0, 0, 6, 7, 8, 9];
        r.post = untouched(&r);
        assert_eq!(judge(&c, 0, &r).problems, Vec::<String>::new());
        // Accepting it (or refusing it with another code) is a violation.
        r.regs_out[RAX] = ErrorCode::OutOfRange as u64;
        assert!(!judge(&c, 0, &r).problems.is_empty());
        // Overlapping outputs, outside the region, overflow: each its code.
        let mut r = check_call(&c);
        r.req.args[0].addr = 0x1000;
        r.regs_out = [ErrorCode::OutOfRange as u64, 0, 0, 0, 0, 0, 6, 7, 8, 9];
        r.post = untouched(&r);
        assert_eq!(judge(&c, 0, &r).problems, Vec::<String>::new());
        r.req.args[0].addr = u64::MAX - 4;
        assert!(
            !judge(&c, 0, &r).problems.is_empty(),
            "overflow, not out of range"
        );
    }

    #[test]
    fn a_raced_request_may_get_either_answer_but_no_third() {
        let c = ctx();
        let mut r = check_call(&c);
        r.flags = flag::RACY;
        r.detail = 1; // nargs 1 ↔ 17
        assert_eq!(judge(&c, 0, &r).problems, Vec::<String>::new());
        r.regs_out = [ErrorCode::TooManyArgs as u64, 0, 0, 0, 0, 0, 6, 7, 8, 9];
        r.post = untouched(&r);
        assert_eq!(judge(&c, 0, &r).problems, Vec::<String>::new());
        r.regs_out[RAX] = ErrorCode::BadMode as u64;
        assert!(!judge(&c, 0, &r).problems.is_empty());
    }

    #[test]
    fn restarts_are_excused_only_when_the_callee_restarted() {
        let mut c = ctx();
        let mut r = check_call(&c);
        r.regs_out = [ErrorCode::Restarting as u64, 0, 0, 0, 0, 0, 6, 7, 8, 9];
        r.post = untouched(&r);
        assert!(!judge(&c, 0, &r).problems.is_empty());
        c.generations[0] = (0, 1);
        assert_eq!(judge(&c, 0, &r).problems, Vec::<String>::new());
    }

    #[test]
    fn lent_objects_take_no_stack_room_but_must_fit_the_lease_window() {
        let c = ctx();
        let l = DomainLayout {
            image_end: 0x80_0000,
            memory_size: 16 << 20,
            stack_count: 7,
            stack_size: 0x1_0000,
        };
        let heap = (l.heap_base() + 0xfff) & !0xfff;
        let span = ((16 << 20) - heap) & !0xfff;
        let over = usize::try_from(shared_abi::layout::LEASE_WINDOW_SIZE / span + 1).unwrap();
        assert!(over <= 16);
        let lend = |len| shared_abi::ArgDesc {
            addr: heap,
            len,
            mode: ArgMode::In as u32,
            flags: shared_abi::ARG_LEND,
        };
        let mut req = CallRequest {
            nargs: 1,
            ..CallRequest::default()
        };
        // 1 MiB lent: far over the 8 KiB budget, accepted.
        req.args[0] = lend(1 << 20);
        assert_eq!(predict(0x40_0000, &req, &c.region, 3, |_| 8192), Ok(()));
        // The same marked but not whole pages: copied, so too large.
        req.args[0] = lend((1 << 20) - 8);
        assert_eq!(
            predict(0x40_0000, &req, &c.region, 3, |_| 8192),
            Err(ErrorCode::TooLarge)
        );
        // The whole heap lent `over` times (IN objects may overlap): more
        // than the 64 MiB window; one fewer fits.
        req.nargs = u32::try_from(over).unwrap();
        for d in req.args.iter_mut().take(over) {
            *d = lend(span);
        }
        assert_eq!(
            predict(0x40_0000, &req, &c.region, 3, |_| 8192),
            Err(ErrorCode::TooLarge)
        );
        req.nargs = u32::try_from(over - 1).unwrap();
        assert_eq!(predict(0x40_0000, &req, &c.region, 3, |_| 8192), Ok(()));
    }

    /// A hostile store into object 0: a fault in the lease window when it
    /// is a lent IN object, a plain return when it was copied; any other
    /// answer is a violation.
    #[test]
    fn a_store_into_an_in_lease_must_fault_and_into_a_copy_must_not() {
        let c = ctx();
        let mut r = nop();
        r.op = op::HOSTILE;
        r.regs_in[RAX] = Hypercall::Call as u64;
        r.regs_in[RDI] = 0x30_0000;
        r.req.slot = SLOT_HOSTILE;
        r.req.nargs = 1;
        r.req.args[0] = shared_abi::ArgDesc {
            addr: c.scratch[0],
            len: 4096,
            mode: ArgMode::In as u32,
            flags: shared_abi::ARG_LEND,
        };
        r.req.scalars = [act::WRITE_IN, 5, 0, 0, 0, 0];
        let lease = shared_abi::layout::LEASE_WINDOW_BASE + 5;
        r.regs_out = [
            ErrorCode::Fault as u64,
            14,
            0x20_0100,
            7,
            lease,
            0,
            6,
            7,
            8,
            9,
        ];
        let v = judge(&c, 0, &r);
        assert_eq!(v.problems, Vec::<String>::new());
        assert!(v.lease_fault && v.lent);
        // A fault outside the window, or a store that went through: wrong.
        r.regs_out[4] = c.scratch[0] + 5;
        assert!(!judge(&c, 0, &r).problems.is_empty());
        r.regs_out = [0, act::WROTE, 0, 0, 0, 0, 6, 7, 8, 9];
        assert!(!judge(&c, 0, &r).problems.is_empty());
        // Not lent (the flag clear): the copy takes the store.
        r.req.args[0].flags = 0;
        assert_eq!(judge(&c, 0, &r).problems, Vec::<String>::new());
    }

    #[test]
    fn nest_chains_end_in_too_deep_or_no_stack_where_the_abi_says() {
        assert_eq!(predict_nest(0, 0), (0, 1));
        assert_eq!(predict_nest(5, 0), (0, 6));
        // Alternating domains: 64 frames, the 64th call refused.
        assert_eq!(predict_nest(100, 0), (ErrorCode::TooDeep as u64, 63));
        // Always the same domain: its 32 stacks, then NoStack.
        assert_eq!(predict_nest(100, u64::MAX), (ErrorCode::NoStack as u64, 32));
    }
}
