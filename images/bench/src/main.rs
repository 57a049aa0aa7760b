//! `bench`: callees and call loops for Ferry's benchmarks. One image plays
//! every role; the VMM's bench manifests load it into several domains and
//! wire each caller domain's capability slots per run.
//!
//! Entries, in entry-index order (the table at the bottom is the truth):
//!
//! Served ([`bench_api::Bench`], entries 0..=4): `null`, `sink_in`,
//! `sink_out`, `sink_inout`, `relay`. Raw entries after them:
//!
//! | name | does / returns |
//! |------|----------------|
//! | `loop_call(scalar0 = slot, scalar1 = n, scalar2 = size, scalar3 = mode)` | one heap buffer of `size` bytes (≤ [`MAX_SIZE`], filled with a pattern), then n `call(slot, [], [object])`; mode 0 no object, 1 IN, 2 OUT, 3 INOUT |
//! | `loop_relay(scalar0 = slot, scalar1 = n, scalar2 = depth)` | n `call(slot, [depth - 1], [])`: slot is a `relay` in the next domain, so each call is a chain of `depth` hops |
//! | `loop_rr(scalar0 = n, scalar1 = k)` | n calls, call i on slot `i % k` (each slot a `null` in another domain) |
//! | `loop_floor(scalar0 = n)` | `measure_floor(n)`: n `Nop`s, samples with `FLOOR_SLOT`; `Ok([n, 0])` (n capped at `u32::MAX`) |
//! | `loop_fn(scalar0 = n)` | n plain in-guest calls of an `#[inline(never)]` function, each timed with `rdtsc` and recorded with `FUNCTION_SLOT`; `Ok([n, 0])` |
//! | `loop_lend(scalar0 = slot, scalar1 = n, scalar2 = size, scalar3 = mode, scalar4 = copy)` | as `loop_call`, but the object is a page-aligned heap buffer (`size` ≤ [`MAX_LEND_SIZE`], rounded up to whole pages) passed with `Arg::lend`: whole pages are lent (mapped into the callee), not copied; mode 1 IN (`sink_in`), 2 OUT (`sink_out`), 3 INOUT (`sink_inout`); with `copy` = 1 the same object is passed without `lend` (copied), for a comparison on the same buffer |
//! | `loop_stack(scalar0 = slot, scalar1 = n, scalar2 = size, scalar3 = mode)` | as `loop_call`, but the object is an array of `size` bytes (one of [`STACK_SIZES`]) on this entry's own stack: in a `mapped` domain it lies in the thread's window stack, so a `mapped` callee gets it in place; mode 1 IN, 2 OUT, 3 INOUT |
//! | `loop_stub(scalar0 = slot, scalar1 = n, scalar2 = size, scalar3 = typed)` | n calls of `callee`'s `null` (size 0) or `sink_inout` (one INOUT object of `size` bytes), through the raw API on `slot` (typed = 0) or through a [`bench_api::BenchClient`] bound to the domain named `callee` (typed = 1); each call's own guest cycles — the time around it minus the `Call` hypercall itself — recorded with `GUEST_SIDE_SLOT` |
//!
//! The `loop_*` calling entries return `Ok([calls that succeeded, raw
//! status word of the first failure or 0])`: a failed call is counted, not
//! fatal. `ferry_guest::call` (and the typed stub's transport) records one
//! sample (slot, cycles) per call in the ring the VMM reads after the run.
//!
//! Application status codes of the raw entries: 2 bad argument
//! (`loop_call`: mode > 3 or size > [`MAX_SIZE`]; `loop_stack`: mode not
//! 1..=3 or a size not in [`STACK_SIZES`]; `loop_lend`: mode not
//! 1..=3, size 0 or > [`MAX_LEND_SIZE`]; `loop_rr`: k = 0;
//! `loop_stub`: typed > 1, size > [`MAX_SIZE`] or no `callee` granted);
//! 3 a loop could not allocate its buffer (caller heap too small).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use bench_api::{Bench, BenchClient, BenchError};
use core::hint::black_box;
use ferry_guest::interface::Error;
use ferry_guest::shared_abi::{FUNCTION_SLOT, GUEST_SIDE_SLOT};
use ferry_guest::{
    call, last_call_cycles, measure_floor, rdtsc, record_sample, Arg, Call, CallError, PageBuf, Vmm,
};

/// Largest `loop_call` object: 16 MiB plus 64 KiB (`ferry bench --stacks`
/// copies objects up to 16 MiB; the caller's memory must hold it).
pub const MAX_SIZE: u64 = (16 << 20) + (64 << 10);

