//! `testguest`: one image, many entries, for the VMM's integration tests.
//! The tests load it into several domains and wire capabilities in their
//! manifests; results come back in r0/r1 (or as an application status).
//!
//! Entries, in entry-index order (the table at the bottom is the truth):
//!
//! | # | name | does / returns |
//! |---|------|----------------|
//! | 0 | `null` | `Ok([0, 0])` |
//! | 1 | `echo` | `Ok([scalar0, scalar1])` |
//! | 2 | `whoami` | `Ok([caller_domain, thread_id])` |
//! | 3 | `sum_in(IN)` | `Ok([wrapping sum of its bytes, its length])`; 2 if no object |
//! | 4 | `fill_out(OUT)` | checks it arrived zero-filled (else 1), sets byte i = i ^ 0x5A, `Ok([len, 0])`; 2 if no writable object |
//! | 5 | `inc_inout(INOUT)` | adds 1 (wrapping) to every byte, `Ok([len, 0])`; 2 if no writable object |
//! | 6 | `fail_app` | writes 0xEE into every OUT/INOUT object, then `Err(scalar0)` (0 becomes `ferry_guest::BAD_ERROR_STATUS`) |
//! | 7 | `relay(INOUT u64)` | counter += 1; if scalar0 > 0 calls slot 0 with scalar0 - 1 and the counter INOUT (7 if that fails) and returns `Ok([counter, callee's r1])`; else `Ok([counter, depth])`; 2 if the object is not an 8-byte INOUT |
//! | 8 | `ud2` | `ud2` at label `ferry_site_ud2` (#UD, vector 6) |
//! | 9 | `div0` | `div ecx` with ECX = 0 at label `ferry_site_div0` (#DE, vector 0) |
//! | 10 | `wild_write` | 8-byte store to 0x0000_7fff_dead_0000 at label `ferry_site_wild` (#PF, vector 14) |
//! | 11 | `stack_overflow` | unbounded recursion, 4 KiB locals per frame (#PF in the guard page) |
//! | 12 | `panic` | `panic!("testguest deliberate panic")` |
//! | 13 | `sites` | `Ok([address of label scalar0: 0 ud2, 1 div0, 2 wild, 0])`; 1 for another scalar0 |
//! | 14 | `drive_basic` | see [`drive_basic`] |
//! | 15 | `drive_raw(scalar0 = case, scalar1 = guard address)` | see [`drive_raw`] |
//! | 16 | `drive_fault(scalar0 = which)` | see [`drive_fault`] |
//! | 17 | `drive_relay(scalar0 = depth)` | see [`drive_relay`] |
//! | 18 | `spin_forever` | spins forever (watchdog tests) |
//! | 19 | `forward` | calls slot 0 with its own 6 scalars, no objects; returns the callee's results; on failure status = the raw status word for a Ferry error (1..=255, `Fault` = 9), `0x8000 \| n` for the callee's application status `n` (so n ≥ 0x8000 is ambiguous), 0x7FFF for an undefined word |
//! | 20 | `rendezvous(scalar0 = n, scalar1 = timeout cycles)` | static `ARRIVED` += 1, spins until `ARRIVED >= n`: `Ok([ARRIVED seen, 0])`; 1 on timeout (rdtsc). `ARRIVED` counts every arrival since the domain's last (re)start |
//! | 21 | `hold_addr` | `Ok([address of the static u64 HOLD_RELEASE, 0])` |
//! | 22 | `hold(scalar0 = timeout cycles)` | spins until `HOLD_RELEASE != 0` (the host writes it): `Ok([1, 0])`; 1 on timeout |
//! | 23 | `bump` | static `COUNTER` (.bss, zeroed by a restart) += 1: `Ok([new counter, generation])` |
//! | 24 | `regs_check(scalar0 = depth)` | see [`regs_check`] |
//! | 25 | `spawner(scalar0 = n)` | `SPAWN_RELEASE` = 0; `spawn_named("spawned_child", i)` for i in 0..n; `SPAWN_RELEASE` = 1; `Ok([successes, first failure's raw status or 0])` |
//! | 26 | `spawned_child(scalar0 = arg)` | spins until `SPAWN_RELEASE == 1`: `Ok([arg, 0])`; 1 after ~30e9 cycles |
//! | 27 | `exit_now(scalar0 = code)` | `ferry_guest::exit(code)`: ends the thread from its bottom frame; from any other frame ends only this frame (the caller gets `CalleeExited`) |
//! | 28 | `call_limited(scalar0 = budget µs, scalar1 = wait µs)` | calls slot 0 with those `Limits`, no objects: `Ok([0 or the Ferry error code / 0x8000 \| app status, callee's r0])` (never an error itself) |
//! | 29 | `forward_note` | calls slot 0 like `forward` and keeps the raw status word in static `NOTED` (0 on success), then `Ok([NOTED, 0])` |
//! | 30 | `noted` | `Ok([NOTED, generation])` |
//! | 31 | `hold_forward(scalar0 = timeout cycles)` | spins until `HOLD_RELEASE != 0` (holding this frame's stack), then calls slot 0: `Ok([0 or the raw status word, 0])` |
//! | 32 | `xstate_fill(scalar0 = features, scalar1 = depth)` | see [`xstate_fill`] (hygiene) |
//! | 33 | `xstate_check(scalar0 = features, scalar1 = depth)` | see [`xstate_check`] (hygiene) |
//! | 34 | `respawn(scalar0 = n)` | if n > 0, spawns `respawn(n - 1)` (retrying while `QuotaExceeded`, up to ~30e9 cycles): `Ok([n, retries])`; status = the spawn's raw status word if it failed otherwise |
//! | 35 | `spawn_paced(scalar0 = gap cycles, scalar1 = attempts)` | spawns `null` every `gap` cycles until a spawn is refused after one was accepted, or `attempts` tries: `Ok([accepted, refused])` |
//! | 36 | `print_forged` | prints one line holding a forged VMM log line, ESC, CR and bidi controls: `Ok([0, 0])` |
//! | 37 | `print_flood(scalar0 = n)` | prints n lines: `Ok([n, 0])` |
//! | 38 | `unknown_flood(scalar0 = n)` | makes hypercall 0x7777 n times: `Ok([answers that were UnknownHypercall, 0])` |
//! | 39 | `probe(scalar0 = slot, scalar1 = pick, scalar2..=5 = the callee's scalars 0..=3)` | see [`probe`] |
//! | 40 | `deep(scalar0 = n)` | n = 0: `Ok([0, depth])`; else calls slot 0 with n - 1 and passes its results on; if that call fails, `Ok([raw status, depth])` |
//! | 41 | `spawn_raw(scalar0 = entry index, all 64 bits)` | the `Spawn` hypercall with `RDI` = scalar0: `Ok([raw status, RDI])` |
//! | 42 | `call_n(scalar0 = n)` | calls slot 0 (no scalars, no objects) n times: `Ok([successes, first failure's raw status or 0])` |
//! | 43 | `scribble_then_fault` | writes 0xEE into every OUT/INOUT object, then `ud2` |
//! | 44 | `drive_untouched` | see [`drive_untouched`] |
//! | 45 | `drive_exit(scalar0 = n, scalar1 = expected raw status)` | see [`drive_exit`] |
//! | 46 | `mirror(INOUT u64, scalar0 = stop)` | see [`mirror`] |
//! | 47 | `scribbler(scalar0 = timeout cycles)` | see [`scribbler`] |
//! | 48 | `drive_mirror(scalar0 = n)` | see [`drive_mirror`] |
//! | 49 | `hold_inout(INOUT u64, scalar0 = timeout cycles, scalar1 = value)` | spins until `HOLD_RELEASE != 0`, then writes `value` into its object: `Ok([value, 0])`; 1 on timeout, 2 if the object is not an 8-byte INOUT |
//! | 50 | `late_reply(scalar0 = wait µs, scalar1 = timeout cycles)` | see [`late_reply`] (a message-mode caller that stops waiting) |
//! | 51 | `probe_after(scalar0 = first slot, scalar1 = slot, scalar2 = pick, scalar3..=5 = the callee's scalars 0..=2)` | calls `first` (answer dropped), then as `probe`: see [`probe_after`] |
//!
//! The `drive_*` entries run as a test's initial thread (in domain
//! "driver") and check what they observe themselves; each failure prints a
//! line and returns the application status documented on the entry.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::arch::asm;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};
use ferry_guest::shared_abi::{layout, ArgDesc, ArgMode, CallRequest, ErrorCode, MAX_ARGS};
use ferry_guest::{
    call, call_raw, call_with, domain_id, exit, generation, hypercall_raw, println, rdtsc,
    spawn_named, Arg, Call, CallError, Limits,
};

// ---------------------------------------------------------------------------
// Callee entries.

fn null(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([0, 0])
}

fn echo(c: &mut Call) -> Result<[u64; 2], u32> {
    Ok([c.scalar(0), c.scalar(1)])
}

fn whoami(c: &mut Call) -> Result<[u64; 2], u32> {
    Ok([c.caller_domain() as u64, c.thread_id()])
}

