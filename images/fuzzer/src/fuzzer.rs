//! `fuzzer`: hostile hypercalls from several vCPUs of one domain, each
//! recorded (request and answer) for the host's oracle.
//!
//! | # | entry | does |
//! |---|-------|------|
//! | 0 | `prepare(_, PREPARE_MAGIC)` | resets the rings, fills the canary zone and the raced request, answers `[address of the Directory, MAGIC]` |
//! | 1 | `work(worker, WORK_MAGIC)` | sends `Setup::count` hostile hypercalls, one `Record` each in ring `worker`: `[records, 0]` |
//! | 2 | `spawned(arg)` | what a spawned thread does: a `Nop`, a hostile `Print`, an unknown number, then `Exit(arg)` if `arg` is odd, else returns |
//!
//! The generator never lets an accepted call write outside the worker's own
//! scratch: it runs the same model of `Call`'s checks as the host
//! (`wire::predict`) and demotes to IN every OUT/INOUT object elsewhere of a
//! call the model accepts. Refused calls keep whatever they name (guard
//! pages, page tables, the code, other workers' rings): if the VMM ever
//! wrote there, the host's canaries and snapshots would show it.
#![no_std]
#![no_main]

#[path = "raw.rs"]
mod raw;
#[path = "texts.rs"]
mod texts;
#[path = "wire.rs"]
#[allow(dead_code)]
mod wire;

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ferry_guest::shared_abi::layout::{DomainLayout, IMAGE_BASE, LEASE_WINDOW_SIZE, PAGE_SIZE};
use ferry_guest::shared_abi::{
    ArgDesc, ArgMode, CallRequest, ErrorCode, Hypercall, ARG_LEND, NO_CALLER,
};
use ferry_guest::{rdtsc, Call, Rng};
use wire::{
    act, flag, op, pattern_word, predict, Directory, Record, Region, Setup, CANARY_LEN, CANARY_TAG,
    MAX_WORKERS, NREGS, RACE_IN_LEN, RACE_OUT_LEN, RACE_SALT, RACE_TAG, RING_LEN, SCRATCH_LEN,
    SLOTS, SLOT_CHECK, SLOT_DEEP, SLOT_HOSTILE,
};

/// A static the VMM (and the host, between batches) writes behind the
/// compiler's back: accessed through raw pointers only.
#[repr(C, align(4096))]
struct Shared<T>(UnsafeCell<T>);

// SAFETY: every access goes through `get()` raw pointers; concurrent
// workers touch disjoint parts (their own ring, scratch and request), and
// the shared race request is accessed with volatile byte stores/reads only.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }

    fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The raced request, its well-formed original and its object areas.
#[repr(C)]
struct RaceArea {
    live: CallRequest,
    v1: CallRequest,
    input: [u8; RACE_IN_LEN as usize],
    output: [u8; RACE_OUT_LEN as usize],
}

// SAFETY: all-zero bytes are a valid Record (plain integers).
static RINGS: Shared<[[Record; RING_LEN]; MAX_WORKERS]> =
    Shared::new(unsafe { core::mem::zeroed() });
static SCRATCH: Shared<[[u8; SCRATCH_LEN as usize]; MAX_WORKERS]> =
    Shared::new([[0; SCRATCH_LEN as usize]; MAX_WORKERS]);
static CANARY: Shared<[u8; CANARY_LEN as usize]> = Shared::new([0; CANARY_LEN as usize]);
// SAFETY: all-zero bytes are a valid CallRequest.
static REQUESTS: Shared<[CallRequest; MAX_WORKERS]> = Shared::new(unsafe { core::mem::zeroed() });
// SAFETY: all-zero bytes are a valid RaceArea (requests and bytes).
static RACE: Shared<RaceArea> = Shared::new(unsafe { core::mem::zeroed() });
// SAFETY: all-zero bytes are a valid Setup (its magic then says "not set").
static SETUP: Shared<Setup> = Shared::new(unsafe { core::mem::zeroed() });
// SAFETY: all-zero bytes are a valid Directory.
static DIRECTORY: Shared<Directory> = Shared::new(unsafe { core::mem::zeroed() });
static WRITTEN: [AtomicU64; MAX_WORKERS] = [const { AtomicU64::new(0) }; MAX_WORKERS];
static FLIPPING: AtomicU32 = AtomicU32::new(0);
static FLIPS: AtomicU64 = AtomicU64::new(0);
static DEEP_BUSY: AtomicU32 = AtomicU32::new(0);