/// The object sizes `loop_stack` can put on its own stack: those of
/// `ferry bench --stacks` (each one a copy of the loop, sized at compile time).
pub const STACK_SIZES: [u64; 10] = [
    8,
    64,
    512,
    4 << 10,
    32 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];

/// Largest `loop_lend` object: 16 MiB (the caller's memory must hold it).
pub const MAX_LEND_SIZE: u64 = 16 << 20;

/// A scalar argument is out of range.
const BAD_ARG: u32 = 2;
/// The heap could not hold `loop_call`'s buffer.
const NO_MEMORY: u32 = 3;

/// The callees: they touch nothing, so a figure is the call's own cost.
struct Callee;

impl Bench for Callee {
    fn null(&self) {}

    fn sink_in(&self, data: &[u8]) -> u64 {
        data.len() as u64
    }

    fn sink_out(&self, data: &mut [u8]) -> u64 {
        data.len() as u64
    }

    fn sink_inout(&self, data: &mut [u8]) -> u64 {
        data.len() as u64
    }

    fn relay(&self, depth: u64) -> Result<u64, BenchError> {
        if depth > 0 {
            // The chain is wired by slot (each relay domain's only
            // capability): the bench measures the raw path here.
            call(0, &[depth - 1], &mut []).map_err(|_| BenchError::RelayFailed)?;
        }
        Ok(depth)
    }
}

static CALLEE: Callee = Callee;

/// Successes and the first failure of a call loop.
#[derive(Default)]
struct Tally {
    ok: u64,
    first_err: u64,
}

impl Tally {
    fn add(&mut self, r: Result<[u64; 2], CallError>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(e) if self.first_err == 0 => self.first_err = e.code(),
            Err(_) => {}
        }
    }

    /// Count a typed call: any failure counts as the first error's word 1.
    fn add_typed<R, E>(&mut self, r: Result<R, Error<E>>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(_) if self.first_err == 0 => self.first_err = 1,
            Err(_) => {}
        }
    }

    fn result(&self) -> Result<[u64; 2], u32> {
        Ok([self.ok, self.first_err])
    }
}

/// A heap buffer of `size` bytes (≤ [`MAX_SIZE`]) filled with a pattern.
fn buffer(size: u64) -> Result<Vec<u8>, u32> {
    if size > MAX_SIZE {
        return Err(BAD_ARG);
    }
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(size as usize)
        .map_err(|_| NO_MEMORY)?;
    buf.extend((0..size as usize).map(|i| (i as u8) ^ 0x5A));
    Ok(buf)
}

fn loop_call(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, n, size, mode) = (c.scalar(0) as u32, c.scalar(1), c.scalar(2), c.scalar(3));
    if mode > 3 {
        return Err(BAD_ARG);
    }
    let mut buf = buffer(size)?;
    let mut t = Tally::default();
    for _ in 0..n {
        let r = match mode {
            0 => call(slot, &[], &mut []),
            1 => call(slot, &[], &mut [Arg::input(&buf[..])]),
            2 => call(slot, &[], &mut [Arg::output(&mut buf[..])]),
            _ => call(slot, &[], &mut [Arg::inout(&mut buf[..])]),
        };
        t.add(r);
    }
    t.result()
}

fn loop_lend(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, n, size, mode) = (c.scalar(0) as u32, c.scalar(1), c.scalar(2), c.scalar(3));
    let lend = c.scalar(4) == 0;
    if !(1..=3).contains(&mode) || size == 0 || size > MAX_LEND_SIZE {
        return Err(BAD_ARG);
    }
    let mut buf = PageBuf::new(size.div_ceil(4096) as usize).ok_or(NO_MEMORY)?;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8) ^ 0x5A;
    }
    let mut t = Tally::default();
    for _ in 0..n {
        let arg = match mode {
            1 => Arg::input(&buf[..]),
            2 => Arg::output(&mut buf[..]),
            _ => Arg::inout(&mut buf[..]),
        };
        let arg = if lend { arg.lend() } else { arg };
        t.add(call(slot, &[], &mut [arg]));
    }
    t.result()
}

/// `n` calls on `slot` with an `N`-byte array of this frame as the object
/// (mode 1 IN, 2 OUT, else INOUT). Never inlined: each size is a frame of
/// its own, so the small sizes do not pay for the large ones' stack.
#[inline(never)]
fn stack_loop<const N: usize>(slot: u32, n: u64, mode: u64) -> Tally {
    let mut buf = [0u8; N];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8) ^ 0x5A;
    }
    let mut t = Tally::default();
    for _ in 0..n {
        let r = match mode {
            1 => call(slot, &[], &mut [Arg::input(&buf[..])]),
            2 => call(slot, &[], &mut [Arg::output(&mut buf[..])]),
            _ => call(slot, &[], &mut [Arg::inout(&mut buf[..])]),
        };
        t.add(r);
    }
    black_box(&buf);
    t
}