/// Missing object (or the wrong mode for it).
const NO_OBJECT: u32 = 2;

fn sum_in(c: &mut Call) -> Result<[u64; 2], u32> {
    let a = c.arg(0).ok_or(NO_OBJECT)?;
    let sum = a.iter().fold(0u64, |s, &b| s.wrapping_add(b as u64));
    Ok([sum, a.len() as u64])
}

fn fill_out(c: &mut Call) -> Result<[u64; 2], u32> {
    let a = c.arg_mut(0).ok_or(NO_OBJECT)?;
    if a.iter().any(|&b| b != 0) {
        return Err(1);
    }
    for (i, b) in a.iter_mut().enumerate() {
        *b = (i as u8) ^ 0x5A;
    }
    Ok([a.len() as u64, 0])
}

fn inc_inout(c: &mut Call) -> Result<[u64; 2], u32> {
    let a = c.arg_mut(0).ok_or(NO_OBJECT)?;
    for b in a.iter_mut() {
        *b = b.wrapping_add(1);
    }
    Ok([a.len() as u64, 0])
}

fn fail_app(c: &mut Call) -> Result<[u64; 2], u32> {
    for i in 0..c.nargs() {
        if let Some(a) = c.arg_mut(i) {
            a.fill(0xEE);
        }
    }
    Err(c.scalar(0) as u32)
}

/// `relay`'s nested call failed.
const RELAY_FAILED: u32 = 7;

fn relay(c: &mut Call) -> Result<[u64; 2], u32> {
    let obj = c.arg_mut(0).ok_or(NO_OBJECT)?;
    let bytes: [u8; 8] = (&*obj).try_into().map_err(|_| NO_OBJECT)?;
    let mut counter = u64::from_le_bytes(bytes).wrapping_add(1);
    let r1 = if c.scalar(0) > 0 {
        let r = call(0, &[c.scalar(0) - 1], &mut [Arg::inout(&mut counter)]).map_err(|e| {
            println!("testguest relay: nested call failed: {e:?}");
            RELAY_FAILED
        })?;
        r[1]
    } else {
        c.depth() as u64
    };
    c.arg_mut(0)
        .ok_or(NO_OBJECT)?
        .copy_from_slice(&counter.to_le_bytes());
    Ok([counter, r1])
}

// The faulting instructions, each at a global label so the tests know its
// exact address. The functions never return (a fault ends the invocation).
core::arch::global_asm!(
    ".pushsection .text.ferry_fault_sites,\"ax\",@progbits",
    ".global ferry_fault_ud2",
    ".global ferry_site_ud2",
    ".type ferry_fault_ud2,@function",
    "ferry_fault_ud2:",
    "ferry_site_ud2:",
    "    ud2",
    ".global ferry_fault_div0",
    ".global ferry_site_div0",
    ".type ferry_fault_div0,@function",
    "ferry_fault_div0:",
    "    xor ecx, ecx",
    "    mov eax, 1",
    "    xor edx, edx",
    "ferry_site_div0:",
    "    div ecx",
    "    ud2",
    ".global ferry_fault_wild",
    ".global ferry_site_wild",
    ".type ferry_fault_wild,@function",
    "ferry_fault_wild:",
    "    movabs rax, 0x00007fffdead0000",
    "ferry_site_wild:",
    "    mov qword ptr [rax], rax",
    "    ud2",
    ".popsection",
);

extern "C" {
    fn ferry_fault_ud2() -> !;
    fn ferry_fault_div0() -> !;
    fn ferry_fault_wild() -> !;
    static ferry_site_ud2: u8;
    static ferry_site_div0: u8;
    static ferry_site_wild: u8;
}

fn ud2(_: &mut Call) -> Result<[u64; 2], u32> {
    // SAFETY: raises #UD; the VMM ends this invocation and never resumes it.
    unsafe { ferry_fault_ud2() }
}

fn div0(_: &mut Call) -> Result<[u64; 2], u32> {
    // SAFETY: raises #DE; touches only registers of a function that never returns.
    unsafe { ferry_fault_div0() }
}

fn wild_write(_: &mut Call) -> Result<[u64; 2], u32> {
    // SAFETY: the store targets an unmapped address, so it raises #PF
    // instead of writing anything.
    unsafe { ferry_fault_wild() }
}

/// Recurse with a 4 KiB frame until the stack's guard page stops us.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[depth as usize % 4096] = depth as u8;
    black_box(&mut frame);
    if depth == u64::MAX {
        return 0;
    }
    recurse(black_box(depth + 1)).wrapping_add(frame[depth as usize % 4096] as u64)
}

fn stack_overflow(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([recurse(0), 0])
}

fn panic(_: &mut Call) -> Result<[u64; 2], u32> {
    panic!("testguest deliberate panic")
}

/// Address of fault site `which` (0 ud2, 1 div0, 2 wild).
fn site(which: u64) -> Option<u64> {
    Some(match which {
        0 => &raw const ferry_site_ud2 as u64,
        1 => &raw const ferry_site_div0 as u64,
        2 => &raw const ferry_site_wild as u64,
        _ => return None,
    })
}

fn sites(c: &mut Call) -> Result<[u64; 2], u32> {
    Ok([site(c.scalar(0)).ok_or(1u32)?, 0])
}

// ---------------------------------------------------------------------------
// Driver entries.

/// Print a failed step and return it as the status.
fn failed(entry: &str, step: u32, what: &dyn core::fmt::Debug) -> u32 {
    println!("testguest {entry}: step {step} failed: {what:?}");
    step
}

/// Calls the callee domain's entries and checks every answer.
/// Capability slots: 0 `null`, 1 `echo`, 2 `sum_in`, 3 `fill_out`,
/// 4 `inc_inout`, 5 `whoami`, 6 `fail_app`.
///
/// Steps (the status names the first that failed):
/// 1 `null` → `[0, 0]`;
/// 2 `echo(11, 22)` → `[11, 22]`;
/// 3 `sum_in` of a stack `[u8; 100]` (byte i = i) → `[4950, 100]`;
/// 4 `fill_out` of a stack `[u8; 64]` (prefilled 0xAA) → `[64, _]` and byte i = i ^ 0x5A;
/// 5 `inc_inout` of a heap `Vec` of 300 bytes (byte i = i) → `[300, _]` and byte i = i + 1;
/// 6 `sum_in` of a zero-length object → `[0, 0]`;
/// 7 `whoami` → `[own domain_id, own thread_id]`;
/// 8 `fail_app(9)` with an OUT `[u8; 16]` of 0x11 → `App(9)` and the buffer unchanged.
///
/// Returns `Ok([8, 0])` (checks passed).
fn drive_basic(c: &mut Call) -> Result<[u64; 2], u32> {
    const E: &str = "drive_basic";
    let r = call(0, &[], &mut []).map_err(|e| failed(E, 1, &e))?;
    if r != [0, 0] {
        return Err(failed(E, 1, &r));
    }

    let r = call(1, &[11, 22], &mut []).map_err(|e| failed(E, 2, &e))?;
    if r != [11, 22] {
        return Err(failed(E, 2, &r));
    }

    let mut stack_in = [0u8; 100];
    for (i, b) in stack_in.iter_mut().enumerate() {
        *b = i as u8;
    }
    let r = call(2, &[], &mut [Arg::input(&stack_in)]).map_err(|e| failed(E, 3, &e))?;
    if r != [4950, 100] {
        return Err(failed(E, 3, &r));
    }

    let mut stack_out = [0xAAu8; 64];
    let r = call(3, &[], &mut [Arg::output(&mut stack_out)]).map_err(|e| failed(E, 4, &e))?;
    let pattern_ok = stack_out
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i as u8) ^ 0x5A);
    if r[0] != 64 || !pattern_ok {
        return Err(failed(E, 4, &(r, stack_out)));
    }

    let mut heap: Vec<u8> = (0..300).map(|i| i as u8).collect();
    let r = call(4, &[], &mut [Arg::inout(&mut heap[..])]).map_err(|e| failed(E, 5, &e))?;
    let inc_ok = heap
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i as u8).wrapping_add(1));
    if r[0] != 300 || !inc_ok {
        return Err(failed(E, 5, &r));
    }

    let empty: [u8; 0] = [];
    let r = call(2, &[], &mut [Arg::input(&empty)]).map_err(|e| failed(E, 6, &e))?;
    if r != [0, 0] {
        return Err(failed(E, 6, &r));
    }

    let r = call(5, &[], &mut []).map_err(|e| failed(E, 7, &e))?;
    if r != [domain_id() as u64, c.thread_id()] {
        return Err(failed(E, 7, &r));
    }

    let mut untouched = [0x11u8; 16];
    let r = call(6, &[9], &mut [Arg::output(&mut untouched)]);
    if r != Err(CallError::App(9)) || untouched != [0x11; 16] {
        return Err(failed(E, 8, &(r, untouched)));
    }

    Ok([8, 0])
}