fn prepare(c: &mut Call) -> Result<[u64; 2], u32> {
    if c.caller_domain() != NO_CALLER || c.scalar(1) != wire::PREPARE_MAGIC {
        return Ok([0, 0]);
    }
    for w in &WRITTEN {
        w.store(0, Ordering::Relaxed);
    }
    FLIPS.store(0, Ordering::Relaxed);
    let canary = CANARY.get() as u64;
    // SAFETY: no worker runs during prepare (the host starts them after);
    // the canary zone is ours and written only here.
    unsafe {
        let words = CANARY.get().cast::<u64>();
        for k in 0..CANARY_LEN / 8 {
            words
                .add(k as usize)
                .write_volatile(pattern_word(CANARY_TAG, (canary >> 3) + k));
        }
    }
    let race = RACE.get();
    // SAFETY: as above; the race area is ours and no worker runs yet.
    unsafe {
        let input = (*race).input.as_mut_ptr();
        for k in 0..RACE_IN_LEN {
            input
                .add(k as usize)
                .write_volatile(wire::pattern(RACE_TAG, k));
        }
        let mut v1 = CallRequest {
            slot: SLOT_CHECK,
            nargs: 2,
            ..CallRequest::default()
        };
        v1.args[0] = ArgDesc {
            addr: input as u64,
            len: RACE_IN_LEN,
            mode: ArgMode::In as u32,
            flags: 0,
        };
        v1.args[1] = ArgDesc {
            addr: (*race).output.as_mut_ptr() as u64,
            len: RACE_OUT_LEN,
            mode: ArgMode::Out as u32,
            flags: 0,
        };
        let bytes = core::slice::from_raw_parts(input, RACE_IN_LEN as usize);
        v1.scalars = [
            RACE_SALT,
            wire::in_digest(&v1, |_| bytes),
            2,
            0, // the caller's domain: set by the first worker from Setup
            wire::packed_modes(&v1),
            wire::lens_digest(&v1),
        ];
        core::ptr::addr_of_mut!((*race).v1).write_volatile(v1);
        core::ptr::addr_of_mut!((*race).live).write_volatile(v1);
        DIRECTORY.get().write_volatile(Directory {
            magic: wire::MAGIC,
            setup: SETUP.get() as u64,
            rings: RINGS.get() as u64,
            written: WRITTEN.as_ptr() as u64,
            scratch: SCRATCH.get() as u64,
            canary,
            race: core::ptr::addr_of!((*race).live) as u64,
            race_in: input as u64,
            race_out: (*race).output.as_ptr() as u64,
            flips: 0,
        });
    }
    Ok([DIRECTORY.get() as u64, wire::MAGIC])
}

/// Addresses outside every domain's data region, for wild pointers and
/// faulting stores: null, GDT, IDT, stubs, page tables, a TSS, an RSP0
/// stack, a vCPU-area guard, past 256 MiB, user-looking but unmapped, and
/// non-canonical.
const WILD: [u64; 12] = [
    0,
    0x1000,
    0x2008,
    0x3000,
    0x1_0000,
    0x10_0000,
    0x10_4000,
    0x10_3000,
    0x1000_0000,
    0x0000_7fff_dead_0000,
    0x8000_0000_0000_0000,
    0xdead_beef_0000_0000,
];

struct Worker {
    w: usize,
    rng: Rng,
    setup: Setup,
    layout: DomainLayout,
    region: Region,
    scratch: u64,
    req: *mut CallRequest,
    tag: u64,
}

fn read_sp() -> u64 {
    let sp: u64;
    // SAFETY: reads RSP only.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    sp
}

impl Worker {
    fn in_scratch(&self, addr: u64, len: u64) -> bool {
        addr >= self.scratch
            && addr
                .checked_add(len)
                .is_some_and(|e| e <= self.scratch + SCRATCH_LEN)
    }

    /// Fill this worker's scratch with pattern `tag` (offsets from its start).
    fn fill_scratch(&mut self) {
        self.tag = self.rng.next_u64();
        let words = self.scratch as *mut u64;
        for k in 0..SCRATCH_LEN / 8 {
            // SAFETY: the scratch is this worker's alone, 8-aligned, and
            // SCRATCH_LEN bytes long.
            unsafe {
                words
                    .add(k as usize)
                    .write_volatile(pattern_word(self.tag, k))
            };
        }
    }

    fn scratch_digest(&self) -> u64 {
        // SAFETY: the scratch is ours; nothing writes it during this read
        // (the VMM writes it only while our vCPU is inside a `Call`).
        let bytes =
            unsafe { core::slice::from_raw_parts(self.scratch as *const u8, SCRATCH_LEN as usize) };
        wire::digest(bytes)
    }

    /// A range in the scratch: `[off, off + len)` with `len ≤ max`.
    fn scratch_range(&mut self, max: u64) -> (u64, u64) {
        let off = self.rng.below(SCRATCH_LEN);
        let len = self.rng.below((SCRATCH_LEN - off).min(max) + 1);
        (self.scratch + off, len)
    }

