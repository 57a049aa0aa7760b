//! The fuzzer's wire format and its model of `Call`'s checks, shared byte
//! for byte by the `fuzzer` and `fuzz-callee` images and the host oracle
//! (`ferry_hostile::fuzz` includes this very file with `#[path]`), so the
//! two sides cannot drift apart. `core` only: it compiles in a `no_std`
//! guest and on the host alike.
//!
//! Protocol: the host runs the fuzzer's `prepare` entry, which answers the
//! address of a [`Directory`]; the host writes a [`Setup`] where the
//! directory says; each worker thread (`work`, one per host thread, several
//! vCPUs of one domain at once) then issues [`Setup::count`] hostile
//! hypercalls and writes one [`Record`] per hypercall into its ring; the
//! host reads the rings back and judges every record.

use shared_abi::layout::{
    DomainLayout, IMAGE_BASE, LEASE_WINDOW_BASE, LEASE_WINDOW_SIZE, PAGE_SIZE,
};
use shared_abi::{ArgDesc, ArgMode, CallRequest, ErrorCode, ARG_FLAGS, ARG_LEND, MAX_ARGS};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Marks a [`Directory`] and a [`Setup`] of this format version.
pub const MAGIC: u64 = 0x315a_4659_5252_4546;
/// `work`'s scalar 1 must be this: a `Spawn` (which passes one scalar)
/// cannot start a worker that would write into a ring.
pub const WORK_MAGIC: u64 = 0x574f_524b_fa11_fa11;
/// `prepare`'s scalar 1 must be this, for the same reason.
pub const PREPARE_MAGIC: u64 = 0x5052_4550_fa11_fa11;
/// Most worker threads in one fuzzer domain at once.
pub const MAX_WORKERS: usize = 4;
/// Records per worker ring: the most hypercalls one worker sends per batch.
pub const RING_LEN: usize = 2048;
/// Bytes of each worker's scratch buffer: the only memory an accepted call
/// of that worker may write (OUT and INOUT objects).
pub const SCRATCH_LEN: u64 = 4096;
/// Bytes of the canary zone in the fuzzer's `.bss`.
pub const CANARY_LEN: u64 = 4096;
/// Tag of the canary zone's pattern (`pattern(CANARY_TAG, addr)`).
pub const CANARY_TAG: u64 = 0xca4a_4259_0000_0001;
/// Bytes of the raced request's IN object area.
pub const RACE_IN_LEN: u64 = 192;
/// Bytes of the raced request's OUT object area.
pub const RACE_OUT_LEN: u64 = 128;
/// Tag of the raced request's IN bytes (`pattern(RACE_TAG, offset)`).
pub const RACE_TAG: u64 = 0x7261_6365_0000_0002;
/// Salt of the raced request (its callee writes `transform(RACE_SALT, …)`).
pub const RACE_SALT: u64 = 0x7361_6c74_0000_0003;
/// Requests that straddle the end of memory: worker `w` builds its header
/// at `memory_end - 56 - EDGE_STRIDE * w` (the heap's last bytes).
pub const EDGE_STRIDE: u64 = 64;
/// Bytes at the end of the heap reserved for those headers.
pub const EDGE_LEN: u64 = 4096;

/// Capability slot of the fuzzer: `callee.check`.
pub const SLOT_CHECK: u32 = 0;
/// Capability slot of the fuzzer: `callee.hostile`.
pub const SLOT_HOSTILE: u32 = 1;
/// Capability slot of the fuzzer: `deep_a.nest`.
pub const SLOT_DEEP: u32 = 2;
/// Capability slots the fuzzer has.
pub const SLOTS: u32 = 3;
/// Stacks of each deep domain: a chain holding them all gets `NoStack`.
pub const DEEP_STACKS: u32 = 32;
/// Frames a chain may hold (`TooDeep` beyond).
pub const MAX_DEPTH: u64 = 64;