/// Sends a deliberately malformed request (built from a valid `sum_in` call
/// on slot 0) and returns `Ok([raw status word, 0])` — for case 13,
/// `Ok([status, r0])`. Cases (scalar0) and the status the VMM should give:
///
/// 0 nargs = 17 (TooManyArgs) · 1 mode = 9 (BadMode) · 2 addr 0, len 16
/// (OutOfRange) · 3 addr `PAGE_TABLES_ADDR`, len 8 (OutOfRange) · 4 addr
/// `GDT_ADDR`, len 8 (OutOfRange) · 5 addr = scalar1 (a guard page the test
/// computes), len 16 (OutOfRange) · 6 addr `u64::MAX - 4`, len 16 (Overflow)
/// · 7 two OUT objects `[0, 64)` and `[32, 96)` of one 96-byte heap buffer
/// (OverlappingOutputs) · 8 a valid 200 KiB heap IN object (TooLarge when
/// the callee's stacks are small; the driver needs > 200 KiB of heap) ·
/// 9 slot 1000 (BadSlot) · 10 reserved = 1 (BadMode) · 11 request pointer
/// 0x10 (BadPointer) · 12 hypercall number 77 (UnknownHypercall) · 13 a
/// well-formed request through `call_raw` (0, r0 = 120 = sum of 0..16) ·
/// 14 `Hello` and 15 `Ready` after boot (BootOver).
///
/// Any other case: status 100.
fn drive_raw(c: &mut Call) -> Result<[u64; 2], u32> {
    let mut local = [0u8; 16];
    for (i, b) in local.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut req = CallRequest {
        slot: 0,
        nargs: 1,
        ..CallRequest::default()
    };
    req.args[0] = ArgDesc {
        addr: local.as_ptr() as u64,
        len: local.len() as u64,
        mode: ArgMode::In as u32,
        flags: 0,
    };
    // Kept alive until after the call.
    let mut heap: Vec<u8> = Vec::new();
    match c.scalar(0) {
        0 => req.nargs = MAX_ARGS as u32 + 1,
        1 => req.args[0].mode = 9,
        2 => req.args[0].addr = 0,
        3 => {
            req.args[0].addr = layout::PAGE_TABLES_ADDR;
            req.args[0].len = 8;
        }
        4 => {
            req.args[0].addr = layout::GDT_ADDR;
            req.args[0].len = 8;
        }
        5 => req.args[0].addr = c.scalar(1),
        6 => req.args[0].addr = u64::MAX - 4,
        7 => {
            heap = vec![0u8; 96];
            let base = heap.as_mut_ptr() as u64;
            req.nargs = 2;
            req.args[0] = ArgDesc {
                addr: base,
                len: 64,
                mode: ArgMode::Out as u32,
                flags: 0,
            };
            req.args[1] = ArgDesc {
                addr: base + 32,
                ..req.args[0]
            };
        }
        8 => {
            heap = vec![1u8; 200 * 1024];
            req.args[0].addr = heap.as_ptr() as u64;
            req.args[0].len = heap.len() as u64;
        }
        9 => req.slot = 1000,
        10 => req.args[0].flags = 2,
        11 => {
            // SAFETY: a wild request pointer; the VMM must refuse it
            // without touching guest memory.
            let (status, _) = unsafe { call_raw(0x10 as *const CallRequest) };
            return Ok([status, 0]);
        }
        12 => {
            // SAFETY: 77 is no hypercall; the VMM must refuse it.
            let (status, _) = unsafe { hypercall_raw(77, [0; 6]) };
            return Ok([status, 0]);
        }
        13 => {}
        14 | 15 => {
            let nr = if c.scalar(0) == 14 { 1 } else { 2 };
            // SAFETY: a boot hypercall after boot, with no pointer; the VMM
            // must answer `BootOver` and change nothing.
            let (status, _) = unsafe { hypercall_raw(nr, [0; 6]) };
            return Ok([status, 0]);
        }
        _ => return Err(100),
    }
    // SAFETY: the only writable objects (case 7) are in `heap`, which lives
    // until after the call; every other descriptor is IN or invalid.
    let (status, regs) = unsafe { call_raw(&req) };
    black_box(&mut heap);
    Ok([status, if c.scalar(0) == 13 { regs[0] } else { 0 }])
}

/// Calls a faulting entry in the callee domain and reports the fault.
/// Capability slots: 0 the fault entry (`ud2`, `div0`, `wild_write`,
/// `stack_overflow` or `panic`), 1 `sites` (needed for which = 0..=2).
///
/// scalar0 `which`: 0 ud2, 1 div0, 2 wild, 3 stack_overflow, 4 panic.
/// - which 0..=2: `Ok([vector, rip - label])` (r1 = 0 when the reported RIP
///   is exactly the labelled instruction; wrapping subtraction).
/// - which 3, 4: `Ok([raw status word, vector])`, vector 0 unless the status
///   is `Fault` (a panic is a `Fault` with vector `pseudo_vector::PANIC`).
///
/// Statuses: 1 the call succeeded; 2 `sites` failed; 3 which 0..=2 failed
/// with something other than a fault; 4 unknown `which`.
fn drive_fault(c: &mut Call) -> Result<[u64; 2], u32> {
    const E: &str = "drive_fault";
    let which = c.scalar(0);
    match which {
        0..=2 => {
            let label = call(1, &[which], &mut []).map_err(|e| failed(E, 2, &e))?[0];
            match call(0, &[], &mut []) {
                Err(CallError::Fault { vector, rip, .. }) => Ok([vector, rip.wrapping_sub(label)]),
                Ok(r) => Err(failed(E, 1, &r)),
                Err(e) => Err(failed(E, 3, &e)),
            }
        }
        3 | 4 => match call(0, &[], &mut []) {
            Err(e @ CallError::Fault { vector, .. }) => Ok([e.code(), vector]),
            Err(e) => Ok([e.code(), 0]),
            Ok(r) => Err(failed(E, 1, &r)),
        },
        _ => Err(4),
    }
}

/// Starts a relay chain: counter = 0, calls slot 0 (`relay` in the next
/// domain) with scalar0 - 1 (saturating) and the counter INOUT.
/// Returns `Ok([counter after the call, callee's r1])` — for a chain of
/// `depth` relays the counter is `depth` and r1 the deepest frame's depth.
/// Status 1 if the call failed.
fn drive_relay(c: &mut Call) -> Result<[u64; 2], u32> {
    let mut counter = 0u64;
    let r = call(
        0,
        &[c.scalar(0).saturating_sub(1)],
        &mut [Arg::inout(&mut counter)],
    )
    .map_err(|e| failed("drive_relay", 1, &e))?;
    Ok([counter, r[1]])
}

fn spin_forever(_: &mut Call) -> Result<[u64; 2], u32> {
    loop {
        core::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// Entries for concurrency, spawn, restart and register-state tests.

/// `forward`'s status for a callee application error `n`: `0x8000 | n`.
const FORWARD_APP_BIT: u32 = 0x8000;
/// `forward`'s status for a status word this ABI does not define.
const FORWARD_UNKNOWN: u32 = 0x7FFF;

fn forward(c: &mut Call) -> Result<[u64; 2], u32> {
    let scalars: [u64; 6] = core::array::from_fn(|i| c.scalar(i));
    call(0, &scalars, &mut []).map_err(|e| match e {
        CallError::App(n) => FORWARD_APP_BIT | n,
        e => match e.code() {
            code @ 1..=255 => code as u32,
            _ => FORWARD_UNKNOWN,
        },
    })
}

/// Threads that ever entered `rendezvous` in this domain (since its last
/// (re)start).
static ARRIVED: AtomicU64 = AtomicU64::new(0);

/// Spin until `done()` or `timeout` TSC cycles have passed; whether `done`.
fn spin_until(timeout: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = rdtsc();
    loop {
        if done() {
            return true;
        }
        if rdtsc().wrapping_sub(start) > timeout {
            return false;
        }
        core::hint::spin_loop();
    }
}

fn rendezvous(c: &mut Call) -> Result<[u64; 2], u32> {
    let (n, timeout) = (c.scalar(0), c.scalar(1));
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    let mut seen = 0;
    let met = spin_until(timeout, || {
        seen = ARRIVED.load(Ordering::SeqCst);
        seen >= n
    });
    if met {
        Ok([seen, 0])
    } else {
        Err(1)
    }
}

/// Written (non-zero) by the host test straight into guest memory to
/// release the threads spinning in `hold`.
static HOLD_RELEASE: AtomicU64 = AtomicU64::new(0);

fn hold_addr(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([HOLD_RELEASE.as_ptr() as u64, 0])
}

fn hold(c: &mut Call) -> Result<[u64; 2], u32> {
    if spin_until(c.scalar(0), || HOLD_RELEASE.load(Ordering::SeqCst) != 0) {
        Ok([1, 0])
    } else {
        Err(1)
    }
}

/// In `.bss`: a restart of the domain zeroes it.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn bump(_: &mut Call) -> Result<[u64; 2], u32> {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    Ok([n, generation()])
}

/// Register state `regs_check` loads, and later reads back, in one `asm!`
/// block. Offsets are used by that block: keep the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RegState {
    /// rbx, rbp, r12, r13, r14, r15 (offsets 0, 8, …, 40).
    gpr: [u64; 6],
    /// xmm6, low then high quadword (offset 48).
    xmm6: [u64; 2],
    /// xmm7 (offset 64).
    xmm7: [u64; 2],
    /// MXCSR (offset 80).
    mxcsr: u32,
    /// x87 control word (offset 84).
    fcw: u16,
    /// Padding (offset 86).
    pad: u16,
}

