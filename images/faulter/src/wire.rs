//! The numbers and layouts the `faulter` image and the host share: kind
//! numbers, entry names, fault sites, and the word layouts of a record, an
//! observation, the expectation table and a storm's tally. One file, built
//! into both sides (`images/faulter/src/chain.rs` and `ferry_hostile::inject`
//! include it with `#[path]`), so the two cannot drift apart. `core` only.

/// `inject` of kind `None` answers `Ok([NONE_MAGIC, generation])`.
pub const NONE_MAGIC: u64 = 0x4e4f_4e45;
/// A relaying faulter frame answers `Ok([RELAYED, its frame depth])`.
pub const RELAYED: u64 = 0x5245_4c41;
/// A released `hold` answers `Ok([HELD, generation])`.
pub const HELD: u64 = 0x4845_4c44;
/// `Exit` code of the exit kind.
pub const EXIT_CODE: u64 = 0xE1;
/// CPU budget the direct caller gives a looping callee, in µs.
pub const LOOP_BUDGET_US: u64 = 5_000;
/// Where the page-fault kind stores: mapped nowhere in any domain.
pub const WILD: u64 = 0x0000_7fff_dead_0000;
/// The panic kind's message (the VMM's record carries it).
pub const PANIC_MESSAGE: &str = "faulter: injected panic";
/// Most links a chain may have: the deepest depth a storm counts.
pub const MAX_LINKS: u32 = 8;
/// [`MAX_LINKS`] as an index bound.
pub const MAX_DEPTH: usize = MAX_LINKS as usize;
/// Rows of per-depth arrays in the tally (index 0 unused).
pub const DEPTHS: usize = MAX_DEPTH + 1;
/// Number of fault kinds.
pub const KINDS: usize = 11;

/// Fault kinds, by wire number (the host's `FaultKind` discriminants).
pub mod kind {
    /// Return normally.
    pub const NONE: u64 = 0;
    /// `div` by zero (#DE).
    pub const DIVIDE_ERROR: u64 = 1;
    /// `ud2` (#UD).
    pub const INVALID_OPCODE: u64 = 2;
    /// A privileged instruction at CPL3 (#GP).
    pub const GENERAL_PROTECTION: u64 = 3;
    /// A store through a wild pointer (#PF).
    pub const PAGE_FAULT: u64 = 4;
    /// Unbounded recursion into the stack's guard page (#PF).
    pub const STACK_OVERFLOW: u64 = 5;
    /// `movaps` on a misaligned address (#GP).
    pub const MISALIGNED_SSE: u64 = 6;
    /// Spin forever (the caller's CPU budget stops it).
    pub const LOOP: u64 = 7;
    /// `panic!`.
    pub const PANIC: u64 = 8;
    /// `Exit` from a callee frame.
    pub const EXIT: u64 = 9;
    /// `ud2`, in an image whose restart then faults (fragile image only).
    pub const RESTART_FAULT: u64 = 10;
    /// Number of kinds.
    pub const COUNT: usize = super::KINDS;
}

/// Entry names of the image.
pub mod entry {
    /// `inject(kind, depth, OUT record)`.
    pub const INJECT: &str = "inject";
    /// `hold(depth, timeout cycles, OUT record)`.
    pub const HOLD: &str = "hold";
    /// `sites(which)`.
    pub const SITES: &str = "sites";
    /// `once(kind, depth)`.
    pub const ONCE: &str = "once";
    /// `bystand(depth, timeout cycles)`.
    pub const BYSTAND: &str = "bystand";
    /// `storm(seed, count, max depth, kind mask)`.
    pub const STORM: &str = "storm";
}

/// `sites(which)` selectors.
pub mod site {
    /// The `div` of the divide-error kind.
    pub const DIVIDE: u64 = 0;
    /// The `ud2` of the invalid-opcode and restart-fault kinds.
    pub const UD2: u64 = 1;
    /// The privileged instruction (`hlt`) of the general-protection kind.
    pub const PRIVILEGED: u64 = 2;
    /// The store of the page-fault kind.
    pub const WILD: u64 = 3;
    /// The `movaps` of the misaligned-SSE kind.
    pub const SSE: u64 = 4;
    /// The `RELEASE` word `hold` spins on.
    pub const RELEASE: u64 = 16;
    /// The expectation table.
    pub const EXPECT: u64 = 17;
}

/// Application statuses of the image's entries.
pub mod status {
    /// A kind number the image does not know.
    pub const BAD_KIND: u32 = 1;
    /// Depth 0, or deeper than a storm counts.
    pub const BAD_DEPTH: u32 = 2;
    /// The restart-fault kind asked of the image that restarts cleanly.
    pub const NOT_FRAGILE: u32 = 3;
    /// A storm is already running in that domain.
    pub const BUSY: u32 = 5;
    /// The expectation table was not written.
    pub const NO_TABLE: u32 = 6;
    /// `hold` was not released in time.
    pub const HOLD_TIMEOUT: u32 = 7;
}

/// Words of a record: status, RDI, RSI, RDX, R10, generation (R8), the
/// observer's domain id, the observer's frame depth.
pub const RECORD_WORDS: usize = 8;
/// Words of an observation: kind, depth, generation before, top status,
/// top r0, top r1, top generation, then a record; one spare.
pub const OBS_WORDS: usize = 16;

/// First word of a written expectation table.
pub const EXPECT_MAGIC: u64 = 0x4658_5045_4354_0002;
/// Words per kind in the table: valid, status, four rules of [`RULE`]
/// words (op, a, b, c), the generation rule, whether the kind restarts the
/// domain.
pub const EXPECT_ROW: usize = 20;
/// Words per register rule.
pub const RULE: usize = 4;
/// Words of the whole table.
pub const EXPECT_WORDS: usize = 1 + KINDS * EXPECT_ROW;

/// Register-rule ops of the table.
pub mod op {
    /// `x == a`.
    pub const EXACT: u64 = 0;
    /// `x & a == b`.
    pub const MASKED: u64 = 1;
    /// `a <= x < b` (the faulting domain's image).
    pub const IN_RANGE: u64 = 2;
    /// `x` in one of `c` pages at `a + i * b` (its stack guard pages).
    pub const STRIDED_PAGE: u64 = 3;
    /// Equal to the answer's generation (`R8`).
    pub const IS_GENERATION: u64 = 4;
}

/// First word of a finished tally.
pub const TALLY_MAGIC: u64 = 0x5441_4c4c_5900_0001;
/// Tally: injections made.
pub const T_DONE: usize = 1;
/// Tally: injections whose answer the guest judged wrong.
pub const T_MISMATCHES: usize = 2;
/// Tally: `counts[kind][depth]`.
pub const T_COUNTS: usize = 3;
/// Tally: the last restarting kind injected at each depth (`u64::MAX`: none).
pub const T_LAST: usize = T_COUNTS + KINDS * DEPTHS;
/// Tally: the guest's model of each depth's generation at the end.
pub const T_GEN: usize = T_LAST + DEPTHS;
/// Tally: the first mismatching observation.
pub const T_FIRST: usize = T_GEN + DEPTHS;
/// Tally: observations ever written to the ring.
pub const T_HEAD: usize = T_FIRST + OBS_WORDS;
/// Tally: the ring of the last [`RING`] observations.
pub const T_RING: usize = T_HEAD + 1;
/// Observations the ring keeps.
pub const RING: usize = 64;
/// Words of the whole tally.
pub const TALLY_WORDS: usize = T_RING + RING * OBS_WORDS;