/// What a record's hypercall was meant to exercise.
pub mod op {
    /// `Nop` with random registers.
    pub const NOP: u32 = 1;
    /// `Print` of hostile text or a wild range.
    pub const PRINT: u32 = 2;
    /// `Hello` after boot.
    pub const HELLO: u32 = 3;
    /// `Ready` after boot.
    pub const READY: u32 = 4;
    /// A number the ABI does not know (high bits included).
    pub const UNKNOWN: u32 = 5;
    /// `Spawn` of a random entry.
    pub const SPAWN: u32 = 6;
    /// A well-formed call of `callee.check` with objects in the scratch.
    pub const CHECK: u32 = 7;
    /// A call with a random, usually malformed, argument list.
    pub const MALFORMED: u32 = 8;
    /// A call whose request pointer is wild or straddles a piece's end.
    pub const BAD_POINTER: u32 = 9;
    /// A call of `callee.hostile` (return, exit, panic, print, fault, spin).
    pub const HOSTILE: u32 = 10;
    /// A chain of nested calls through the deep domains.
    pub const DEEP: u32 = 11;
    /// A call of the shared request another vCPU may be rewriting.
    pub const RACE: u32 = 12;
    /// Names, by op number (index 0 unused).
    pub const NAMES: [&str; 13] = [
        "?",
        "nop",
        "print",
        "hello",
        "ready",
        "unknown",
        "spawn",
        "check",
        "malformed",
        "bad-pointer",
        "hostile",
        "deep",
        "race",
    ];
}

/// Bits of [`Record::flags`].
pub mod flag {
    /// The request was raced by another vCPU (two outcomes allowed).
    pub const RACY: u32 = 1;
    /// An IN object names memory other vCPUs may write during the call.
    pub const RACY_IN: u32 = 2;
    /// The call asked for a CPU budget small enough to run out.
    pub const SMALL_BUDGET: u32 = 4;
}

/// What `callee.hostile` does (its scalar 0).
pub mod act {
    /// `Return` with status = scalar 1 (all 64 bits), results = scalars 2, 3.
    pub const RETURN: u64 = 1;
    /// `Exit` with code = scalar 1.
    pub const EXIT: u64 = 2;
    /// `Panic` with text `scalar 1` (an index into its texts, else an
    /// address) and length scalar 2.
    pub const PANIC: u64 = 3;
    /// `Print` like `PANIC`'s text, then return `[scalar 3, scalar 4]`.
    pub const PRINT: u64 = 4;
    /// `ud2` (#UD, vector 6).
    pub const UD2: u64 = 5;
    /// An 8-byte store to address scalar 1 (#PF, vector 14).
    pub const WILD: u64 = 6;
    /// Spin until the call's CPU budget runs out.
    pub const SPIN: u64 = 7;
    /// A one-byte store into IN object 0 at offset scalar 1 (modulo its
    /// length), then return `[WROTE, 0]`: a page fault when the object is
    /// lent (read-only lease), harmless on a copy.
    pub const WRITE_IN: u64 = 8;
    /// Names, by action number (index 0 unused).
    pub const NAMES: [&str; 9] = [
        "?", "return", "exit", "panic", "print", "ud2", "wild", "spin", "write-in",
    ];
    /// `WRITE_IN`'s result 0 when the store did not fault.
    pub const WROTE: u64 = 0x5752_4954;
}

/// Hostile texts `callee.hostile` may print or panic with (index =
/// scalar 1 when it is below their count): log-line forgeries, control
/// and bidi characters, invalid UTF-8, a text past the VMM's limits.
pub const HOSTILE_TEXTS: usize = 6;

/// Application statuses of `callee.check` when what arrived is wrong.
pub mod bad {
    /// The IN/INOUT bytes' digest differs from the caller's (scalar 1).
    pub const DIGEST: u32 = 0xBAD1;
    /// An OUT object did not arrive zero-filled.
    pub const NOT_ZERO: u32 = 0xBAD2;
    /// The invocation (count, modes, lengths, caller, depth) differs from
    /// what the caller described in its scalars.
    pub const FRAME: u32 = 0xBAD3;
}