/// The distinctive state of nesting level `depth`: every register's value
/// depends on `depth`, so consecutive levels (A→B→A→…) never share one.
fn reg_patterns(depth: u64) -> RegState {
    let base = depth.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let p =
        |i: u64| base ^ i.wrapping_mul(0x0101_0101_0101_0101) ^ (i << 56) ^ 0xA5A5_0000_0000_5A5A;
    let rc = (depth % 3 + 1) as u32; // 1, 2, 3: never the default 0
    RegState {
        gpr: [p(1), p(2), p(3), p(4), p(5), p(6)],
        xmm6: [p(7), !p(7)],
        xmm7: [p(8), p(8).rotate_left(17)],
        // Exceptions masked, rounding control rc, flush-to-zero on odd depths.
        mxcsr: 0x1F80 | (rc << 13) | ((depth as u32 & 1) << 15),
        // All exceptions masked, 53-bit precision, rounding control rc.
        fcw: 0x027F | ((rc as u16) << 10),
        pad: 0,
    }
}

/// Proves that a suspended frame's whole register state survives a call
/// back into its own domain (A→B→A: the inner A frame runs on another vCPU
/// of A). In one `asm!` block (so the compiler cannot interfere) it loads
/// depth-dependent patterns ([`reg_patterns`]) into rbx, rbp, r12–r15,
/// xmm6, xmm7, MXCSR and the x87 control word; if scalar0 = depth > 0 it
/// makes the `Call` hypercall on slot 0 (the other domain's `regs_check`)
/// with scalar0 = depth - 1; then it reads everything back and restores
/// MXCSR and FCW to their defaults.
///
/// Returns `Ok([depth, 0])`. Statuses: the first register that changed —
/// 1 rbx, 2 r12, 3 r13, 4 r14, 5 r15, 6 xmm6, 7 xmm7, 8 MXCSR, 9 FCW,
/// 10 rbp; `0x100 | (raw status & 0xFF)` if the nested call failed (a
/// nested `regs_check` failure with status s arrives as `0x100 | s`, since
/// `APP_ERROR_BASE` has a zero low byte); 11 if it succeeded with
/// r0 ≠ depth - 1.
fn regs_check(c: &mut Call) -> Result<[u64; 2], u32> {
    let depth = c.scalar(0);
    let want = reg_patterns(depth);
    let mut got = RegState::default();
    let mut req = CallRequest::default();
    req.scalars[0] = depth.wrapping_sub(1);
    let status: u64;
    let r0: u64;
    // SAFETY: rbx and rbp (which Rust cannot name as operands) are saved on
    // the stack and restored; every other register written is declared as an
    // output. The block reads `want` and `req` and writes `got`, all live
    // locals; the Call hypercall (only when depth > 0) has no objects, so
    // the VMM writes no guest memory, and it changes only RAX, RDI, RSI,
    // RDX, R10 and (ABI 4: the callee's generation) R8 of this vCPU
    // (declared; `got` is addressed through R11, which no answer changes).
    // MXCSR and the x87 control word are set back to their defaults
    // (0x1F80, 0x037F) before the block ends.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "mov rbx, [rcx]",
            "mov rbp, [rcx + 8]",
            "mov r12, [rcx + 16]",
            "mov r13, [rcx + 24]",
            "mov r14, [rcx + 32]",
            "mov r15, [rcx + 40]",
            "movdqu xmm6, [rcx + 48]",
            "movdqu xmm7, [rcx + 64]",
            "ldmxcsr [rcx + 80]",
            "fldcw [rcx + 84]",
            "xor eax, eax",
            "test r9, r9",
            "jz 2f",
            "mov eax, 4",
            "out 0xE0, eax",
            "2:",
            "mov [r11], rbx",
            "mov [r11 + 8], rbp",
            "mov [r11 + 16], r12",
            "mov [r11 + 24], r13",
            "mov [r11 + 32], r14",
            "mov [r11 + 40], r15",
            "movdqu [r11 + 48], xmm6",
            "movdqu [r11 + 64], xmm7",
            "stmxcsr [r11 + 80]",
            "fnstcw [r11 + 84]",
            "pop rbp",
            "pop rbx",
            "push 0x1F80",
            "ldmxcsr [rsp]",
            "mov word ptr [rsp], 0x037F",
            "fldcw [rsp]",
            "add rsp, 8",
            in("rcx") &want as *const RegState,
            in("r11") &mut got as *mut RegState,
            in("r9") (depth > 0) as u64,
            inout("rdi") &req as *const CallRequest as u64 => r0,
            out("rax") status,
            out("rsi") _,
            out("rdx") _,
            out("r10") _,
            out("r8") _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            out("xmm6") _,
            out("xmm7") _,
        );
    }
    const GPR_CODES: [u32; 6] = [1, 10, 2, 3, 4, 5];
    for (i, code) in GPR_CODES.iter().enumerate() {
        if got.gpr[i] != want.gpr[i] {
            return Err(*code);
        }
    }
    let checks = [
        (got.xmm6 == want.xmm6, 6),
        (got.xmm7 == want.xmm7, 7),
        (got.mxcsr == want.mxcsr, 8),
        (got.fcw == want.fcw, 9),
    ];
    if let Some(&(_, code)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(code);
    }
    if depth > 0 {
        if status != 0 {
            return Err(0x100 | (status & 0xFF) as u32);
        }
        if r0 != depth - 1 {
            return Err(11);
        }
    }
    Ok([depth, 0])
}

/// 0 while `spawner` is still spawning; `spawned_child` waits for 1.
static SPAWN_RELEASE: AtomicU64 = AtomicU64::new(0);

/// How long `spawned_child` waits for its release (~10 s at 3 GHz).
const SPAWN_WAIT_CYCLES: u64 = 30_000_000_000;

fn spawner(c: &mut Call) -> Result<[u64; 2], u32> {
    SPAWN_RELEASE.store(0, Ordering::SeqCst);
    let (mut ok, mut first_err) = (0u64, 0u64);
    for i in 0..c.scalar(0) {
        match spawn_named("spawned_child", i) {
            Ok(_) => ok += 1,
            Err(e) if first_err == 0 => first_err = e.code(),
            Err(_) => {}
        }
    }
    SPAWN_RELEASE.store(1, Ordering::SeqCst);
    Ok([ok, first_err])
}

fn spawned_child(c: &mut Call) -> Result<[u64; 2], u32> {
    if spin_until(SPAWN_WAIT_CYCLES, || {
        SPAWN_RELEASE.load(Ordering::SeqCst) == 1
    }) {
        Ok([c.scalar(0), 0])
    } else {
        Err(1)
    }
}

fn exit_now(c: &mut Call) -> Result<[u64; 2], u32> {
    exit(c.scalar(0))
}

// ---------------------------------------------------------------------------
// Budgets and wait limits.

/// A call's outcome as one word: 0, the Ferry error code, or
/// `FORWARD_APP_BIT | n` for the callee's application status `n`.
fn status_word(r: &Result<[u64; 2], CallError>) -> u64 {
    match r {
        Ok(_) => 0,
        Err(CallError::App(n)) => u64::from(FORWARD_APP_BIT | n),
        Err(e) => e.code(),
    }
}

fn call_limited(c: &mut Call) -> Result<[u64; 2], u32> {
    let limits = Limits {
        budget_us: c.scalar(0),
        wait_us: c.scalar(1),
    };
    let answer = call_with(0, &[], &mut [], limits);
    let r0 = answer.result.map_or(0, |r| r[0]);
    Ok([status_word(&answer.result), r0])
}

/// The status word `forward_note`'s last call got.
static NOTED: AtomicU64 = AtomicU64::new(0);

fn forward_note(_: &mut Call) -> Result<[u64; 2], u32> {
    let word = status_word(&call(0, &[], &mut []));
    NOTED.store(word, Ordering::SeqCst);
    Ok([word, 0])
}

fn noted(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([NOTED.load(Ordering::SeqCst), generation()])
}

fn hold_forward(c: &mut Call) -> Result<[u64; 2], u32> {
    if !spin_until(c.scalar(0), || HOLD_RELEASE.load(Ordering::SeqCst) != 0) {
        return Err(1);
    }
    Ok([status_word(&call(0, &[], &mut [])), 0])
}

// ---------------------------------------------------------------------------
// hygiene: extended state across restarts, spawn reclamation, log hygiene.

/// `features` bit for the `xstate_*` entries: the host runs AVX. PVM's guest
/// CPUID hides it (yet it runs), so the host test reads its own CPU flags.
const FEAT_AVX: u64 = 1;
/// `features` bit: the host runs AVX-512F (zmm16–31, k0–k7, zmm upper halves).
const FEAT_AVX512: u64 = 2;

