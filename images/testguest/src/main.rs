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
//!
//! The `drive_*` entries run as a test's initial thread (in domain
//! "driver") and check what they observe themselves; each failure prints a
//! line and returns the application status documented on the entry.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;
use ferry_guest::shared_abi::{layout, ArgDesc, ArgMode, CallRequest, MAX_ARGS};
use ferry_guest::{call, call_raw, domain_id, hypercall_raw, println, Arg, Call, CallError};

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
/// well-formed request through `call_raw` (0, r0 = 120 = sum of 0..16).
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
        reserved: 0,
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
                reserved: 0,
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
        10 => req.args[0].reserved = 1,
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
}