/// Registers in [`Record::regs_in`] and [`Record::regs_out`], in order.
pub const REG_NAMES: [&str; NREGS] = [
    "rax", "rdi", "rsi", "rdx", "r10", "r8", "r9", "r11", "r12", "r13",
];
/// Registers a record keeps.
pub const NREGS: usize = 10;
/// Index of `rax` in a record's registers.
pub const RAX: usize = 0;
/// Index of `rdi`.
pub const RDI: usize = 1;
/// Index of `rsi`.
pub const RSI: usize = 2;
/// Index of `rdx`.
pub const RDX: usize = 3;
/// Index of `r10`.
pub const R10: usize = 4;
/// Index of `r8`.
pub const R8: usize = 5;

/// Written by the host before the workers start.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Setup {
    /// [`MAGIC`].
    pub magic: u64,
    /// Batch number (mixed into every random choice).
    pub epoch: u64,
    /// The batch's seed.
    pub seed: u64,
    /// Worker threads of this batch (≤ [`MAX_WORKERS`]).
    pub workers: u64,
    /// Records per worker (≤ [`RING_LEN`]).
    pub count: u64,
    /// The fuzzer domain's id (`callee.check` compares its caller with it).
    pub domain_id: u64,
    /// The fuzzer's layout: end of its image.
    pub image_end: u64,
    /// Its stacks.
    pub stack_count: u64,
    /// Bytes per stack.
    pub stack_size: u64,
    /// Bytes of memory.
    pub memory_size: u64,
    /// Argument budget (`stack_size / 2`) of the callee of each slot.
    pub budgets: [u64; 4],
    /// Which byte the race flippers toggle (`race_variant`).
    pub race_variant: u64,
    /// Non-zero: a `System::run` is in progress, spawns may be accepted.
    pub spawns_open: u64,
}
const _: () = assert!(core::mem::size_of::<Setup>() == 128);

/// Built by `prepare`: where the host finds and puts everything.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Directory {
    /// [`MAGIC`].
    pub magic: u64,
    /// Address of the [`Setup`].
    pub setup: u64,
    /// Address of `[[Record; RING_LEN]; MAX_WORKERS]`.
    pub rings: u64,
    /// Address of `[u64; MAX_WORKERS]`: records written per worker.
    pub written: u64,
    /// Address of `[[u8; SCRATCH_LEN]; MAX_WORKERS]`.
    pub scratch: u64,
    /// Address of the canary zone (`CANARY_LEN` bytes).
    pub canary: u64,
    /// Address of the shared request the race ops submit and rewrite.
    pub race: u64,
    /// Address of its IN area (`RACE_IN_LEN` bytes).
    pub race_in: u64,
    /// Address of its OUT area (`RACE_OUT_LEN` bytes).
    pub race_out: u64,
    /// Race flips made since `prepare` (for the report).
    pub flips: u64,
}
const _: () = assert!(core::mem::size_of::<Directory>() == 80);

/// One hypercall and its answer, as the fuzzer saw them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Record {
    /// An [`op`] number.
    pub op: u32,
    /// [`flag`] bits.
    pub flags: u32,
    /// Registers going in ([`REG_NAMES`] order).
    pub regs_in: [u64; NREGS],
    /// Registers coming back.
    pub regs_out: [u64; NREGS],
    /// Tag the worker's scratch was filled with (`pattern(tag, offset)`)
    /// just before the hypercall.
    pub tag: u64,
    /// Digest of the IN/INOUT bytes as the caller had them ([`in_digest`]).
    pub in_digest: u64,
    /// Digest of the whole scratch right after the answer.
    pub post: u64,
    /// Op detail: the hostile action, the deep op's depth, the race variant.
    pub detail: u64,
    /// TSC cycles around the `out`.
    pub cycles: u64,
    /// The request as built (for `RACE`: the well-formed variant).
    pub req: CallRequest,
}
const _: () = assert!(core::mem::size_of::<Record>() == 648);