/// The high half of every 64-bit lane `xstate_fill` writes; `xstate_check`
/// looks for it (code of the next generation never produces it).
const XTAG: u64 = 0xFE44_7A11;
/// x87 control word `xstate_fill` leaves (round toward zero; default 0x037F).
const XFCW: u16 = 0x0C7F;
/// MXCSR `xstate_fill` leaves (FTZ, round toward zero; default 0x1F80).
const XMXCSR: u32 = 0xFF80;

/// Register images for the `xstate_*` asm: bytes 0..512 one 16- or 32-byte
/// slice per register 0–15, 512..1536 zmm16–31, 1536..1552 k0–k7.
#[repr(C, align(64))]
struct XBuf([u64; 196]);

impl XBuf {
    fn tagged() -> Self {
        let mut b = XBuf([0; 196]);
        for (i, lane) in b.0.iter_mut().enumerate() {
            *lane = (XTAG << 32) | i as u64;
        }
        // k0–k7: small non-zero masks.
        for (k, lane) in b.0[192..196].iter_mut().enumerate() {
            *lane = 0x5A01_5A02_5A03_5A04 + k as u64;
        }
        b
    }

    fn any_tagged(lanes: &[u64]) -> bool {
        lanes.iter().any(|&l| l >> 32 == XTAG)
    }
}

/// Upper halves of ymm0–15 from `src`.
///
/// # Safety
/// The CPU must run AVX; `src` must point at an [`XBuf`]. Changes only the
/// upper ymm halves, which this image's (non-AVX) code never uses.
#[target_feature(enable = "avx")]
#[inline(never)]
unsafe fn fill_ymm_upper(src: *const XBuf) {
    // SAFETY: reads 256 bytes of `src`; writes only ymm upper halves
    // (VEX.256 also clears zmm bits 511:256, refilled afterwards), which
    // compiled code of this image never uses, so no clobber is declared:
    // the values must survive until the fault.
    unsafe {
        asm!(
            "vinsertf128 ymm0, ymm0, xmmword ptr [{s} + 0], 1",
            "vinsertf128 ymm1, ymm1, xmmword ptr [{s} + 16], 1",
            "vinsertf128 ymm2, ymm2, xmmword ptr [{s} + 32], 1",
            "vinsertf128 ymm3, ymm3, xmmword ptr [{s} + 48], 1",
            "vinsertf128 ymm4, ymm4, xmmword ptr [{s} + 64], 1",
            "vinsertf128 ymm5, ymm5, xmmword ptr [{s} + 80], 1",
            "vinsertf128 ymm6, ymm6, xmmword ptr [{s} + 96], 1",
            "vinsertf128 ymm7, ymm7, xmmword ptr [{s} + 112], 1",
            "vinsertf128 ymm8, ymm8, xmmword ptr [{s} + 128], 1",
            "vinsertf128 ymm9, ymm9, xmmword ptr [{s} + 144], 1",
            "vinsertf128 ymm10, ymm10, xmmword ptr [{s} + 160], 1",
            "vinsertf128 ymm11, ymm11, xmmword ptr [{s} + 176], 1",
            "vinsertf128 ymm12, ymm12, xmmword ptr [{s} + 192], 1",
            "vinsertf128 ymm13, ymm13, xmmword ptr [{s} + 208], 1",
            "vinsertf128 ymm14, ymm14, xmmword ptr [{s} + 224], 1",
            "vinsertf128 ymm15, ymm15, xmmword ptr [{s} + 240], 1",
            s = in(reg) src,
            options(nostack, readonly),
        );
    }
}

/// Upper halves of zmm0–15, zmm16–31 and k0–k7 from `src`.
///
/// # Safety
/// The CPU must run AVX-512F; `src` must point at an [`XBuf`].
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn fill_zmm(src: *const XBuf) {
    // SAFETY: reads `src`; writes only state this image's (non-AVX) code
    // never uses (zmm upper halves, zmm16–31, k registers), deliberately
    // left undeclared so it survives until the fault.
    unsafe {
        asm!(
            "vinserti64x4 zmm0, zmm0, ymmword ptr [{s} + 0], 1",
            "vinserti64x4 zmm1, zmm1, ymmword ptr [{s} + 32], 1",
            "vinserti64x4 zmm2, zmm2, ymmword ptr [{s} + 64], 1",
            "vinserti64x4 zmm3, zmm3, ymmword ptr [{s} + 96], 1",
            "vinserti64x4 zmm4, zmm4, ymmword ptr [{s} + 128], 1",
            "vinserti64x4 zmm5, zmm5, ymmword ptr [{s} + 160], 1",
            "vinserti64x4 zmm6, zmm6, ymmword ptr [{s} + 192], 1",
            "vinserti64x4 zmm7, zmm7, ymmword ptr [{s} + 224], 1",
            "vinserti64x4 zmm8, zmm8, ymmword ptr [{s} + 256], 1",
            "vinserti64x4 zmm9, zmm9, ymmword ptr [{s} + 288], 1",
            "vinserti64x4 zmm10, zmm10, ymmword ptr [{s} + 320], 1",
            "vinserti64x4 zmm11, zmm11, ymmword ptr [{s} + 352], 1",
            "vinserti64x4 zmm12, zmm12, ymmword ptr [{s} + 384], 1",
            "vinserti64x4 zmm13, zmm13, ymmword ptr [{s} + 416], 1",
            "vinserti64x4 zmm14, zmm14, ymmword ptr [{s} + 448], 1",
            "vinserti64x4 zmm15, zmm15, ymmword ptr [{s} + 480], 1",
            "vmovdqu64 zmm16, zmmword ptr [{s} + 512]",
            "vmovdqu64 zmm17, zmmword ptr [{s} + 576]",
            "vmovdqu64 zmm18, zmmword ptr [{s} + 640]",
            "vmovdqu64 zmm19, zmmword ptr [{s} + 704]",
            "vmovdqu64 zmm20, zmmword ptr [{s} + 768]",
            "vmovdqu64 zmm21, zmmword ptr [{s} + 832]",
            "vmovdqu64 zmm22, zmmword ptr [{s} + 896]",
            "vmovdqu64 zmm23, zmmword ptr [{s} + 960]",
            "vmovdqu64 zmm24, zmmword ptr [{s} + 1024]",
            "vmovdqu64 zmm25, zmmword ptr [{s} + 1088]",
            "vmovdqu64 zmm26, zmmword ptr [{s} + 1152]",
            "vmovdqu64 zmm27, zmmword ptr [{s} + 1216]",
            "vmovdqu64 zmm28, zmmword ptr [{s} + 1280]",
            "vmovdqu64 zmm29, zmmword ptr [{s} + 1344]",
            "vmovdqu64 zmm30, zmmword ptr [{s} + 1408]",
            "vmovdqu64 zmm31, zmmword ptr [{s} + 1472]",
            "kmovw k0, word ptr [{s} + 1536]",
            "kmovw k1, word ptr [{s} + 1538]",
            "kmovw k2, word ptr [{s} + 1540]",
            "kmovw k3, word ptr [{s} + 1542]",
            "kmovw k4, word ptr [{s} + 1544]",
            "kmovw k5, word ptr [{s} + 1546]",
            "kmovw k6, word ptr [{s} + 1548]",
            "kmovw k7, word ptr [{s} + 1550]",
            s = in(reg) src,
            options(nostack, readonly),
        );
    }
}

/// Leaves distinctive values in every register class the host runs and
/// then faults, so a test can see whether any survive the domain's restart.
/// scalar0 `features` ([`FEAT_AVX`], [`FEAT_AVX512`]), scalar1 `depth`:
/// fills the vector state; if depth > 0, calls slot 0 (this domain's own
/// `xstate_fill`) with depth - 1, so that several vCPUs of the domain hold
/// the values; at depth 0 also fills xmm0–15, pushes two values on the x87
/// stack, changes the x87 control word and MXCSR, and executes `ud2`.
/// Status (only if the nested call did not fault): `0x100 | status`.
fn xstate_fill(c: &mut Call) -> Result<[u64; 2], u32> {
    let (features, depth) = (c.scalar(0), c.scalar(1));
    let buf = XBuf::tagged();
    if features & FEAT_AVX != 0 {
        // SAFETY: the test sets FEAT_AVX only when the host runs AVX.
        unsafe { fill_ymm_upper(&buf) };
    }
    if features & FEAT_AVX512 != 0 {
        // SAFETY: the test sets FEAT_AVX512 only when the host runs AVX-512F.
        unsafe { fill_zmm(&buf) };
    }
    if depth > 0 {
        return match call(0, &[features, depth - 1], &mut []) {
            Ok(r) => Ok(r),
            Err(e) => Err(0x100 | (e.code() & 0xFF) as u32),
        };
    }
    let ctl = [u32::from(XFCW), XMXCSR];
    // SAFETY: loads xmm0–15, the x87 control word, two x87 values and
    // MXCSR, then raises #UD (`noreturn`): the invocation never continues,
    // so no register it changes is seen by compiled code again.
    unsafe {
        asm!(
            "movdqu xmm0, xmmword ptr [{s} + 0]",
            "movdqu xmm1, xmmword ptr [{s} + 16]",
            "movdqu xmm2, xmmword ptr [{s} + 32]",
            "movdqu xmm3, xmmword ptr [{s} + 48]",
            "movdqu xmm4, xmmword ptr [{s} + 64]",
            "movdqu xmm5, xmmword ptr [{s} + 80]",
            "movdqu xmm6, xmmword ptr [{s} + 96]",
            "movdqu xmm7, xmmword ptr [{s} + 112]",
            "movdqu xmm8, xmmword ptr [{s} + 128]",
            "movdqu xmm9, xmmword ptr [{s} + 144]",
            "movdqu xmm10, xmmword ptr [{s} + 160]",
            "movdqu xmm11, xmmword ptr [{s} + 176]",
            "movdqu xmm12, xmmword ptr [{s} + 192]",
            "movdqu xmm13, xmmword ptr [{s} + 208]",
            "movdqu xmm14, xmmword ptr [{s} + 224]",
            "movdqu xmm15, xmmword ptr [{s} + 240]",
            "fldcw word ptr [{c}]",
            "fld1",
            "fldpi",
            "ldmxcsr dword ptr [{c} + 4]",
            "ud2",
            s = in(reg) &buf,
            c = in(reg) &ctl,
            options(nostack, noreturn),
        );
    }
}

