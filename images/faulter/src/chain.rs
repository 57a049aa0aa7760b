//! The entries of both faulter images: a chain of faulter domains that
//! raises one fault kind at a given depth, a bystander that waits inside a
//! domain while another thread brings it down, and a storm that injects many
//! faults per host round trip and judges every answer against the table
//! the host wrote.
//!
//! The numbers both sides use (kind numbers, entry names, the layouts of
//! the record, the expectation table and the tally) live in `wire.rs`,
//! which this image and `ferry_hostile::inject` both build, so they cannot
//! drift apart.
//!
//! Capability slots of every domain of a chain: 0 = the next domain's
//! `inject`, 1 = the next domain's `hold`. The last domain has none.
//!
//! | # | entry | does |
//! |---|-------|------|
//! | 0 | `inject(kind, depth, OUT record?)` | depth 1: raise `kind` here; depth d > 1: call slot 0 with d − 1, fill the record when the callee is the faulting domain (it is the direct caller), else pass the callee's record up; `Ok([RELAYED, own frame depth])` |
//! | 1 | `hold(depth, timeout cycles, OUT record?)` | depth 1: spin until the host writes `RELEASE` (`Ok([HELD, generation])`) or the timeout (status `HOLD_TIMEOUT`); deeper: relayed through slot 1 like `inject` |
//! | 2 | `sites(which)` | `Ok([address, 0])` of a fault site, `RELEASE`, the expectation table, the tally or an observation slot |
//! | 3 | `once(kind, depth)` | one injection from this (first) frame; writes the observation to `OBS_ONCE`: `Ok([its address, 0])` |
//! | 4 | `bystand(depth, timeout)` | one `hold` from this frame; observation to `OBS_BYSTAND` |
//! | 5 | `storm(seed, count, max depth, kind mask)` | see [`storm`] |

use core::sync::atomic::{AtomicU64, Ordering};
use ferry_guest::{call_with, exit, generation, rdtsc, Answer, Arg, Call, CallError, Limits, Rng};

// ---------------------------------------------------------------------------
// Numbers shared with the host: one file, built into both sides.

#[path = "wire.rs"]
#[allow(
    dead_code,
    reason = "the host uses some of the shared numbers, the guest others"
)]
mod wire;
use wire::*;

/// What the direct caller saw (see [`RECORD_WORDS`]).
type Record = [u64; RECORD_WORDS];
/// One observation (see [`OBS_WORDS`]).
type Obs = [u64; OBS_WORDS];

// ---------------------------------------------------------------------------
// Statics the host reads or writes.

/// `hold` spins until this is non-zero (the host writes it).
static RELEASE: AtomicU64 = AtomicU64::new(0);

/// Words the host writes and the guest only reads, through atomics.
struct Shared<const N: usize>([AtomicU64; N]);

impl<const N: usize> Shared<N> {
    const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; N])
    }
    fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn set(&self, i: usize, v: u64) {
        if let Some(w) = self.0.get(i) {
            w.store(v, Ordering::Release);
        }
    }
    fn add(&self, i: usize, v: u64) {
        if let Some(w) = self.0.get(i) {
            w.fetch_add(v, Ordering::AcqRel);
        }
    }
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

static EXPECT: Shared<EXPECT_WORDS> = Shared::new();
static TALLY: Shared<TALLY_WORDS> = Shared::new();
static OBS_ONCE: Shared<OBS_WORDS> = Shared::new();
static OBS_BYSTAND: Shared<OBS_WORDS> = Shared::new();
/// Set while a storm runs (one at a time per domain).
static STORMING: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// Fault sites, each at a global label so the host can name its address.

core::arch::global_asm!(
    ".pushsection .text.faulter_sites,\"ax\",@progbits",
    ".global faulter_fault_divide",
    ".global faulter_site_divide",
    "faulter_fault_divide:",
    "    xor ecx, ecx",
    "    mov eax, 1",
    "    xor edx, edx",
    "faulter_site_divide:",
    "    div ecx",
    "    ud2",
    ".global faulter_fault_ud2",
    ".global faulter_site_ud2",
    "faulter_fault_ud2:",
    "faulter_site_ud2:",
    "    ud2",
    ".global faulter_fault_privileged",
    ".global faulter_site_privileged",
    "faulter_fault_privileged:",
    "faulter_site_privileged:",
    "    hlt",
    "    ud2",
    ".global faulter_fault_wild",
    ".global faulter_site_wild",
    "faulter_fault_wild:",
    "    movabs rax, {wild}",
    "faulter_site_wild:",
    "    mov qword ptr [rax], rax",
    "    ud2",
    ".global faulter_fault_sse",
    ".global faulter_site_sse",
    "faulter_fault_sse:",
    "    mov rax, rsp",
    "    and rax, -16",
    "    sub rax, 40",
    "faulter_site_sse:",
    "    movaps xmm0, xmmword ptr [rax]",
    "    ud2",
    ".popsection",
    wild = const WILD,
);