    /// A range anywhere: every region of the memory map and beyond.
    fn any_range(&mut self) -> (u64, u64) {
        let l = self.layout;
        let small = 1 + self.rng.below(64);
        let stack = u32::try_from(self.rng.below(u64::from(l.stack_count))).unwrap_or(0);
        match self.rng.below(18) {
            0..=3 => self.scratch_range(SCRATCH_LEN),
            4 => (CANARY.get() as u64 + self.rng.below(CANARY_LEN - 64), small),
            5 => (IMAGE_BASE + self.rng.below(4 * PAGE_SIZE), small),
            6 => {
                let heap = l.heap_base() + PAGE_SIZE;
                (
                    heap + self.rng.below(64 * PAGE_SIZE),
                    1 + self.rng.below(96 * 1024),
                )
            }
            7 => (read_sp() - self.rng.below(512), small),
            8 => (
                l.stack_bottom(stack) + self.rng.below(l.stack_size - 64),
                small,
            ),
            9 => (l.stack_top(stack) - 8, 16),
            10 => (
                l.stack_bottom(stack) - PAGE_SIZE + self.rng.below(PAGE_SIZE),
                small,
            ),
            11 => (l.image_end - 8, 8 + small),
            12 => (l.memory_size - 8, 8 + small),
            13 => (l.memory_size + self.rng.below(1 << 30), small),
            14 => (self.rng.pick(&WILD), small),
            15 => match self.rng.below(3) {
                0 => (u64::MAX - self.rng.below(64), 1 + self.rng.below(128)),
                1 => (self.scratch, u64::MAX - self.rng.below(16)),
                _ => (self.rng.next_u64(), 1 << 63),
            },
            16 => (self.rng.next_u64(), 0),
            _ => {
                let other = self.rng.below(MAX_WORKERS as u64);
                let ring = RINGS.get() as u64 + other * (RING_LEN as u64) * 648;
                (ring + self.rng.below(4096), small)
            }
        }
    }