/// Upper halves of ymm0–15 into `dst`.
///
/// # Safety
/// The CPU must run AVX; `dst` must point at a writable [`XBuf`].
#[target_feature(enable = "avx")]
#[inline(never)]
unsafe fn read_ymm_upper(dst: *mut XBuf) {
    // SAFETY: writes 256 bytes of `dst`; reads registers only.
    unsafe {
        asm!(
            "vextractf128 xmmword ptr [{d} + 0], ymm0, 1",
            "vextractf128 xmmword ptr [{d} + 16], ymm1, 1",
            "vextractf128 xmmword ptr [{d} + 32], ymm2, 1",
            "vextractf128 xmmword ptr [{d} + 48], ymm3, 1",
            "vextractf128 xmmword ptr [{d} + 64], ymm4, 1",
            "vextractf128 xmmword ptr [{d} + 80], ymm5, 1",
            "vextractf128 xmmword ptr [{d} + 96], ymm6, 1",
            "vextractf128 xmmword ptr [{d} + 112], ymm7, 1",
            "vextractf128 xmmword ptr [{d} + 128], ymm8, 1",
            "vextractf128 xmmword ptr [{d} + 144], ymm9, 1",
            "vextractf128 xmmword ptr [{d} + 160], ymm10, 1",
            "vextractf128 xmmword ptr [{d} + 176], ymm11, 1",
            "vextractf128 xmmword ptr [{d} + 192], ymm12, 1",
            "vextractf128 xmmword ptr [{d} + 208], ymm13, 1",
            "vextractf128 xmmword ptr [{d} + 224], ymm14, 1",
            "vextractf128 xmmword ptr [{d} + 240], ymm15, 1",
            d = in(reg) dst,
            options(nostack),
        );
    }
}

/// Upper halves of zmm0–15, zmm16–31 and k0–k7 into `dst`.
///
/// # Safety
/// The CPU must run AVX-512F; `dst` must point at a writable [`XBuf`].
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn read_zmm(dst: *mut XBuf) {
    // SAFETY: writes `dst`; reads registers only.
    unsafe {
        asm!(
            "vextracti64x4 ymmword ptr [{d} + 0], zmm0, 1",
            "vextracti64x4 ymmword ptr [{d} + 32], zmm1, 1",
            "vextracti64x4 ymmword ptr [{d} + 64], zmm2, 1",
            "vextracti64x4 ymmword ptr [{d} + 96], zmm3, 1",
            "vextracti64x4 ymmword ptr [{d} + 128], zmm4, 1",
            "vextracti64x4 ymmword ptr [{d} + 160], zmm5, 1",
            "vextracti64x4 ymmword ptr [{d} + 192], zmm6, 1",
            "vextracti64x4 ymmword ptr [{d} + 224], zmm7, 1",
            "vextracti64x4 ymmword ptr [{d} + 256], zmm8, 1",
            "vextracti64x4 ymmword ptr [{d} + 288], zmm9, 1",
            "vextracti64x4 ymmword ptr [{d} + 320], zmm10, 1",
            "vextracti64x4 ymmword ptr [{d} + 352], zmm11, 1",
            "vextracti64x4 ymmword ptr [{d} + 384], zmm12, 1",
            "vextracti64x4 ymmword ptr [{d} + 416], zmm13, 1",
            "vextracti64x4 ymmword ptr [{d} + 448], zmm14, 1",
            "vextracti64x4 ymmword ptr [{d} + 480], zmm15, 1",
            "vmovdqu64 zmmword ptr [{d} + 512], zmm16",
            "vmovdqu64 zmmword ptr [{d} + 576], zmm17",
            "vmovdqu64 zmmword ptr [{d} + 640], zmm18",
            "vmovdqu64 zmmword ptr [{d} + 704], zmm19",
            "vmovdqu64 zmmword ptr [{d} + 768], zmm20",
            "vmovdqu64 zmmword ptr [{d} + 832], zmm21",
            "vmovdqu64 zmmword ptr [{d} + 896], zmm22",
            "vmovdqu64 zmmword ptr [{d} + 960], zmm23",
            "vmovdqu64 zmmword ptr [{d} + 1024], zmm24",
            "vmovdqu64 zmmword ptr [{d} + 1088], zmm25",
            "vmovdqu64 zmmword ptr [{d} + 1152], zmm26",
            "vmovdqu64 zmmword ptr [{d} + 1216], zmm27",
            "vmovdqu64 zmmword ptr [{d} + 1280], zmm28",
            "vmovdqu64 zmmword ptr [{d} + 1344], zmm29",
            "vmovdqu64 zmmword ptr [{d} + 1408], zmm30",
            "vmovdqu64 zmmword ptr [{d} + 1472], zmm31",
            "kmovw word ptr [{d} + 1536], k0",
            "kmovw word ptr [{d} + 1538], k1",
            "kmovw word ptr [{d} + 1540], k2",
            "kmovw word ptr [{d} + 1542], k3",
            "kmovw word ptr [{d} + 1544], k4",
            "kmovw word ptr [{d} + 1546], k5",
            "kmovw word ptr [{d} + 1548], k6",
            "kmovw word ptr [{d} + 1550], k7",
            d = in(reg) dst,
            options(nostack),
        );
    }
}

/// `fxsave64`'s 512-byte image (x87, MXCSR, xmm0–15).
#[repr(C, align(16))]
struct Fxsave([u8; 512]);

/// Reads the state `xstate_fill` leaves, first thing, and returns which
/// classes still hold its values (bits: 1 xmm, 2 ymm upper, 4 zmm0–15 upper,
/// 8 zmm16–31, 16 a non-zero k register, 32 a non-empty x87 stack, 64 x87
/// control word ≠ 0x037F, 128 MXCSR ≠ 0x1F80). scalar0 `features` as for
/// `xstate_fill`; if scalar1 `depth` > 0, also calls slot 1 (this domain's
/// own `xstate_check`) with depth - 1 (so another vCPU is checked) and ORs
/// its bits in. `Ok([bits, vCPUs checked])`; `0x100 | status` if the nested
/// call failed.
fn xstate_check(c: &mut Call) -> Result<[u64; 2], u32> {
    let (features, depth) = (c.scalar(0), c.scalar(1));
    let mut vec = XBuf([0; 196]);
    let mut fx = Fxsave([0; 512]);
    if features & FEAT_AVX512 != 0 {
        // SAFETY: the host runs AVX-512F; `vec` is a live local.
        unsafe { read_zmm(&mut vec) };
    }
    let mut ymm = XBuf([0; 196]);
    if features & FEAT_AVX != 0 {
        // SAFETY: the host runs AVX; `ymm` is a live local.
        unsafe { read_ymm_upper(&mut ymm) };
    }
    // SAFETY: `fxsave64` writes the 512 bytes of the 16-aligned `fx` and
    // changes no register.
    unsafe { asm!("fxsave64 [{}]", in(reg) fx.0.as_mut_ptr(), options(nostack)) };
    let word = |at: usize| u64::from_le_bytes(fx.0[at..at + 8].try_into().unwrap_or([0; 8]));
    let xmm: Vec<u64> = (0..32).map(|i| word(160 + 8 * i)).collect();
    let fcw = u16::from_le_bytes([fx.0[0], fx.0[1]]);
    let ftw = fx.0[4];
    let mxcsr = u32::from_le_bytes([fx.0[24], fx.0[25], fx.0[26], fx.0[27]]);
    let checks = [
        XBuf::any_tagged(&xmm),
        XBuf::any_tagged(&ymm.0[..32]),
        XBuf::any_tagged(&vec.0[..64]),
        XBuf::any_tagged(&vec.0[64..192]),
        vec.0[192..196].iter().any(|&k| k != 0),
        ftw != 0,
        fcw != 0x037F,
        mxcsr != 0x1F80,
    ];
    let mut bits = checks
        .iter()
        .enumerate()
        .fold(0u64, |b, (i, &hit)| b | (u64::from(hit) << i));
    let mut checked = 1;
    if depth > 0 {
        let r = call(1, &[features, depth - 1], &mut [])
            .map_err(|e| 0x100 | (e.code() & 0xFF) as u32)?;
        bits |= r[0];
        checked += r[1];
    }
    Ok([bits, checked])
}