extern "C" {
    fn faulter_fault_divide() -> !;
    fn faulter_fault_ud2() -> !;
    fn faulter_fault_privileged() -> !;
    fn faulter_fault_wild() -> !;
    fn faulter_fault_sse() -> !;
    static faulter_site_divide: u8;
    static faulter_site_ud2: u8;
    static faulter_site_privileged: u8;
    static faulter_site_wild: u8;
    static faulter_site_sse: u8;
}

fn site_addr(which: u64) -> Option<u64> {
    Some(match which {
        site::DIVIDE => &raw const faulter_site_divide as u64,
        site::UD2 => &raw const faulter_site_ud2 as u64,
        site::PRIVILEGED => &raw const faulter_site_privileged as u64,
        site::WILD => &raw const faulter_site_wild as u64,
        site::SSE => &raw const faulter_site_sse as u64,
        site::RELEASE => RELEASE.as_ptr() as u64,
        site::EXPECT => EXPECT.addr(),
        _ => return None,
    })
}

/// Recurse with a 4 KiB frame until the stack's guard page stops us.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[depth as usize % 4096] = depth as u8;
    core::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return 0;
    }
    recurse(core::hint::black_box(depth + 1)).wrapping_add(frame[depth as usize % 4096] as u64)
}

/// Jump to one of the fault sites above.
fn at_site(site: unsafe extern "C" fn() -> !) -> ! {
    // SAFETY: every site's instruction faults; the VMM ends this invocation
    // there and never resumes it. The code before it touches only
    // registers (and reads, for `movaps`, this stack's own memory).
    unsafe { site() }
}

/// Raise `kind` in this frame (depth 1 of the chain).
fn raise(kind: u64) -> Result<[u64; 2], u32> {
    match kind {
        kind::NONE => Ok([NONE_MAGIC, generation()]),
        kind::DIVIDE_ERROR => at_site(faulter_fault_divide),
        kind::INVALID_OPCODE => at_site(faulter_fault_ud2),
        kind::GENERAL_PROTECTION => at_site(faulter_fault_privileged),
        kind::PAGE_FAULT => at_site(faulter_fault_wild),
        kind::MISALIGNED_SSE => at_site(faulter_fault_sse),
        kind::STACK_OVERFLOW => Ok([recurse(0), 0]),
        kind::LOOP => loop {
            core::hint::spin_loop();
        },
        kind::PANIC => panic!("faulter: injected panic"),
        kind::EXIT => exit(EXIT_CODE),
        kind::RESTART_FAULT if crate::FRAGILE => at_site(faulter_fault_ud2),
        kind::RESTART_FAULT => Err(status::NOT_FRAGILE),
        _ => Err(status::BAD_KIND),
    }
}

/// The limits of a call that reaches depth `remaining` with `kind`: the
/// direct caller of a looping domain gives it a small budget.
fn limits_for(kind: u64, remaining: u64) -> Limits {
    Limits {
        budget_us: if kind == kind::LOOP && remaining == 1 {
            LOOP_BUDGET_US
        } else {
            0
        },
        wait_us: 0,
    }
}

/// What this frame saw as the answer `a`.
fn record_of(a: &Answer, c: &Call) -> Record {
    let (status, regs) = match a.result {
        Ok([r0, r1]) => (0, [r0, r1, 0, 0]),
        Err(CallError::Fault {
            vector,
            rip,
            error_code,
            cr2,
        }) => (
            CallError::Fault {
                vector,
                rip,
                error_code,
                cr2,
            }
            .code(),
            [vector, rip, error_code, cr2],
        ),
        Err(e) => (e.code(), [0, 0, 0, 0]),
    };
    [
        status,
        regs[0],
        regs[1],
        regs[2],
        regs[3],
        a.generation,
        u64::from(ferry_guest::domain_id()),
        u64::from(c.depth()),
    ]
}