    /// The heap's whole pages that nothing writes during a batch: from
    /// the first page boundary past `heap_base + PAGE_SIZE` to the page
    /// boundary below the edge headers. `(first, pages)`.
    fn heap_pages(&self) -> (u64, u64) {
        let l = self.layout;
        let first = (l.heap_base() + 2 * PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let end = (l.memory_size - wire::EDGE_LEN) & !(PAGE_SIZE - 1);
        (first, end.saturating_sub(first) / PAGE_SIZE)
    }

    /// A lendable IN object on the heap: 1 to `max` whole pages.
    fn lend_heap(&mut self, max: u64) -> ArgDesc {
        let (first, avail) = self.heap_pages();
        let pages = 1 + self.rng.below(max.min(avail));
        ArgDesc {
            addr: first + self.rng.below((avail + 1).saturating_sub(pages)) * PAGE_SIZE,
            len: pages * PAGE_SIZE,
            mode: ArgMode::In as u32,
            flags: ARG_LEND,
        }
    }

    /// This worker's whole scratch page marked [`ARG_LEND`] (it is
    /// page-aligned, so it is lent), in a random mode.
    fn lend_scratch(&mut self) -> ArgDesc {
        ArgDesc {
            addr: self.scratch,
            len: SCRATCH_LEN,
            mode: self.rng.pick(&[ArgMode::In, ArgMode::Out, ArgMode::InOut]) as u32,
            flags: ARG_LEND,
        }
    }

    fn mode(&mut self) -> u32 {
        match self.rng.below(20) {
            0..=5 => ArgMode::In as u32,
            6..=11 => ArgMode::Out as u32,
            12..=17 => ArgMode::InOut as u32,
            18 => 0,
            _ => self.rng.pick(&[4, 0xff, 0x101, 0x8000_0001, u32::MAX]),
        }
    }

    fn budget_of(&self, slot: u32) -> u64 {
        let i = usize::try_from(slot).unwrap_or(usize::MAX);
        self.setup.budgets.get(i).copied().unwrap_or(0)
    }

    fn predict(&self, addr: u64, req: &CallRequest) -> Result<(), ErrorCode> {
        predict(addr, req, &self.region, SLOTS, |s| self.budget_of(s))
    }

    /// Make an accepted request of `callee.check` safe and self-describing:
    /// OUT/INOUT objects outside the scratch become IN, the scratch gets a
    /// fresh pattern, the scalars describe the objects.
    fn finish_check(&mut self, req: &mut CallRequest, rec: &mut Record) {
        let n = usize::try_from(req.nargs).unwrap_or(0).min(16);
        for d in req.args.iter_mut().take(n) {
            let out = ArgMode::from_u32(d.mode).is_some_and(ArgMode::copies_out);
            if out && d.len > 0 && !self.in_scratch(d.addr, d.len) {
                d.mode = ArgMode::In as u32;
            }
        }
        let mut racy = false;
        for d in req.args.iter().take(n) {
            let stable = self.in_scratch(d.addr, d.len)
                || d.len == 0
                || (d.addr >= CANARY.get() as u64
                    && d.addr + d.len <= CANARY.get() as u64 + CANARY_LEN)
                || (d.addr >= IMAGE_BASE && d.addr + d.len <= IMAGE_BASE + 4 * PAGE_SIZE)
                || (d.addr > self.layout.heap_base()
                    && d.addr + d.len <= self.layout.memory_size - wire::EDGE_LEN);
            if d.mode != ArgMode::Out as u32 && !stable {
                racy = true;
            }
        }
        self.fill_scratch();
        let digest = wire::in_digest(req, |i| {
            let d = req.args[i];
            // SAFETY: the model accepted the request, so every object lies
            // in our data region, which is mapped and readable.
            unsafe { core::slice::from_raw_parts(d.addr as *const u8, d.len as usize) }
        });
        let fail = if self.rng.chance(120) {
            self.rng.pick(&[1u64, 2, 0x7fff, 0xffff_ffff, 0x1234_5678])
        } else {
            0
        };
        req.scalars = [
            self.rng.next_u64(),
            digest,
            u64::from(req.nargs) | (fail << 32),
            self.setup.domain_id,
            wire::packed_modes(req),
            wire::lens_digest(req),
        ];
        rec.in_digest = digest;
        if racy {
            rec.flags |= flag::RACY_IN;
        }
    }

    /// Call registers: request address, a budget and a wait limit (usually
    /// the defaults, sometimes huge, sometimes small), junk elsewhere.
    fn call_regs(&mut self, req: u64, rec: &mut Record) -> [u64; NREGS] {
        let budget = match self.rng.below(40) {
            0..=33 => 0,
            34..=37 => 1_000_000 + self.rng.below(u64::MAX / 2),
            _ => {
                rec.flags |= flag::SMALL_BUDGET;
                100 + self.rng.below(3000)
            }
        };
        let wait = if self.rng.chance(900) {
            0
        } else {
            self.rng.below(u64::MAX)
        };
        let mut r = self.junk();
        r[0] = Hypercall::Call as u64;
        r[1] = req;
        r[2] = budget;
        r[3] = wait;
        r
    }

    fn junk(&mut self) -> [u64; NREGS] {
        let mut r = [0; NREGS];
        for x in r.iter_mut() {
            *x = self.rng.next_u64();
        }
        r
    }

    /// A well-formed call of `callee.check`: objects in the scratch,
    /// disjoint outputs, sometimes IN objects from elsewhere.
    fn op_check(&mut self, rec: &mut Record) -> [u64; NREGS] {
        let n = self.rng.below(7);
        let mut req = CallRequest {
            slot: SLOT_CHECK,
            nargs: u32::try_from(n).unwrap_or(0),
            ..CallRequest::default()
        };
        let seg = SCRATCH_LEN / 8;
        for (i, d) in req.args.iter_mut().take(n as usize).enumerate() {
            let mode = self.rng.pick(&[ArgMode::In, ArgMode::Out, ArgMode::InOut]);
            let start = self.scratch + i as u64 * seg;
            let off = self.rng.below(seg);
            let len = self.rng.below(seg - off + 1);
            *d = ArgDesc {
                addr: start + off,
                len,
                mode: mode as u32,
                flags: 0,
            };
        }
        if n > 0 && self.rng.chance(60) {
            // Leases: the whole scratch page lent in any mode, the other
            // objects IN heap pages lent (up to 64 KiB each, over the
            // callee's 8 KiB stack budget: lent objects take no stack
            // room) or marked ARG_LEND but not whole pages (copied). At
            // most 384 KiB + a page in all: under `wire::MAX_LENT`. (Not
            // more: on PVM each lent page costs a shadow fault at first
            // touch, and a long call keeps a faulted callee quarantined
            // for longer, which turns other workers' calls into
            // `Restarting`.)
            req.args[0] = self.lend_scratch();
            for i in 1..n as usize {
                req.args[i] = if self.rng.chance(800) {
                    self.lend_heap(16)
                } else {
                    let (first, avail) = self.heap_pages();
                    ArgDesc {
                        addr: first + self.rng.below((avail * PAGE_SIZE).saturating_sub(4096)),
                        len: 1 + self.rng.below(2048),
                        mode: ArgMode::In as u32,
                        flags: ARG_LEND,
                    }
                };
            }
            return self.submit(req, rec);
        }
        if self.rng.chance(150) {
            // ARG_LEND on objects that are not whole pages: copied.
            for d in req.args.iter_mut().take(n as usize) {
                if self.rng.chance(500) {
                    d.flags = ARG_LEND;
                }
            }
        }
        if n > 0 && self.rng.chance(250) {
            // An IN object anywhere (it may overlap outputs: only outputs
            // must not overlap each other).
            let i = self.rng.below(n) as usize;
            let (addr, len) = self.any_range();
            req.args[i] = ArgDesc {
                addr,
                len: len.min(2048),
                mode: ArgMode::In as u32,
                flags: 0,
            };
        }
        self.submit(req, rec)
    }

    /// A valid argument list with one defect at a random place (or none):
    /// each check of `Call` is reached behind valid descriptors.
    fn op_one_defect(&mut self, rec: &mut Record) -> [u64; NREGS] {
        let n = 1 + self.rng.below(16);
        let mut req = CallRequest {
            slot: SLOT_CHECK,
            nargs: n as u32,
            ..CallRequest::default()
        };
        let seg = SCRATCH_LEN / 16;
        for (i, d) in req.args.iter_mut().take(n as usize).enumerate() {
            let mode = self.rng.pick(&[ArgMode::In, ArgMode::Out, ArgMode::InOut]);
            let off = self.rng.below(seg);
            *d = ArgDesc {
                addr: self.scratch + i as u64 * seg + off,
                len: self.rng.below(seg - off + 1),
                mode: mode as u32,
                flags: 0,
            };
        }
        let k = self.rng.below(n) as usize;
        let l = self.layout;
        match self.rng.below(11) {
            0 => req.args[k].mode = self.rng.pick(&[0, 4, 7, 0x101, u32::MAX]),
            // An undefined flag bit, or ARG_LEND alone (valid: these
            // objects are not whole pages, so they are copied).
            1 if self.rng.chance(300) => req.args[k].flags = ARG_LEND,
            1 => req.args[k].flags = 2 + self.rng.below(u64::from(u32::MAX - 1)) as u32,
            2 => {
                req.args[k].addr = u64::MAX - self.rng.below(4096);
                req.args[k].len = 4097 + self.rng.below(1 << 20);
            }
            3 => {
                let stack = self.rng.below(u64::from(l.stack_count)) as u32;
                let (addr, len) = match self.rng.below(6) {
                    0 => (self.rng.pick(&WILD), 8),
                    1 => (l.stack_top(stack) - 8, 16),
                    2 => (l.stack_bottom(stack) - 8, 16),
                    3 => (l.image_end - 4, 8),
                    4 => (l.memory_size - 4, 8),
                    _ => (l.memory_size + self.rng.below(1 << 24), 1),
                };
                req.args[k].addr = addr;
                req.args[k].len = len;
            }
            4 if n >= 2 => {
                let j = (k + 1 + self.rng.below(n - 1) as usize) % n as usize;
                let (a, b) = (req.args[k], req.args[j]);
                req.args[k] = ArgDesc {
                    mode: ArgMode::Out as u32,
                    len: a.len.max(1),
                    ..a
                };
                req.args[j] = ArgDesc {
                    addr: a.addr + self.rng.below(a.len.max(1)),
                    len: b.len.max(1),
                    mode: ArgMode::InOut as u32,
                    flags: 0,
                };
            }
            5 => {
                let budget = self.budget_of(SLOT_CHECK);
                req.args[k] = ArgDesc {
                    addr: l.heap_base() + PAGE_SIZE,
                    len: budget - wire::FRAME - 64 + self.rng.below(256),
                    mode: ArgMode::In as u32,
                    flags: 0,
                };
            }
            6 => req.slot = self.rng.pick(&[SLOTS, 0x7f, u32::MAX]),
            7 => req.nargs = 17 + self.rng.below(1000) as u32,
            10 => {
                // Lent IN objects (the whole heap, overlapping is allowed
                // for IN) that together overflow the lease window:
                // `TooLarge`, though none takes stack room.
                let (first, pages) = self.heap_pages();
                let len = pages * PAGE_SIZE;
                let need = LEASE_WINDOW_SIZE / len.max(1) + 1;
                if len > 0 && need <= 16 {
                    req.nargs = req.nargs.max(need as u32);
                    for d in req.args.iter_mut().take(need as usize) {
                        *d = ArgDesc {
                            addr: first,
                            len,
                            mode: ArgMode::In as u32,
                            flags: ARG_LEND,
                        };
                    }
                }
            }
            _ => {}
        }
        self.submit(req, rec)
    }

    /// A call with random descriptors, counts, modes and slots.
    fn op_malformed(&mut self, rec: &mut Record) -> [u64; NREGS] {
        if self.rng.chance(500) {
            return self.op_one_defect(rec);
        }
        let nargs = match self.rng.below(20) {
            0..=16 => self.rng.below(17),
            17 => 17 + self.rng.below(32),
            18 => u64::from(u32::MAX),
            _ => 0x1_0000 + self.rng.below(1 << 20),
        };
        let slot = if self.rng.chance(850) {
            SLOT_CHECK
        } else {
            self.rng
                .pick(&[SLOTS, SLOTS + 1, 0x7f, 0x8000_0000, u32::MAX])
        };
        let mut req = CallRequest {
            slot,
            nargs: u32::try_from(nargs).unwrap_or(u32::MAX),
            ..CallRequest::default()
        };
        for d in req.args.iter_mut() {
            let (addr, len) = self.any_range();
            let mode = self.mode();
            let reserved = match self.rng.below(1000) {
                0..=29 => 2 + self.rng.below(u64::from(u32::MAX - 1)) as u32,
                30..=129 => ARG_LEND,
                _ => 0,
            };
            *d = ArgDesc {
                addr,
                len,
                mode,
                flags: reserved,
            };
        }
        if (2..=16).contains(&nargs) && self.rng.chance(200) {
            // Two outputs that overlap.
            let (addr, len) = self.scratch_range(512);
            let a = self.rng.below(nargs) as usize;
            let b = (a + 1 + self.rng.below(nargs - 1) as usize) % nargs as usize;
            req.args[a] = ArgDesc {
                addr,
                len: len.max(2),
                mode: ArgMode::Out as u32,
                flags: 0,
            };
            req.args[b] = ArgDesc {
                addr: addr + len.max(2) / 2,
                len: len.max(2),
                mode: ArgMode::InOut as u32,
                flags: 0,
            };
        }
        self.submit(req, rec)
    }

    /// Put `req` in this worker's request buffer, make it safe if the
    /// model accepts it, and build the registers.
    fn submit(&mut self, mut req: CallRequest, rec: &mut Record) -> [u64; NREGS] {
        let addr = self.req as u64;
        if self.predict(addr, &req).is_ok() {
            self.finish_check(&mut req, rec);
        } else {
            self.fill_scratch();
            for (i, s) in req.scalars.iter_mut().enumerate() {
                *s = if self.rng.chance(500) {
                    i as u64
                } else {
                    self.rng.next_u64()
                };
            }
        }
        // SAFETY: this worker's own request buffer.
        unsafe { self.req.write_volatile(req) };
        rec.req = req;
        self.call_regs(addr, rec)
    }

    /// A request pointer that is wild, straddles a piece's end, or whose
    /// descriptors run off the end of memory.
    fn op_bad_pointer(&mut self, rec: &mut Record) -> [u64; NREGS] {
        let l = self.layout;
        let stack = u32::try_from(self.rng.below(u64::from(l.stack_count))).unwrap_or(0);
        self.fill_scratch();
        let addr = match self.rng.below(8) {
            0 => self.rng.pick(&WILD),
            1 => l.stack_top(stack) - 8,
            2 => l.stack_bottom(stack) - 16,
            3 => l.image_end - 24,
            4 => l.memory_size + self.rng.below(1 << 20),
            5 => u64::MAX - self.rng.below(64),
            _ => {
                // The header fits at the end of memory, the descriptors do not.
                let at = l.memory_size - wire::HEADER - wire::EDGE_STRIDE * self.w as u64;
                let nargs = if self.rng.chance(700) {
                    9 + self.rng.below(8)
                } else {
                    17 + self.rng.below(100)
                };
                let slot = if self.rng.chance(800) { SLOT_CHECK } else { 99 };
                let mut header = [0u8; wire::HEADER as usize];
                header[..4].copy_from_slice(&slot.to_le_bytes());
                header[4..8].copy_from_slice(&(nargs as u32).to_le_bytes());
                for (k, b) in header.iter_mut().enumerate().skip(8) {
                    *b = k as u8;
                }
                // SAFETY: the heap's last EDGE_LEN bytes are reserved for
                // these headers, one 64-byte slot per worker.
                unsafe {
                    core::ptr::copy_nonoverlapping(header.as_ptr(), at as *mut u8, header.len())
                };
                rec.req.slot = slot;
                rec.req.nargs = nargs as u32;
                at
            }
        };
        self.call_regs(addr, rec)
    }

    /// A call of `callee.hostile` with up to three scratch objects.
    fn op_hostile(&mut self, rec: &mut Record) -> [u64; NREGS] {
        let action = match self.rng.below(106) {
            0..=33 => act::RETURN,
            34..=57 => act::EXIT,
            58..=83 => act::PRINT,
            84..=91 => act::PANIC,
            92..=94 => act::UD2,
            95..=97 => act::WILD,
            98..=99 => act::SPIN,
            _ => act::WRITE_IN,
        };
        let n = if action == act::WRITE_IN {
            1
        } else {
            self.rng.below(4)
        };
        let mut req = CallRequest {
            slot: SLOT_HOSTILE,
            nargs: n as u32,
            ..CallRequest::default()
        };
        let seg = SCRATCH_LEN / 4;
        for (i, d) in req.args.iter_mut().take(n as usize).enumerate() {
            let mode = self.rng.pick(&[ArgMode::In, ArgMode::Out, ArgMode::InOut]);
            let len = self.rng.below(seg + 1);
            *d = ArgDesc {
                addr: self.scratch + i as u64 * seg,
                len,
                mode: mode as u32,
                flags: 0,
            };
        }
        // Leases on every path: object 0 the whole scratch page lent; for
        // WRITE_IN an IN object, lent (the store faults) or copied.
        if action == act::WRITE_IN {
            req.args[0].mode = ArgMode::In as u32;
            req.args[0].len = req.args[0].len.max(1);
            match self.rng.below(3) {
                0 => req.args[0].flags = ARG_LEND,
                1 => {}
                _ => {
                    req.args[0] = ArgDesc {
                        mode: ArgMode::In as u32,
                        ..self.lend_scratch()
                    }
                }
            }
        } else if n == 1 && self.rng.chance(150) {
            req.args[0] = self.lend_scratch();
        }
        let text = |r: &mut Rng| {
            if r.chance(800) {
                r.below(wire::HOSTILE_TEXTS as u64)
            } else {
                r.pick(&WILD)
            }
        };
        let status = match self.rng.below(6) {
            0 => 0,
            1 => 1 + self.rng.below(0xffff),
            2 => u64::from(u32::MAX),
            3 => u64::from(u32::MAX) + 1 + self.rng.below(1 << 40),
            4 => u64::MAX,
            _ => self.rng.next_u64(),
        };
        req.scalars = match action {
            act::RETURN => [
                action,
                status,
                self.rng.next_u64(),
                self.rng.next_u64(),
                0,
                0,
            ],
            act::EXIT => [action, self.rng.next_u64(), 0, 0, 0, 0],
            act::PANIC | act::PRINT => {
                let len = self.rng.pick(&[0, 5, 64, 4096, 5000, u64::MAX]);
                [
                    action,
                    text(&mut self.rng),
                    len,
                    self.rng.next_u64(),
                    self.rng.next_u64(),
                    0,
                ]
            }
            act::WILD => [action, self.rng.pick(&WILD), 0, 0, 0, 0],
            act::WRITE_IN => [action, self.rng.next_u64(), 0, 0, 0, 0],
            _ => [action, 0, 0, 0, 0, 0],
        };
        rec.detail = action;
        self.fill_scratch();
        let addr = self.req as u64;
        // SAFETY: this worker's own request buffer.
        unsafe { self.req.write_volatile(req) };
        rec.req = req;
        let mut r = self.call_regs(addr, rec);
        if action == act::SPIN {
            rec.flags |= flag::SMALL_BUDGET;
            r[2] = 2000 + self.rng.below(3000);
        }
        r
    }

    /// A chain of nested calls through the deep domains (one worker at a
    /// time, so the chain's stack counts are its own).
    fn op_deep(&mut self, rec: &mut Record) -> Option<[u64; NREGS]> {
        if DEEP_BUSY
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let (k, pattern) = match self.rng.below(10) {
            0..=3 => (63 + self.rng.below(8), 0),
            4..=6 => (30 + self.rng.below(8), u64::MAX),
            _ => (self.rng.below(72), self.rng.next_u64()),
        };
        let req = CallRequest {
            slot: SLOT_DEEP,
            nargs: 0,
            scalars: [k, pattern, 0, 0, 0, 0],
            ..CallRequest::default()
        };
        rec.detail = k;
        self.fill_scratch();
        let addr = self.req as u64;
        // SAFETY: this worker's own request buffer.
        unsafe { self.req.write_volatile(req) };
        rec.req = req;
        let mut r = self.call_regs(addr, rec);
        r[2] = 0;
        rec.flags &= !flag::SMALL_BUDGET;
        Some(r)
    }

    /// Submit the shared request another worker may be rewriting.
    fn op_race(&mut self, rec: &mut Record) -> [u64; NREGS] {
        let race = RACE.get();
        // SAFETY: `v1` is written only by prepare, before any worker runs.
        rec.req = unsafe { core::ptr::addr_of!((*race).v1).read_volatile() };
        rec.flags |= flag::RACY;
        rec.detail = self.setup.race_variant;
        rec.in_digest = rec.req.scalars[1];
        self.fill_scratch();
        // SAFETY: only the address is taken.
        let live = unsafe { core::ptr::addr_of!((*race).live) } as u64;
        let mut r = self.call_regs(live, rec);
        r[2] = 0;
        rec.flags &= !flag::SMALL_BUDGET;
        r
    }

    /// Rewrite one byte of the shared request back and forth for a while
    /// (no hypercall; not recorded).
    fn flip(&mut self) {
        if FLIPPING
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let (offset, value) = wire::RACE_VARIANTS
            [(self.setup.race_variant % wire::RACE_VARIANTS.len() as u64) as usize];
        let race = RACE.get();
        // SAFETY: the live request is in our memory; byte stores cannot tear.
        let byte = unsafe {
            core::ptr::addr_of_mut!((*race).live)
                .cast::<u8>()
                .add(offset)
        };
        // SAFETY: as above.
        let original = unsafe { byte.read_volatile() };
        let until = rdtsc() + 200_000 + self.rng.below(800_000);
        let mut n = 0u64;
        while rdtsc() < until {
            // SAFETY: as above.
            unsafe { byte.write_volatile(if n.is_multiple_of(2) { value } else { original }) };
            n += 1;
            core::hint::spin_loop();
        }
        // SAFETY: as above.
        unsafe { byte.write_volatile(original) };
        FLIPS.fetch_add(n, Ordering::Relaxed);
        FLIPPING.store(0, Ordering::Release);
    }

    fn op_simple(&mut self, op: u32) -> [u64; NREGS] {
        self.fill_scratch();
        let mut r = self.junk();
        r[0] = match op {
            op::NOP => Hypercall::Nop as u64,
            op::PRINT => {
                let (addr, len) = if self.rng.chance(700) {
                    let which = self.rng.below(wire::HOSTILE_TEXTS as u64);
                    let len = self.rng.pick(&[0, 3, 64, 4096, 5000, u64::MAX]);
                    texts::text(which, len)
                } else {
                    self.any_range()
                };
                r[1] = addr;
                r[2] = len;
                Hypercall::Print as u64
            }
            op::HELLO => Hypercall::Hello as u64,
            op::READY => Hypercall::Ready as u64,
            op::SPAWN => {
                r[1] = match self.rng.below(6) {
                    0 => 2,
                    1 => self.rng.below(3),
                    2 => 3 + self.rng.below(300),
                    3 => u64::from(u32::MAX),
                    4 => (1 << 32) | self.rng.below(3),
                    _ => self.rng.next_u64(),
                };
                Hypercall::Spawn as u64
            }
            _ => match self.rng.below(6) {
                0 => 0,
                1 => 10 + self.rng.below(100),
                2 => u64::from(u32::MAX),
                3 => (1 << 32) | (1 + self.rng.below(9)),
                4 => u64::MAX,
                _ => self.rng.next_u64() | (1 << 40),
            },
        };
        r
    }

    fn one(&mut self) -> Option<Record> {
        // SAFETY: all-zero bytes are a valid Record.
        let mut rec: Record = unsafe { core::mem::zeroed() };
        let roll = self.rng.below(1000);
        let (kind, regs) = match roll {
            0..=279 => (op::CHECK, self.op_check(&mut rec)),
            280..=479 => (op::MALFORMED, self.op_malformed(&mut rec)),
            480..=519 => (op::BAD_POINTER, self.op_bad_pointer(&mut rec)),
            520..=629 => (op::HOSTILE, self.op_hostile(&mut rec)),
            630..=639 => match self.op_deep(&mut rec) {
                Some(r) => (op::DEEP, r),
                None => (op::NOP, self.op_simple(op::NOP)),
            },
            640..=679 => (op::RACE, self.op_race(&mut rec)),
            680..=709 => {
                self.flip();
                return None;
            }
            710..=759 => (op::NOP, self.op_simple(op::NOP)),
            760..=829 => (op::PRINT, self.op_simple(op::PRINT)),
            830..=854 => (op::HELLO, self.op_simple(op::HELLO)),
            855..=879 => (op::READY, self.op_simple(op::READY)),
            880..=949 => (op::UNKNOWN, self.op_simple(op::UNKNOWN)),
            _ => (op::SPAWN, self.op_simple(op::SPAWN)),
        };
        rec.op = kind;
        rec.tag = self.tag;
        rec.regs_in = regs;
        let t0 = rdtsc();
        // SAFETY: every accepted call's OUT/INOUT objects lie in this
        // worker's scratch (finish_check demotes the others).
        rec.regs_out = unsafe { raw::hypercall(regs) };
        rec.cycles = rdtsc().wrapping_sub(t0);
        if kind == op::DEEP {
            DEEP_BUSY.store(0, Ordering::Release);
        }
        rec.post = self.scratch_digest();
        Some(rec)
    }
}

fn work(c: &mut Call) -> Result<[u64; 2], u32> {
    let w = usize::try_from(c.scalar(0)).unwrap_or(usize::MAX);
    if c.caller_domain() != NO_CALLER || c.scalar(1) != wire::WORK_MAGIC || w >= MAX_WORKERS {
        return Ok([0, 0]);
    }
    // SAFETY: the host wrote the setup before starting any worker.
    let setup = unsafe { SETUP.get().read_volatile() };
    if setup.magic != wire::MAGIC {
        return Err(3);
    }
    let layout = DomainLayout {
        image_end: setup.image_end,
        memory_size: setup.memory_size,
        stack_count: u32::try_from(setup.stack_count).unwrap_or(0),
        stack_size: setup.stack_size,
    };
    let race = RACE.get();
    // SAFETY: every worker writes the same value (the caller's domain id)
    // into the raced request's scalar 3, which no flipper touches.
    unsafe {
        core::ptr::addr_of_mut!((*race).live.scalars[3]).write_volatile(setup.domain_id);
        core::ptr::addr_of_mut!((*race).v1.scalars[3]).write_volatile(setup.domain_id);
    }
    let mut worker = Worker {
        w,
        rng: Rng::new(wire::mix(
            setup.seed ^ wire::mix(setup.epoch) ^ (w as u64) << 48,
        )),
        setup,
        layout,
        region: Region::of(&layout),
        // SAFETY: only addresses are computed.
        scratch: unsafe { SCRATCH.get().cast::<[u8; SCRATCH_LEN as usize]>().add(w) } as u64,
        // SAFETY: as above.
        req: unsafe { REQUESTS.get().cast::<CallRequest>().add(w) },
        tag: 0,
    };
    let count = setup.count.min(RING_LEN as u64);
    // SAFETY: ring `w` is this worker's alone.
    let ring = unsafe {
        RINGS
            .get()
            .cast::<[Record; RING_LEN]>()
            .add(w)
            .cast::<Record>()
    };
    let mut seq = 0;
    while seq < count {
        if let Some(rec) = worker.one() {
            // SAFETY: seq < RING_LEN; the ring is ours.
            unsafe { ring.add(seq as usize).write_volatile(rec) };
            seq += 1;
            WRITTEN[w].store(seq, Ordering::Release);
        }
    }
    // SAFETY: the directory is ours; the host reads it after the batch.
    unsafe {
        core::ptr::addr_of_mut!((*DIRECTORY.get()).flips)
            .write_volatile(FLIPS.load(Ordering::Relaxed))
    };
    Ok([seq, 0])
}

fn spawned(c: &mut Call) -> Result<[u64; 2], u32> {
    let arg = c.scalar(0);
    let (addr, len) = texts::text(arg % wire::HOSTILE_TEXTS as u64, 64);
    for regs in [
        [Hypercall::Nop as u64, arg, 0, 0, 0, 0, 0, 0, 0, 0],
        [Hypercall::Print as u64, addr, len, 0, 0, 0, 0, 0, 0, 0],
        [0x1_0000_0006, arg, arg, 0, 0, 0, 0, 0, 0, 0],
    ] {
        // SAFETY: none of these reads or writes memory but the text.
        unsafe { raw::hypercall(regs) };
    }
    if arg & 1 == 1 {
        ferry_guest::exit(arg);
    }
    Ok([arg, 0])
}

ferry_guest::entries! {
    "prepare" => prepare,
    "work" => work,
    "spawned" => spawned,
}