/// How long `respawn` retries a spawn refused with `QuotaExceeded`.
const RESPAWN_RETRY_CYCLES: u64 = 30_000_000_000;

fn respawn(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = c.scalar(0);
    if n == 0 {
        return Ok([0, 0]);
    }
    let start = rdtsc();
    let mut retries = 0;
    loop {
        match spawn_named("respawn", n - 1) {
            Ok(_) => return Ok([n, retries]),
            Err(CallError::Ferry(ErrorCode::QuotaExceeded))
                if rdtsc().wrapping_sub(start) < RESPAWN_RETRY_CYCLES =>
            {
                retries += 1;
                core::hint::spin_loop();
            }
            Err(e) => return Err(e.code() as u32),
        }
    }
}

fn spawn_paced(c: &mut Call) -> Result<[u64; 2], u32> {
    let (gap, attempts) = (c.scalar(0), c.scalar(1));
    let (mut accepted, mut refused) = (0u64, 0u64);
    for _ in 0..attempts {
        match spawn_named("null", 0) {
            Ok(_) => accepted += 1,
            Err(_) if accepted > 0 => {
                refused += 1;
                break;
            }
            Err(_) => refused += 1,
        }
        let start = rdtsc();
        while rdtsc().wrapping_sub(start) < gap {
            core::hint::spin_loop();
        }
    }
    Ok([accepted, refused])
}

fn print_forged(_: &mut Call) -> Result<[u64; 2], u32> {
    println!(
        "innocent\ndomain `victim` restarted (generation 7)\r\x1b[2Kfake\u{202e}txt\u{2028}end\u{85}"
    );
    Ok([0, 0])
}

fn print_flood(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = c.scalar(0);
    for i in 0..n {
        println!("flood line {i}");
    }
    Ok([n, 0])
}

fn unknown_flood(c: &mut Call) -> Result<[u64; 2], u32> {
    let mut unknown = 0;
    for _ in 0..c.scalar(0) {
        // SAFETY: 0x7777 is no hypercall; the VMM refuses it and touches
        // no memory.
        let (status, _) = unsafe { hypercall_raw(0x7777, [0; 6]) };
        if status == ErrorCode::UnknownHypercall as u64 {
            unknown += 1;
        }
    }
    Ok([unknown, 0])
}

// ---------------------------------------------------------------------------
// chain: `Exit` below the bottom frame, private fault reports, generations,
// the observer's own copy, and the gaps in the suite.

/// Calls capability `scalar0` with the callee scalars `scalar2..=5` and no
/// objects, and returns what the `Call` answer's registers said, picked by
/// scalar1: 0 `Ok([raw status, generation (R8)])`; 1 `Ok([RDI, RSI])` of a
/// `Fault` (vector, RIP), else `[0, 0]`; 2 `Ok([RDX, R10])` of a `Fault`
/// (error code, CR2), else `[0, 0]`; 3 `Ok([vector, RIP | error code |
/// CR2])` of a `Fault` (0 in r1 when the report carries no register), else
/// `Ok([raw status, u64::MAX])`. Another pick: status 100.
fn probe(c: &mut Call) -> Result<[u64; 2], u32> {
    let scalars = [c.scalar(2), c.scalar(3), c.scalar(4), c.scalar(5)];
    probe_call(c.scalar(0), c.scalar(1), &scalars)
}

/// Calls capability `scalar0` (no scalars, no objects; its answer is
/// dropped), then does what [`probe`] does with capability `scalar1`, pick
/// `scalar2` and the callee scalars `scalar3..=5`: one thread makes both
/// calls, so the second sees what the first left (its own fault report of
/// an earlier generation, say).
fn probe_after(c: &mut Call) -> Result<[u64; 2], u32> {
    let first = u32::try_from(c.scalar(0)).unwrap_or(u32::MAX);
    let _ = call(first, &[], &mut []);
    let scalars = [c.scalar(3), c.scalar(4), c.scalar(5), 0];
    probe_call(c.scalar(1), c.scalar(2), &scalars)
}

/// [`probe`]'s call and pick.
fn probe_call(slot: u64, pick: u64, scalars: &[u64; 4]) -> Result<[u64; 2], u32> {
    let slot = u32::try_from(slot).unwrap_or(u32::MAX);
    let answer = call_with(slot, scalars, &mut [], Limits::default());
    let fault = match answer.result {
        Err(CallError::Fault {
            vector,
            rip,
            error_code,
            cr2,
        }) => Some([vector, rip, error_code, cr2]),
        _ => None,
    };
    let status = match answer.result {
        Ok(_) => 0,
        Err(e) => e.code(),
    };
    match (pick, fault) {
        (0, _) => Ok([status, answer.generation]),
        (1, Some([v, rip, _, _])) => Ok([v, rip]),
        (2, Some([_, _, err, cr2])) => Ok([err, cr2]),
        (1 | 2, None) => Ok([0, 0]),
        (3, Some([v, rip, err, cr2])) => Ok([v, rip | err | cr2]),
        (3, None) => Ok([status, u64::MAX]),
        _ => Err(100),
    }
}

fn deep(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = c.scalar(0);
    if n == 0 {
        return Ok([0, c.depth() as u64]);
    }
    match call(0, &[n - 1], &mut []) {
        Ok(r) => Ok(r),
        Err(e) => Ok([e.code(), c.depth() as u64]),
    }
}

fn spawn_raw(c: &mut Call) -> Result<[u64; 2], u32> {
    // SAFETY: `Spawn` takes no pointer; the VMM only reads the two numbers.
    let (status, regs) = unsafe { hypercall_raw(9, [c.scalar(0), 0, 0, 0, 0, 0]) };
    Ok([status, regs[0]])
}

fn call_n(c: &mut Call) -> Result<[u64; 2], u32> {
    let (mut ok, mut first_err) = (0u64, 0u64);
    for _ in 0..c.scalar(0) {
        match call(0, &[], &mut []) {
            Ok(_) => ok += 1,
            Err(e) if first_err == 0 => first_err = e.code(),
            Err(_) => {}
        }
    }
    Ok([ok, first_err])
}

fn scribble_then_fault(c: &mut Call) -> Result<[u64; 2], u32> {
    for i in 0..c.nargs() {
        if let Some(a) = c.arg_mut(i) {
            a.fill(0xEE);
        }
    }
    // SAFETY: raises #UD; the VMM ends this invocation and never resumes it.
    unsafe { ferry_fault_ud2() }
}

/// Calls slot 0 (an entry that writes its objects and faults) with an IN
/// `[u8; 32]`, an OUT `[u8; 64]` of 0x11 on the stack and an INOUT heap
/// `Vec` of 300 bytes (byte i = i), then counts the bytes of the OUT and
/// INOUT buffers that differ from before the call: `Ok([raw status,
/// changed bytes])`. Status 1 if the call succeeded.
fn drive_untouched(_: &mut Call) -> Result<[u64; 2], u32> {
    let input = [0x22u8; 32];
    let mut out = [0x11u8; 64];
    let mut heap: Vec<u8> = (0..300).map(|i| i as u8).collect();
    let r = call(
        0,
        &[],
        &mut [
            Arg::input(&input),
            Arg::output(&mut out),
            Arg::inout(&mut heap[..]),
        ],
    );
    let status = match r {
        Ok(r) => return Err(failed("drive_untouched", 1, &r)),
        Err(e) => e.code(),
    };
    let changed = out.iter().filter(|&&b| b != 0x11).count()
        + heap
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b != i as u8)
            .count();
    Ok([status, changed as u64])
}

/// Held by `drive_exit` across each call: a frame abandoned while holding
/// it would leave it held.
static EXIT_LOCK: AtomicU64 = AtomicU64::new(0);

/// n times: allocates 64 KiB on the heap, takes [`EXIT_LOCK`], calls slot 0
/// with scalar0 = 5 (an `exit_now`, directly or through `forward`), frees
/// the memory and releases the lock. A callee's `Exit` must end only the
/// callee's frame: this frame resumes every time, so the heap (16 MiB at
/// most) never runs out. `Ok([calls answered with raw status scalar1,
/// first other raw status or 0])`; status 2 if the lock was found held.
fn drive_exit(c: &mut Call) -> Result<[u64; 2], u32> {
    let (n, want) = (c.scalar(0), c.scalar(1));
    let (mut matched, mut other) = (0u64, 0u64);
    for i in 0..n {
        let held = vec![i as u8; 64 * 1024];
        if EXIT_LOCK.swap(1, Ordering::SeqCst) != 0 {
            return Err(2);
        }
        let status = match call(0, &[5], &mut []) {
            Ok(_) => 0,
            Err(e) => e.code(),
        };
        if status == want {
            matched += 1;
        } else if other == 0 {
            other = status;
        }
        black_box(&held);
        drop(held);
        EXIT_LOCK.store(0, Ordering::SeqCst);
    }
    Ok([matched, other])
}