/// Call `slot` with `[kind_or_depth..]` and relay: the frame whose callee is
/// the last of the chain (or failed unexpectedly) records its own answer;
/// others pass the callee's record and results up.
fn relay(
    c: &mut Call,
    slot: u32,
    scalars: &[u64],
    remaining: u64,
    limits: Limits,
) -> Result<[u64; 2], u32> {
    let mut rec: Record = [0; RECORD_WORDS];
    let a = call_with(slot, scalars, &mut [Arg::output(&mut rec)], limits);
    let out = match a.result {
        Ok(r) if remaining > 1 => r,
        _ => {
            rec = record_of(&a, c);
            [RELAYED, u64::from(c.depth())]
        }
    };
    if let Some(obj) = c.arg_mut(0) {
        for (dst, w) in obj.chunks_exact_mut(8).zip(rec.iter()) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
    }
    Ok(out)
}

/// Entry 0.
pub fn inject(c: &mut Call) -> Result<[u64; 2], u32> {
    let (k, depth) = (c.scalar(0), c.scalar(1));
    if k >= kind::COUNT as u64 {
        return Err(status::BAD_KIND);
    }
    match depth {
        0 => Err(status::BAD_DEPTH),
        1 => raise(k),
        d => relay(c, 0, &[k, d - 1], d - 1, limits_for(k, d - 1)),
    }
}

/// Entry 1.
pub fn hold(c: &mut Call) -> Result<[u64; 2], u32> {
    let (depth, timeout) = (c.scalar(0), c.scalar(1));
    match depth {
        0 => Err(status::BAD_DEPTH),
        1 => {
            let start = rdtsc();
            while RELEASE.load(Ordering::Acquire) == 0 {
                if rdtsc().wrapping_sub(start) > timeout {
                    return Err(status::HOLD_TIMEOUT);
                }
                core::hint::spin_loop();
            }
            RELEASE.store(0, Ordering::Release);
            Ok([HELD, generation()])
        }
        d => relay(c, 1, &[d - 1, timeout], d - 1, Limits::default()),
    }
}

/// Entry 2.
pub fn sites(c: &mut Call) -> Result<[u64; 2], u32> {
    Ok([site_addr(c.scalar(0)).ok_or(status::BAD_KIND)?, 0])
}

/// One injection from this frame: the top answer and the record.
fn inject_from_here(c: &Call, k: u64, depth: u64, gen_before: u64) -> Obs {
    let mut rec: Record = [0; RECORD_WORDS];
    let a = call_with(
        0,
        &[k, depth],
        &mut [Arg::output(&mut rec)],
        limits_for(k, depth),
    );
    let top = record_of(&a, c);
    if depth == 1 {
        rec = top;
    }
    let mut obs: Obs = [0; OBS_WORDS];
    obs[..7].copy_from_slice(&[k, depth, gen_before, top[0], top[1], top[2], top[5]]);
    obs[7..7 + RECORD_WORDS].copy_from_slice(&rec);
    obs
}

fn publish(slot: &Shared<OBS_WORDS>, obs: &Obs) -> u64 {
    for (i, w) in obs.iter().enumerate() {
        slot.set(i, *w);
    }
    slot.addr()
}

/// Entry 3.
pub fn once(c: &mut Call) -> Result<[u64; 2], u32> {
    let obs = inject_from_here(c, c.scalar(0), c.scalar(1), 0);
    Ok([publish(&OBS_ONCE, &obs), 0])
}

/// Entry 4.
pub fn bystand(c: &mut Call) -> Result<[u64; 2], u32> {
    let (depth, timeout) = (c.scalar(0), c.scalar(1));
    let mut rec: Record = [0; RECORD_WORDS];
    let a = call_with(
        1,
        &[depth, timeout],
        &mut [Arg::output(&mut rec)],
        Limits::default(),
    );
    let top = record_of(&a, c);
    if depth == 1 {
        rec = top;
    }
    let mut obs: Obs = [0; OBS_WORDS];
    obs[..7].copy_from_slice(&[u64::MAX, depth, 0, top[0], top[1], top[2], top[5]]);
    obs[7..7 + RECORD_WORDS].copy_from_slice(&rec);
    Ok([publish(&OBS_BYSTAND, &obs), 0])
}

// ---------------------------------------------------------------------------
// The storm.

/// Does register value `x` satisfy rule `(op, a, b, c)`?
fn rule_holds(rule: [u64; RULE], x: u64, answer_generation: u64) -> bool {
    let [o, a, b, c] = rule;
    match o {
        op::EXACT => x == a,
        op::MASKED => x & a == b,
        op::IN_RANGE => (a..b).contains(&x),
        op::STRIDED_PAGE => {
            x >= a
                && (x - a).checked_div(b).is_some_and(|i| i < c)
                && (x - a).checked_rem(b).is_some_and(|off| off < 0x1000)
        }
        op::IS_GENERATION => x == answer_generation,
        _ => false,
    }
}