/// The race variants: byte `offset` of the shared `CallRequest` toggles
/// between its well-formed value and `value`, and every mix of the two
/// requests is one of them (one byte differs).
pub const RACE_VARIANTS: [(usize, u8); 6] = [
    (0, 0x7f),  // slot 0 → 127: BadSlot
    (4, 17),    // nargs 2 → 17: TooManyArgs
    (72, 9),    // args[0].mode 1 → 9: BadMode
    (76, 2),    // args[0].flags 0 → 2 (an undefined bit): BadMode
    (87, 0x80), // args[1].addr bit 63: OutOfRange
    (95, 0xff), // args[1].len's top byte: Overflow
];

/// The other request of race variant `v` (`RACE_VARIANTS[v % 6]`).
pub fn race_alternative(req: &CallRequest, v: u64) -> CallRequest {
    let mut alt = *req;
    let i = usize::try_from(v % RACE_VARIANTS.len() as u64).unwrap_or(0);
    if let Some(&(offset, value)) = RACE_VARIANTS.get(i) {
        if let Some(b) = alt.as_mut_bytes().get_mut(offset) {
            *b = value;
        }
    }
    alt
}

/// splitmix64's finalizer: every random and every pattern comes from it.
pub const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn byte_of(word: u64, index: u64) -> u8 {
    let i = usize::try_from(index & 7).unwrap_or(0);
    word.to_le_bytes().get(i).copied().unwrap_or(0)
}

/// The 8-byte word of pattern `tag` at word index `k` (`offset / 8`).
pub fn pattern_word(tag: u64, k: u64) -> u64 {
    mix(tag ^ k.wrapping_mul(0xd6e8_feb8_6659_fd93))
}

/// Byte `offset` of pattern `tag`: what a filled buffer holds there.
pub fn pattern(tag: u64, offset: u64) -> u8 {
    byte_of(pattern_word(tag, offset >> 3), offset)
}

/// What `callee.check` XORs into byte `j` of OUT/INOUT object `obj`.
pub fn transform(salt: u64, obj: u64, j: u64) -> u8 {
    byte_of(mix(salt ^ (obj << 56) ^ (j >> 3)), j)
}

/// Digest of a byte string (not cryptographic: it finds copies gone wrong,
/// not adversaries).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// Fold one object's digest into a running digest over an argument list.
pub fn combine(acc: u64, index: u64, part: u64) -> u64 {
    mix(acc ^ mix(index ^ part.rotate_left(17)))
}

/// Start value of every running digest.
pub const DIGEST_SEED: u64 = 0x5eed_d16e_5700_0001;

/// Modes of an argument list's used descriptors, 2 bits each (what the
/// caller tells `callee.check` in scalar 4; an invalid mode is `0`).
pub fn packed_modes(req: &CallRequest) -> u64 {
    let n = usize::try_from(req.nargs).unwrap_or(0).min(MAX_ARGS);
    req.args
        .iter()
        .take(n)
        .enumerate()
        .fold(0, |acc, (i, d)| acc | (u64::from(d.mode & 3) << (2 * i)))
}

/// Digest of an argument list's lengths (scalar 5 of `callee.check`).
pub fn lens_digest(req: &CallRequest) -> u64 {
    let n = usize::try_from(req.nargs).unwrap_or(0).min(MAX_ARGS);
    req.args
        .iter()
        .take(n)
        .enumerate()
        .fold(DIGEST_SEED, |acc, (i, d)| combine(acc, i as u64, d.len))
}