fn loop_stack(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, n, size, mode) = (c.scalar(0) as u32, c.scalar(1), c.scalar(2), c.scalar(3));
    if !(1..=3).contains(&mode) || !STACK_SIZES.contains(&size) {
        return Err(BAD_ARG);
    }
    const K: usize = 1 << 10;
    const M: usize = 1 << 20;
    let t = match size as usize {
        8 => stack_loop::<8>(slot, n, mode),
        64 => stack_loop::<64>(slot, n, mode),
        512 => stack_loop::<512>(slot, n, mode),
        s if s == 4 * K => stack_loop::<{ 4 * K }>(slot, n, mode),
        s if s == 32 * K => stack_loop::<{ 32 * K }>(slot, n, mode),
        s if s == 64 * K => stack_loop::<{ 64 * K }>(slot, n, mode),
        s if s == 256 * K => stack_loop::<{ 256 * K }>(slot, n, mode),
        s if s == M => stack_loop::<M>(slot, n, mode),
        s if s == 4 * M => stack_loop::<{ 4 * M }>(slot, n, mode),
        s if s == 16 * M => stack_loop::<{ 16 * M }>(slot, n, mode),
        _ => return Err(BAD_ARG),
    };
    t.result()
}

fn loop_relay(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, n, depth) = (c.scalar(0) as u32, c.scalar(1), c.scalar(2));
    let mut t = Tally::default();
    for _ in 0..n {
        t.add(call(slot, &[depth.saturating_sub(1)], &mut []));
    }
    t.result()
}

fn loop_rr(c: &mut Call) -> Result<[u64; 2], u32> {
    let (n, k) = (c.scalar(0), c.scalar(1));
    if k == 0 {
        return Err(BAD_ARG);
    }
    let mut t = Tally::default();
    for i in 0..n {
        t.add(call((i % k) as u32, &[], &mut []));
    }
    t.result()
}

fn loop_floor(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = c.scalar(0).min(u32::MAX as u64);
    measure_floor(n as u32);
    Ok([n, 0])
}

/// The in-guest baseline: a real call the optimiser cannot inline or fold.
#[inline(never)]
fn plain_function(x: u64) -> u64 {
    black_box(black_box(x).wrapping_add(1))
}

fn loop_fn(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = c.scalar(0);
    for i in 0..n {
        let t0 = rdtsc();
        black_box(plain_function(black_box(i)));
        let t1 = rdtsc();
        record_sample(FUNCTION_SLOT, t1.wrapping_sub(t0));
    }
    Ok([n, 0])
}

/// Record one call's guest-side cycles: the time around it (`t0` to now)
/// minus the `Call` hypercall the call's transport timed.
#[inline(always)]
fn record_guest_side(t0: u64) {
    let total = rdtsc().wrapping_sub(t0);
    record_sample(GUEST_SIDE_SLOT, total.saturating_sub(last_call_cycles()));
}

fn loop_stub(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, n, size, typed) = (c.scalar(0) as u32, c.scalar(1), c.scalar(2), c.scalar(3));
    let mut buf = buffer(size)?;
    let mut t = Tally::default();
    match typed {
        0 => {
            for _ in 0..n {
                let t0 = rdtsc();
                let r = if size == 0 {
                    call(slot, &[], &mut [])
                } else {
                    call(slot, &[], &mut [Arg::inout(&mut buf[..])])
                };
                record_guest_side(t0);
                t.add(r);
            }
        }
        1 => {
            let callee = BenchClient::bind(Vmm, "callee").map_err(|_| BAD_ARG)?;
            for _ in 0..n {
                let t0 = rdtsc();
                if size == 0 {
                    let r = callee.null();
                    record_guest_side(t0);
                    t.add_typed(r);
                } else {
                    let r = callee.sink_inout(&mut buf);
                    record_guest_side(t0);
                    t.add_typed(r);
                }
            }
        }
        _ => return Err(BAD_ARG),
    }
    t.result()
}

ferry_guest::image! {
    serves: [bench_api::BenchServer(&CALLEE)],
    uses: [bench_api::BENCH_INTERFACE],
    raw: [
        "loop_call" => loop_call,
        "loop_relay" => loop_relay,
        "loop_rr" => loop_rr,
        "loop_floor" => loop_floor,
        "loop_fn" => loop_fn,
        "loop_stub" => loop_stub,
        "loop_lend" => loop_lend,
        "loop_stack" => loop_stack,
    ],
}