/// Judge one observation against the host's table; `gen_top` is the
/// model's generation of the first domain of the chain.
fn judge(obs: &Obs, gen_top: u64) -> bool {
    let (k, depth, gen_before) = (obs[0], obs[1], obs[2]);
    let row = 1 + k as usize * EXPECT_ROW;
    if EXPECT.get(row) != 1 {
        return false;
    }
    let rec = &obs[7..7 + RECORD_WORDS];
    // Parties above the direct caller get what the relays return.
    if depth > 1 && (obs[3] != 0 || obs[4] != RELAYED || obs[5] != depth - 1 || obs[6] != gen_top) {
        return false;
    }
    if rec[7] != depth - 1 || rec[0] != EXPECT.get(row + 1) {
        return false;
    }
    for i in 0..4 {
        let rule: [u64; RULE] = core::array::from_fn(|j| EXPECT.get(row + 2 + RULE * i + j));
        if !rule_holds(rule, rec[1 + i], rec[5]) {
            return false;
        }
    }
    match EXPECT.get(row + 18) {
        0 => rec[5] == gen_before,
        _ => rec[5] == gen_before || rec[5] == gen_before + 1,
    }
}

/// Entry 5: `storm(seed, count, max_depth, mask)`. Probes the generation at
/// every depth with `NONE`, then injects `count` faults, each of a kind
/// drawn from `mask` (bit k = kind k) at a depth drawn from
/// 1..=`max_depth`, judging each answer against the table the host wrote.
/// Tallies go to `TALLY`: `Ok([its address, injections made])`.
pub fn storm(c: &mut Call) -> Result<[u64; 2], u32> {
    let (seed, count, max_depth, mask) = (c.scalar(0), c.scalar(1), c.scalar(2), c.scalar(3));
    if max_depth == 0 || max_depth as usize > MAX_DEPTH {
        return Err(status::BAD_DEPTH);
    }
    let kinds: [u64; kind::COUNT] = core::array::from_fn(|k| k as u64);
    let mut pool = [0u64; kind::COUNT];
    let mut n = 0;
    for k in kinds {
        if mask & (1 << k) != 0 {
            pool[n] = k;
            n += 1;
        }
    }
    if n == 0 {
        return Err(status::BAD_KIND);
    }
    if EXPECT.get(0) != EXPECT_MAGIC {
        return Err(status::NO_TABLE);
    }
    if STORMING.swap(1, Ordering::AcqRel) != 0 {
        return Err(status::BUSY);
    }
    for i in 0..TALLY_WORDS {
        TALLY.set(i, 0);
    }
    for d in 0..DEPTHS {
        TALLY.set(T_LAST + d, u64::MAX);
    }
    let mut gens = [0u64; DEPTHS];
    let mut rng = Rng::new(seed);
    let total = max_depth + count;
    for i in 0..total {
        let (k, depth) = if i < max_depth {
            (kind::NONE, i + 1) // probe, shallowest first
        } else {
            (
                pool[(rng.next_u64() % n as u64) as usize],
                1 + rng.next_u64() % max_depth,
            )
        };
        let d = depth as usize;
        let mut obs = inject_from_here(c, k, depth, gens[d]);
        if i < max_depth {
            // A probe learns the generation it then checks.
            gens[d] = obs[7 + 5];
            obs[2] = gens[d];
        }
        let good = judge(&obs, gens[1]);
        TALLY.add(T_COUNTS + k as usize * DEPTHS + d, 1);
        TALLY.add(T_DONE, 1);
        if !good {
            if TALLY.get(T_MISMATCHES) == 0 {
                for (j, w) in obs.iter().enumerate() {
                    TALLY.set(T_FIRST + j, *w);
                }
            }
            TALLY.add(T_MISMATCHES, 1);
        }
        if EXPECT.get(1 + k as usize * EXPECT_ROW + 19) != 0 {
            gens[d] += 1;
            TALLY.set(T_LAST + d, k);
        }
        let head = TALLY.get(T_HEAD);
        let at = T_RING + (head as usize % RING) * OBS_WORDS;
        for (j, w) in obs.iter().enumerate() {
            TALLY.set(at + j, *w);
        }
        TALLY.set(T_HEAD, head + 1);
    }
    for (d, g) in gens.iter().enumerate() {
        TALLY.set(T_GEN + d, *g);
    }
    TALLY.set(0, TALLY_MAGIC);
    STORMING.store(0, Ordering::Release);
    Ok([TALLY.addr(), total])
}