/// Running digest of the IN/INOUT objects of an argument list, where
/// `bytes(i)` gives object `i`'s bytes: the caller over its memory, the
/// callee over its copies.
pub fn in_digest<'a>(req: &CallRequest, mut bytes: impl FnMut(usize) -> &'a [u8]) -> u64 {
    let n = usize::try_from(req.nargs).unwrap_or(0).min(MAX_ARGS);
    let mut acc = DIGEST_SEED;
    for (i, d) in req.args.iter().take(n).enumerate() {
        let copies_in = ArgMode::from_u32(d.mode).is_some_and(ArgMode::copies_in);
        if copies_in && d.len > 0 {
            acc = combine(acc, i as u64, digest(bytes(i)));
        }
    }
    acc
}

/// The pieces of a domain's data region, as the ABI defines them: the
/// image, each stack without its guard page, the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pieces: [(u64, u64); MAX_PIECES],
    count: usize,
}

/// Most pieces: the image, 32 stacks, the heap.
pub const MAX_PIECES: usize = 34;

impl Region {
    /// The data region of a domain laid out as `l`.
    pub fn of(l: &DomainLayout) -> Self {
        let mut r = Region {
            pieces: [(0, 0); MAX_PIECES],
            count: 0,
        };
        r.push(IMAGE_BASE, l.image_end);
        for i in 0..l.stack_count.min(32) {
            r.push(l.stack_bottom(i), l.stack_top(i));
        }
        r.push(l.heap_base(), l.memory_size);
        r
    }

    fn push(&mut self, start: u64, end: u64) {
        if let Some(p) = self.pieces.get_mut(self.count) {
            *p = (start, end);
            self.count += 1;
        }
    }

    /// The pieces, in address order.
    pub fn pieces(&self) -> &[(u64, u64)] {
        self.pieces.get(..self.count).unwrap_or(&[])
    }

    /// `Overflow` if `addr + len` wraps, `OutOfRange` unless the range lies
    /// inside one piece, else `Ok`.
    pub fn check(&self, addr: u64, len: u64) -> Result<(), ErrorCode> {
        let end = addr.checked_add(len).ok_or(ErrorCode::Overflow)?;
        if self.pieces().iter().any(|&(s, e)| s <= addr && end <= e) {
            Ok(())
        } else {
            Err(ErrorCode::OutOfRange)
        }
    }

    /// Whether `[addr, addr + len)` lies inside one piece.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.check(addr, len).is_ok()
    }
}

/// Most bytes the fuzzer lends in one well-formed call: with every worker
/// holding that much in the callee's lease window at once (fragmented at
/// worst into `MAX_WORKERS` gaps), a free run for it is always left, so an
/// accepted call never meets a full window (`TooLarge` at run time).
pub const MAX_LENT: u64 = 8 << 20;
const _: () = assert!(MAX_LENT * (MAX_WORKERS as u64 + 1) + 64 * PAGE_SIZE <= LEASE_WINDOW_SIZE);

/// Whether `Call` lends object `d` to a callee that lends (every callee of
/// the fuzzer is a migrate-mode `pool` domain): marked [`ARG_LEND`] and
/// whole pages (page-aligned address, length a non-zero multiple of a
/// page). Anything else is copied, marked or not.
pub fn lent(d: &ArgDesc) -> bool {
    d.flags & ARG_LEND != 0
        && d.len > 0
        && d.addr.is_multiple_of(PAGE_SIZE)
        && d.len.is_multiple_of(PAGE_SIZE)
}

/// Whether `addr` lies in a callee's lease window (where a lent object is
/// seen, and where a store into an IN lease faults).
pub fn in_lease_window(addr: u64) -> bool {
    (LEASE_WINDOW_BASE..LEASE_WINDOW_BASE + LEASE_WINDOW_SIZE).contains(&addr)
}

/// Bytes of a `CallRequest` header (slot, nargs, scalars).
pub const HEADER: u64 = 56;
/// Bytes of one descriptor.
pub const DESC: u64 = 24;
/// Bytes of the invocation frame on a callee's stack (456 rounded to 16).
pub const FRAME: u64 = 464;