/// Where [`scribbler`] writes (0: nowhere), published by [`mirror`].
static SCRIBBLE_AT: AtomicU64 = AtomicU64::new(0);
/// Set by [`mirror`] with scalar0 ≠ 0: the scribbler stops.
static SCRIBBLE_STOP: AtomicU64 = AtomicU64::new(0);
/// What [`scribbler`]'s values carry in their top 16 bits.
const SCRIBBLE_TAG: u64 = 0xBAD0 << 48;

/// A callee that lets another of its domain's threads rewrite its INOUT
/// `u64` object, as a hostile guest with two vCPUs would. scalar0 = 0:
/// publishes the object's address in [`SCRIBBLE_AT`] and waits until the
/// [`scribbler`] has written it, then returns `Ok([0, 0])` (status 1 after
/// ~10 s). scalar0 ≠ 0: stops the scribbler, `Ok([0, 0])`. Status 2 if the
/// object is not an 8-byte INOUT.
fn mirror(c: &mut Call) -> Result<[u64; 2], u32> {
    if c.scalar(0) != 0 {
        SCRIBBLE_AT.store(0, Ordering::SeqCst);
        SCRIBBLE_STOP.store(1, Ordering::SeqCst);
        return Ok([0, 0]);
    }
    let obj = c.arg_mut(0).ok_or(NO_OBJECT)?;
    if obj.len() != 8 {
        return Err(NO_OBJECT);
    }
    let at = obj.as_mut_ptr() as u64;
    SCRIBBLE_AT.store(at, Ordering::SeqCst);
    let scribbled = spin_until(SPAWN_WAIT_CYCLES, || {
        // SAFETY: `at` is this frame's own 8-byte object; a volatile read,
        // since the scribbler writes it from another vCPU.
        let v = unsafe { core::ptr::read_volatile(at as *const u64) };
        v & (0xFFFF << 48) == SCRIBBLE_TAG
    });
    if scribbled {
        Ok([0, 0])
    } else {
        Err(1)
    }
}

/// Runs as a thread of its own in the callee domain: until
/// [`SCRIBBLE_STOP`], writes `SCRIBBLE_TAG | count` (count + 1 each time)
/// to the address in [`SCRIBBLE_AT`], when there is one. `Ok([writes,
/// 0])`; status 1 after scalar0 cycles.
fn scribbler(c: &mut Call) -> Result<[u64; 2], u32> {
    let mut count = 0u64;
    let stopped = spin_until(c.scalar(0), || {
        let at = SCRIBBLE_AT.load(Ordering::SeqCst);
        if at != 0 {
            // SAFETY: deliberately hostile: `at` is an object slot on a
            // stack of this domain that `mirror` published; the write stays
            // inside this domain's own memory.
            unsafe { core::ptr::write_volatile(at as *mut u64, SCRIBBLE_TAG | count) };
            count += 1;
        }
        SCRIBBLE_STOP.load(Ordering::SeqCst) != 0
    });
    if stopped {
        Ok([count, 0])
    } else {
        Err(1)
    }
}

/// Calls slot 0 (`mirror`) n times with an INOUT `u64` holding i (1..=n),
/// then once with scalar0 = 1 to stop the scribbler. `Ok([wrapping sum of
/// the values received back, n])`; status i if call i failed.
fn drive_mirror(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = c.scalar(0);
    let mut sum = 0u64;
    for i in 1..=n {
        let mut v = i;
        call(0, &[0], &mut [Arg::inout(&mut v)])
            .map_err(|e| failed("drive_mirror", i as u32, &e))?;
        sum = sum.wrapping_add(v);
    }
    let mut last = 0u64;
    call(0, &[1], &mut [Arg::inout(&mut last)])
        .map_err(|e| failed("drive_mirror", n as u32 + 1, &e))?;
    Ok([sum, n])
}

// ---------------------------------------------------------------------------
// Replies: a message-mode caller that stops waiting (issue 8).

/// `hold_inout(INOUT u64, scalar0 = timeout cycles, scalar1 = value)`:
/// spins until `HOLD_RELEASE != 0`, then writes `value` into its object:
/// `Ok([value, 0])`; 1 on timeout, 2 if the object is not an 8-byte INOUT.
fn hold_inout(c: &mut Call) -> Result<[u64; 2], u32> {
    if !spin_until(c.scalar(0), || HOLD_RELEASE.load(Ordering::SeqCst) != 0) {
        return Err(1);
    }
    let value = c.scalar(1);
    let obj = c.arg_mut(0).ok_or(NO_OBJECT)?;
    if obj.len() != 8 {
        return Err(NO_OBJECT);
    }
    obj.copy_from_slice(&value.to_le_bytes());
    Ok([value, 0])
}

/// The INOUT value `late_reply` sends with its first (abandoned) call.
const LATE_FIRST: u64 = 0x1111;
/// The INOUT value `late_reply` sends with its second call.
const LATE_SECOND: u64 = 0x2222;

/// Reads `v` as memory the VMM may have written behind the compiler's back.
fn volatile(v: &u64) -> u64 {
    // SAFETY: `v` is a valid, aligned, initialised u64 borrowed for the read.
    unsafe { core::ptr::read_volatile(v) }
}

/// `late_reply(scalar0 = wait µs, scalar1 = timeout cycles)`, slot 0 =
/// a message-mode `hold_inout`: calls it with an INOUT u64 = `LATE_FIRST`,
/// value 1 and `Limits { wait_us }`, which must answer `Timeout` (else 1)
/// with the object untouched (else 2); spins until this domain's
/// `HOLD_RELEASE != 0` (the host sets it once the held server has finished;
/// 3 on timeout); checks the object is still untouched (4: the late reply
/// was copied in); then calls again with an INOUT = `LATE_SECOND` and
/// value 2, which must answer its own result 2 with the object 2 (else 5:
/// e.g. the stale reply taken for this one). `Ok([first object, second
/// object])`.
fn late_reply(c: &mut Call) -> Result<[u64; 2], u32> {
    let (wait_us, timeout) = (c.scalar(0), c.scalar(1));
    let mut x = LATE_FIRST;
    let limits = Limits {
        budget_us: 0,
        wait_us,
    };
    let a = call_with(0, &[timeout, 1], &mut [Arg::inout(&mut x)], limits);
    if !matches!(a.result, Err(CallError::Ferry(ErrorCode::Timeout))) {
        println!("testguest late_reply: first call answered {:?}", a.result);
        return Err(1);
    }
    if volatile(&x) != LATE_FIRST {
        return Err(2);
    }
    if !spin_until(timeout, || HOLD_RELEASE.load(Ordering::SeqCst) != 0) {
        return Err(3);
    }
    if volatile(&x) != LATE_FIRST {
        println!("testguest late_reply: the late reply was copied in");
        return Err(4);
    }
    let mut y = LATE_SECOND;
    match call(0, &[timeout, 2], &mut [Arg::inout(&mut y)]) {
        Ok(r) if r[0] == 2 && volatile(&y) == 2 => Ok([volatile(&x), volatile(&y)]),
        other => {
            println!(
                "testguest late_reply: second call answered {other:?}, object {:#x}",
                volatile(&y)
            );
            Err(5)
        }
    }
}

ferry_guest::entries! {
    "null" => null,
    "echo" => echo,
    "whoami" => whoami,
    "sum_in" => sum_in,
    "fill_out" => fill_out,
    "inc_inout" => inc_inout,
    "fail_app" => fail_app,
    "relay" => relay,
    "ud2" => ud2,
    "div0" => div0,
    "wild_write" => wild_write,
    "stack_overflow" => stack_overflow,
    "panic" => panic,
    "sites" => sites,
    "drive_basic" => drive_basic,
    "drive_raw" => drive_raw,
    "drive_fault" => drive_fault,
    "drive_relay" => drive_relay,
    "spin_forever" => spin_forever,
    "forward" => forward,
    "rendezvous" => rendezvous,
    "hold_addr" => hold_addr,
    "hold" => hold,
    "bump" => bump,
    "regs_check" => regs_check,
    "spawner" => spawner,
    "spawned_child" => spawned_child,
    "exit_now" => exit_now,
    // budgets
    "call_limited" => call_limited,
    "forward_note" => forward_note,
    "noted" => noted,
    "hold_forward" => hold_forward,
    // hygiene
    "xstate_fill" => xstate_fill,
    "xstate_check" => xstate_check,
    "respawn" => respawn,
    "spawn_paced" => spawn_paced,
    "print_forged" => print_forged,
    "print_flood" => print_flood,
    "unknown_flood" => unknown_flood,
    // chain
    "probe" => probe,
    "deep" => deep,
    "spawn_raw" => spawn_raw,
    "call_n" => call_n,
    "scribble_then_fault" => scribble_then_fault,
    "drive_untouched" => drive_untouched,
    "drive_exit" => drive_exit,
    "mirror" => mirror,
    "scribbler" => scribbler,
    "drive_mirror" => drive_mirror,
    // replies
    "hold_inout" => hold_inout,
    "late_reply" => late_reply,
    // reports
    "probe_after" => probe_after,
}
