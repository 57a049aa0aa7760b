//! `bench`: callees and call loops for Ferry's benchmarks. One image plays
//! every role; the VMM's bench manifests load it into several domains and
//! wire each caller domain's capability slots per run.
//!
//! Entries, in entry-index order (the table at the bottom is the truth):
//!
//! | # | name | does / returns |
//! |---|------|----------------|
//! | 0 | `null` | `Ok([0, 0])` |
//! | 1 | `sink(0 or 1 object, any mode)` | `Ok([object length or 0, 0])`; never touches the bytes |
//! | 2 | `relay(scalar0 = depth)` | if depth > 0 calls slot 0 with `[depth - 1]`, no objects (status 1 if that fails); `Ok([depth, 0])` |
//! | 3 | `loop_call(scalar0 = slot, scalar1 = n, scalar2 = size, scalar3 = mode)` | one heap buffer of `size` bytes (≤ [`MAX_SIZE`], filled with a pattern), then n `call(slot, [], [object])`; mode 0 no object, 1 IN, 2 OUT, 3 INOUT |
//! | 4 | `loop_relay(scalar0 = slot, scalar1 = n, scalar2 = depth)` | n `call(slot, [depth - 1], [])`: slot is a `relay` in the next domain, so each call is a chain of `depth` hops |
//! | 5 | `loop_rr(scalar0 = n, scalar1 = k)` | n calls, call i on slot `i % k` (each slot a `null` in another domain) |
//! | 6 | `loop_floor(scalar0 = n)` | `measure_floor(n)`: n `Nop`s, samples with `FLOOR_SLOT`; `Ok([n, 0])` (n capped at `u32::MAX`) |
//! | 7 | `loop_fn(scalar0 = n)` | n plain in-guest calls of an `#[inline(never)]` function, each timed with `rdtsc` and recorded with `FUNCTION_SLOT`; `Ok([n, 0])` |
//!
//! The `loop_*` calling entries (3, 4, 5) return `Ok([calls that succeeded,
//! raw status word of the first failure or 0])`: a failed call is counted,
//! not fatal. `ferry_guest::call` records one sample (slot, cycles) per call
//! in the ring the VMM reads after the run.
//!
//! Application status codes: 1 `relay`'s nested call failed; 2 bad
//! argument (`loop_call`: mode > 3 or size > [`MAX_SIZE`]; `loop_rr`: k = 0);
//! 3 `loop_call` could not allocate its buffer (caller heap too small).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::hint::black_box;
use ferry_guest::shared_abi::FUNCTION_SLOT;
use ferry_guest::{call, measure_floor, rdtsc, record_sample, Arg, Call, CallError};

/// Largest `loop_call` object: 1 MiB plus 64 KiB.
pub const MAX_SIZE: u64 = (1 << 20) + (64 << 10);

/// `relay`'s nested call failed.
const RELAY_FAILED: u32 = 1;
/// A scalar argument is out of range.
const BAD_ARG: u32 = 2;
/// The heap could not hold `loop_call`'s buffer.
const NO_MEMORY: u32 = 3;

fn null(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([0, 0])
}

fn sink(c: &mut Call) -> Result<[u64; 2], u32> {
    let len = c.invocation().args[..c.nargs()]
        .first()
        .map_or(0, |d| d.len);
    Ok([len, 0])
}

fn relay(c: &mut Call) -> Result<[u64; 2], u32> {
    let depth = c.scalar(0);
    if depth > 0 {
        call(0, &[depth - 1], &mut []).map_err(|_| RELAY_FAILED)?;
    }
    Ok([depth, 0])
}

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

    fn result(&self) -> Result<[u64; 2], u32> {
        Ok([self.ok, self.first_err])
    }
}

fn loop_call(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, n, size, mode) = (c.scalar(0) as u32, c.scalar(1), c.scalar(2), c.scalar(3));
    if mode > 3 || size > MAX_SIZE {
        return Err(BAD_ARG);
    }
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(size as usize)
        .map_err(|_| NO_MEMORY)?;
    buf.extend((0..size as usize).map(|i| (i as u8) ^ 0x5A));
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

ferry_guest::entries! {
    "null" => null,
    "sink" => sink,
    "relay" => relay,
    "loop_call" => loop_call,
    "loop_relay" => loop_relay,
    "loop_rr" => loop_rr,
    "loop_floor" => loop_floor,
    "loop_fn" => loop_fn,
}