/// The answer `Call` must give to `req` read from `req_addr` in a caller
/// whose data region is `region`, with `slots` capabilities whose callees
/// have argument budgets `budget(slot)`, made from a thread's bottom frame:
/// `Err(code)` for a refusal, `Ok(())` if the callee must be entered. The
/// checks and their order are ABI.md's (`Call`, "Errors"); lent objects
/// ([`lent`]) take no stack room and must fit the lease window together
/// ("Leases").
pub fn predict(
    req_addr: u64,
    req: &CallRequest,
    region: &Region,
    slots: u32,
    budget: impl Fn(u32) -> u64,
) -> Result<(), ErrorCode> {
    if !region.contains(req_addr, HEADER) {
        return Err(ErrorCode::BadPointer);
    }
    let n = u64::from(req.nargs);
    if n <= MAX_ARGS as u64 && !region.contains(req_addr, HEADER + DESC * n) {
        return Err(ErrorCode::BadPointer);
    }
    if req.slot >= slots {
        return Err(ErrorCode::BadSlot);
    }
    if n > MAX_ARGS as u64 {
        return Err(ErrorCode::TooManyArgs);
    }
    let descs = req
        .args
        .get(..MAX_ARGS.min(usize::try_from(n).unwrap_or(0)))
        .unwrap_or(&[]);
    let mut used: u64 = 0;
    let mut window: u64 = 0;
    for d in descs {
        if ArgMode::from_u32(d.mode).is_none() || d.flags & !ARG_FLAGS != 0 {
            return Err(ErrorCode::BadMode);
        }
        if d.len > 0 {
            region.check(d.addr, d.len)?;
        }
        if lent(d) {
            window = window.saturating_add(d.len);
        } else {
            let rounded = d.len.min(u64::MAX - 16).saturating_add(15) & !15;
            used = used.saturating_add(rounded);
        }
    }
    for (a, da) in descs.iter().enumerate() {
        for db in descs.iter().skip(a + 1) {
            let out = |d: &shared_abi::ArgDesc| {
                ArgMode::from_u32(d.mode).is_some_and(ArgMode::copies_out) && d.len > 0
            };
            if out(da) && out(db) && da.addr < db.addr + db.len && db.addr < da.addr + da.len {
                return Err(ErrorCode::OverlappingOutputs);
            }
        }
    }
    if used.saturating_add(FRAME) > budget(req.slot) || window > LEASE_WINDOW_SIZE {
        return Err(ErrorCode::TooLarge);
    }
    Ok(())
}

/// The outcome a chain of `nest` calls must reach: the fuzzer (depth 0)
/// calls `deep_a.nest(k, pattern)`; the frame at depth `d` with `k > 0`
/// calls its own domain if bit `d % 64` of `pattern` is set, else the
/// other deep domain, with `k - 1`. Returns `(status, depth)`: the first
/// refusal (`TooDeep` once a chain holds 64 frames, `NoStack` once it
/// holds all 32 stacks of the domain it calls) and the depth of the frame
/// that got it, or `(0, depth of the last frame)`.
pub fn predict_nest(k: u64, pattern: u64) -> (u64, u64) {
    // Frames per deep domain held by this chain: [a, b].
    let mut held = [1u32, 0u32];
    let mut here = 0usize;
    let mut depth = 1u64;
    let mut left = k;
    while left > 0 {
        if depth + 1 > MAX_DEPTH - 1 {
            return (ErrorCode::TooDeep as u64, depth);
        }
        let same = (pattern >> (depth % 64)) & 1 == 1;
        let target = if same { here } else { 1 - here };
        let count = held.get(target).copied().unwrap_or(0);
        if count >= DEEP_STACKS {
            return (ErrorCode::NoStack as u64, depth);
        }
        if let Some(c) = held.get_mut(target) {
            *c += 1;
        }
        here = target;
        depth += 1;
        left -= 1;
    }
    (0, depth)
}
