//! `fuzz-callee`: the domains the fuzzer calls.
//!
//! | # | entry | does |
//! |---|-------|------|
//! | 0 | `check` | verifies its objects against the caller's description (scalars: 0 salt, 1 digest of the IN/INOUT bytes, 2 `nargs \| fail << 32`, 3 caller domain, 4 packed modes, 5 lengths' digest) and that OUT objects arrived zero; XORs `transform(salt, i, j)` into every OUT/INOUT byte; returns `[digest of what arrived, digest of what it wrote]`, or `Err(fail)` when `fail ≠ 0` (after writing), or a `wire::bad` status when something arrived wrong |
//! | 1 | `hostile` | does `wire::act` scalar 0: returns any 64-bit status, exits, panics, prints, faults, spins, or stores into its IN object 0 (a fault when that object is a read-only lease) |
//! | 2 | `nest` | `nest(k, pattern)`: k = 0 → `[0, depth]`; else calls slot `bit (depth % 64) of pattern` (1: its own domain, 0: the other deep domain) with `k - 1`, passing its results on, or `[raw status, depth]` when that call is refused |
#![no_std]
#![no_main]

#[path = "raw.rs"]
mod raw;
#[path = "texts.rs"]
mod texts;
#[path = "wire.rs"]
#[allow(dead_code)]
mod wire;

use ferry_guest::shared_abi::{ArgMode, CallRequest, Hypercall};
use ferry_guest::{call, Call};
use wire::{act, bad, combine, digest, in_digest, lens_digest, packed_modes, transform};

fn check(c: &mut Call) -> Result<[u64; 2], u32> {
    let inv = *c.invocation();
    let n = c.nargs();
    let salt = c.scalar(0);
    let fail = u32::try_from(c.scalar(2) >> 32).unwrap_or(u32::MAX);
    let frame_ok = u64::from(inv.nargs) == c.scalar(2) & 0xffff_ffff
        && u64::from(inv.caller_domain) == c.scalar(3)
        && inv.depth == 1;
    let req = CallRequest {
        nargs: inv.nargs,
        args: inv.args,
        ..CallRequest::default()
    };
    if !frame_ok || packed_modes(&req) != c.scalar(4) || lens_digest(&req) != c.scalar(5) {
        return Err(bad::FRAME);
    }
    for (i, d) in inv.args.iter().take(n).enumerate() {
        let zeros = c.arg(i).is_some_and(|b| b.iter().all(|&x| x == 0));
        if d.mode == ArgMode::Out as u32 && !zeros {
            return Err(bad::NOT_ZERO);
        }
    }
    let got = in_digest(&req, |i| c.arg(i).unwrap_or(&[]));
    if got != c.scalar(1) {
        return Err(bad::DIGEST);
    }
    let mut wrote = wire::DIGEST_SEED;
    for i in 0..n {
        if let Some(obj) = c.arg_mut(i) {
            for (j, b) in obj.iter_mut().enumerate() {
                *b ^= transform(salt, i as u64, j as u64);
            }
            if !obj.is_empty() {
                wrote = combine(wrote, i as u64, digest(obj));
            }
        }
    }
    if fail != 0 {
        return Err(fail);
    }
    Ok([got, wrote])
}

/// A hypercall that never comes back (`Return`, `Exit`, `Panic`): asked
/// again should the VMM ever resume it.
fn final_hypercall(nr: Hypercall, a: u64, b: u64, c: u64) -> ! {
    loop {
        // SAFETY: Return/Exit/Panic only read the registers (and, for
        // Panic, at most 1 KiB of text the VMM checks against our region).
        unsafe { raw::hypercall([nr as u64, a, b, c, 0, 0, 0, 0, 0, 0]) };
    }
}

fn hostile(c: &mut Call) -> Result<[u64; 2], u32> {
    let (s1, s2) = (c.scalar(1), c.scalar(2));
    match c.scalar(0) {
        act::RETURN => final_hypercall(Hypercall::Return, s1, s2, c.scalar(3)),
        act::EXIT => final_hypercall(Hypercall::Exit, s1, 0, 0),
        act::PANIC => {
            let (addr, len) = texts::text(s1, s2);
            final_hypercall(Hypercall::Panic, addr, len, 0)
        }
        act::PRINT => {
            let (addr, len) = texts::text(s1, s2);
            // SAFETY: Print only reads, and only what its range check allows.
            unsafe { raw::hypercall([Hypercall::Print as u64, addr, len, 0, 0, 0, 0, 0, 0, 0]) };
            Ok([c.scalar(3), c.scalar(4)])
        }
        act::UD2 => loop {
            // SAFETY: raises #UD; the VMM ends this invocation.
            unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
        },
        act::WILD => {
            // SAFETY: the fuzzer names only addresses outside every data
            // region (system pages, guards, past memory, non-canonical):
            // the store faults instead of writing.
            unsafe { core::ptr::write_volatile(s1 as *mut u64, 0xdead) };
            Err(1)
        }
        act::SPIN => loop {
            core::hint::spin_loop();
        },
        act::WRITE_IN => {
            let inv = c.invocation();
            let d = inv.args[0];
            if inv.nargs == 0 || d.len == 0 {
                return Err(3);
            }
            let at = d.addr + s1 % d.len;
            // SAFETY: the VMM put object 0 at `addr..addr + len` of this
            // domain: a copy on this frame's stack (the store is harmless)
            // or a read-only lease (the store faults, which is the point).
            unsafe { core::ptr::write_volatile(at as *mut u8, 0x5a) };
            Ok([act::WROTE, 0])
        }
        _ => Err(2),
    }
}

fn nest(c: &mut Call) -> Result<[u64; 2], u32> {
    let (k, pattern) = (c.scalar(0), c.scalar(1));
    let depth = u64::from(c.depth());
    if k == 0 {
        return Ok([0, depth]);
    }
    let slot = u32::from((pattern >> (depth % 64)) & 1 == 1);
    match call(slot, &[k - 1, pattern], &mut []) {
        Ok(r) => Ok(r),
        Err(e) => Ok([e.code(), depth]),
    }
}

ferry_guest::entries! {
    "check" => check,
    "hostile" => hostile,
    "nest" => nest,
}
