//! `stacker`: the guest of the stack-strategy tests (`tests/tests/vm/mapped.rs`).
//! The same image runs in `pool` and `mapped` domains; what differs is
//! where a callee's stack is and whether objects on the caller's stack
//! travel by copy or in place.
//!
//! Entries, in entry-index order (the table at the bottom is the truth):
//!
//! | # | name | does / returns |
//! |---|------|----------------|
//! | 0 | `null` | `Ok([0, 0])` |
//! | 1 | `where_sp` | `Ok([address of a local (≈ RSP), depth])` |
//! | 2 | `inc_inout(INOUT)` | adds 1 to every byte: `Ok([len, address the object had here])`; 2 if no writable object |
//! | 3 | `sum_in(IN)` | `Ok([wrapping byte sum, address the object had here])`; 2 if no object |
//! | 4 | `pass_stack(scalar0 = len ≤ 4096)` | a `len`-byte buffer on this stack (byte i = i), INOUT to slot 0 (`inc_inout`); checks every byte came back + 1: `Ok([callee's r1, buffer address])`; status 0x8000 \| raw word if the call failed, 3 if the bytes are wrong |
//! | 5 | `pass_heap(scalar0 = len)` | as `pass_stack` with a heap buffer |
//! | 6 | `peek(scalar0 = address)` | reads the u64 there (any address): `Ok([value, 0])` |
//! | 7 | `heap_secret(scalar0 = bytes)` | a heap buffer of `bytes` whose last u64 is [`SECRET`]; calls slot 0 (`peek`) with its address as a plain scalar: `Ok([0 or the raw status word, callee's r0])` |
//! | 8 | `victim(scalar0 = secret, scalar1 = stride, scalar2 = mode)` | keeps `[MARKER, secret]` on its stack, calls slot 0 (`hostile`) with `[address of secret, stride, mode]`, then checks the secret is unchanged: `Ok([0 or the raw status word, callee's r0])`; 5 if the secret changed |
//! | 9 | `hostile(scalar0 = address, scalar1 = stride, scalar2 = mode)` | mode 0: reads the u64 at `address`: `Ok([value, 0])`; mode 1: overwrites with [`SENTINEL`] every u64 that looks like a code address, from its own invocation frame up to the top of the window slot `address` lies in (`stride` = the window's slot stride), or up to `address + 512` if that is not in the window: `Ok([words overwritten, 0])` |
//! | 10 | `relay(scalar0 = n)` | counter = its u64 object (0 if none) + 1, kept on its stack and passed INOUT to slot 0 `relay(n - 1)` while n > 0, written back into its object: `Ok([counter, deepest depth])`; 0x8000 \| raw word if a call failed |
//! | 11 | `fault(scalar0 = kind, scalar1 = address)` | 0 `ud2`, 1 divide by zero, 2 store to 0x7fff_dead_0000, 3 stack overflow, 4 panic, 5 load from `address` |
//! | 12 | `spin` | spins forever (budgets) |
//! | 13 | `call_n(scalar0 = n, scalar1 = len ≤ 4096)` | n calls of slot 0 (`inc_inout`) with a `len`-byte stack buffer INOUT, checked each time: `Ok([successes, first failure's raw status or 0])` |
//! | 14 | `survive(scalar0 = tries)` | a 256-byte stack buffer (byte i = i); calls slot 0 (expected to fault), then slot 1 (`inc_inout`, the buffer INOUT) until it succeeds or `tries` runs out (retrying while `Restarting`): `Ok([first call's raw status, tries used])`; 3 if the buffer is not byte i = i + 1 afterwards, 4 if it never succeeded |
//! | 15 | `pass_both(scalar0 = len ≤ 4096)` | a stack buffer and a heap buffer (byte i = i each), both INOUT to slot 0 (`inc_both`): `Ok([callee's r0, callee's r1])`; 0x8000 \| raw word on failure, 3 if bytes are wrong |
//! | 16 | `inc_both(INOUT, INOUT)` | + 1 to every byte of both: `Ok([address of object 0 here, address of object 1 here])`; 2 if the objects are missing |
//! | 17 | `bad_rsp(scalar0 = RSP)` | the `Call` hypercall on slot 0 (no objects) with RSP = scalar0 during the `out` (0: its real RSP): `Ok([raw status word, 0])` |
//! | 18 | `forward(scalar0..=5)` | calls slot 0 with its own six scalars, no objects: `Ok([0 or the raw status word, callee's r0])`; a `Fault` answer's vector replaces r0 |
//! | 19 | `call_many(scalar0 = n, scalar1 = len ≤ 65536)` | n calls of slot 0 with a `len`-byte stack buffer INOUT (a measurement loop; results unchecked): `Ok([successes, first failure's raw status or 0])` |
//! | 20 | `nops(scalar0 = n)` | n `Nop` hypercalls (the floor of a measurement): `Ok([n, 0])` |
//! | 21 | `raw_desc(scalar0 = address, scalar1 = len)` | calls slot 0 with one INOUT descriptor naming exactly that range (whatever it is): `Ok([0 or the raw status word, callee's r1])` |
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use core::arch::asm;
use core::hint::black_box;
use ferry_guest::shared_abi::{layout, CallRequest, ErrorCode, Hypercall};
use ferry_guest::{call, println, Arg, Call, CallError};

/// The value `heap_secret` hides at the end of its heap buffer.
pub const SECRET: u64 = 0x5ec7_e7ab_c0de_0001;
/// What `victim` puts just below its secret, so a reader can find it.
pub const MARKER: u64 = 0x3a7c_4e11_f00d_beef;
/// What `hostile` writes over code addresses: a canonical user address
/// that no domain maps, so a return there is a #PF with RIP = it.
pub const SENTINEL: u64 = 0x0000_7fff_dead_0000;

/// The object is missing or has the wrong mode.
const NO_OBJECT: u32 = 2;
/// The bytes that came back are wrong.
const BAD_BYTES: u32 = 3;

fn raw(e: &CallError) -> u32 {
    0x8000 | (e.code() as u32 & 0x7fff)
}

/// Read the u64 at any address (a fault if it is not mapped).
fn load(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: reads 8 bytes at an address the test chose; an unmapped
    // address faults, which is what the tests look for. No Rust object
    // is aliased mutably by a read.
    unsafe {
        asm!("mov {v}, qword ptr [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
    };
    v
}

/// Write the u64 at any address (a hostile callee's store).
fn store(addr: u64, v: u64) {
    // SAFETY: writes 8 bytes where the hostile test entry chose to: into
    // another frame's memory, which is exactly the behaviour under test.
    unsafe { asm!("mov qword ptr [{a}], {v}", a = in(reg) addr, v = in(reg) v, options(nostack)) };
}

fn null(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([0, 0])
}

fn where_sp(c: &mut Call) -> Result<[u64; 2], u32> {
    let here = 0u64;
    Ok([black_box(&here) as *const u64 as u64, c.depth() as u64])
}

fn inc_inout(c: &mut Call) -> Result<[u64; 2], u32> {
    let addr = c.invocation().args[0].addr;
    let a = c.arg_mut(0).ok_or(NO_OBJECT)?;
    for b in a.iter_mut() {
        *b = b.wrapping_add(1);
    }
    Ok([a.len() as u64, addr])
}

fn sum_in(c: &mut Call) -> Result<[u64; 2], u32> {
    let addr = c.invocation().args[0].addr;
    let a = c.arg(0).ok_or(NO_OBJECT)?;
    Ok([a.iter().fold(0u64, |s, &b| s.wrapping_add(b as u64)), addr])
}

fn check_inc(buf: &[u8]) -> Result<(), u32> {
    for (i, &b) in buf.iter().enumerate() {
        if b != (i as u8).wrapping_add(1) {
            println!(
                "stacker: byte {i} is {b:#x}, not {:#x}",
                (i as u8).wrapping_add(1)
            );
            return Err(BAD_BYTES);
        }
    }
    Ok(())
}

fn fill(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = i as u8;
    }
}

fn pass_stack(c: &mut Call) -> Result<[u64; 2], u32> {
    let len = (c.scalar(0) as usize).min(4096);
    let mut buf = [0u8; 4096];
    let obj = &mut buf[..len];
    fill(obj);
    let addr = obj.as_ptr() as u64;
    let r = call(0, &[], &mut [Arg::inout(obj)]).map_err(|e| {
        println!("stacker pass_stack: {e:?}");
        raw(&e)
    })?;
    check_inc(black_box(&buf[..len]))?;
    Ok([r[1], addr])
}

fn pass_heap(c: &mut Call) -> Result<[u64; 2], u32> {
    let len = c.scalar(0) as usize;
    let mut buf = vec![0u8; len];
    fill(&mut buf);
    let addr = buf.as_ptr() as u64;
    let r = call(0, &[], &mut [Arg::inout(&mut buf[..])]).map_err(|e| {
        println!("stacker pass_heap: {e:?}");
        raw(&e)
    })?;
    check_inc(&buf)?;
    Ok([r[1], addr])
}

fn peek(c: &mut Call) -> Result<[u64; 2], u32> {
    Ok([load(c.scalar(0)), 0])
}

fn heap_secret(c: &mut Call) -> Result<[u64; 2], u32> {
    let words = (c.scalar(0) as usize / 8).max(1);
    let mut buf = vec![0u64; words];
    let last = words - 1;
    buf[last] = SECRET;
    let addr = &buf[last] as *const u64 as u64;
    let r = call(0, &[addr], &mut []);
    black_box(&buf);
    Ok(match r {
        Ok(r) => [0, r[0]],
        Err(e) => [e.code(), 0],
    })
}

fn victim(c: &mut Call) -> Result<[u64; 2], u32> {
    let secret = c.scalar(0);
    let frame = [MARKER, secret];
    let frame = black_box(&frame);
    let addr = &frame[1] as *const u64 as u64;
    let r = call(0, &[addr, c.scalar(1), c.scalar(2)], &mut []);
    if load(addr) != secret {
        println!("stacker victim: the secret was changed");
        return Err(5);
    }
    Ok(match r {
        Ok(r) => [0, r[0]],
        Err(e) => [e.code(), 0],
    })
}

/// Whether `v` looks like an address in this image's `.text` (the same
/// image is loaded at the same place in every domain).
fn code_address(v: u64) -> bool {
    let text_end = (&SENTINEL_PAGE as *const u8 as u64) & !(layout::PAGE_SIZE - 1);
    (layout::IMAGE_BASE..text_end).contains(&v)
}

/// A read-only object: `.rodata` follows `.text`, so its page bounds the
/// code addresses from above.
static SENTINEL_PAGE: u8 = 0;

fn hostile(c: &mut Call) -> Result<[u64; 2], u32> {
    let (addr, stride, mode) = (c.scalar(0), c.scalar(1), c.scalar(2));
    if mode == 0 {
        return Ok([load(addr), 0]);
    }
    // From just above this frame's invocation up to the top of the window
    // slot the caller's secret is in: the caller's frames, if they are
    // mapped here at all.
    let from = c.invocation() as *const _ as u64 + core::mem::size_of_val(c.invocation()) as u64;
    let from = (from + 7) & !7;
    let base = layout::STACK_WINDOW_BASE;
    let to = if addr >= base && stride > 0 {
        base + ((addr - base) / stride + 1) * stride
    } else {
        // Not on the window: whatever this domain has at that address.
        addr + 512
    };
    let mut n = 0;
    let mut at = from;
    while at < to {
        if code_address(load(at)) {
            store(at, SENTINEL);
            n += 1;
        }
        at += 8;
    }
    Ok([n, 0])
}

fn relay(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = c.scalar(0);
    let got = match c.arg(0) {
        Some(a) => u64::from_le_bytes(a.try_into().map_err(|_| NO_OBJECT)?),
        None => 0,
    };
    // A counter on this stack, handed down: in place to a mapped callee,
    // copied to a pool one; either way it comes back counted.
    let mut counter = got + 1;
    let mut deepest = c.depth() as u64;
    if n > 0 {
        let r = call(0, &[n - 1], &mut [Arg::inout(&mut counter)]).map_err(|e| {
            println!("stacker relay: {e:?}");
            raw(&e)
        })?;
        deepest = r[1];
    }
    let counter = black_box(counter);
    if let Some(a) = c.arg_mut(0) {
        a.copy_from_slice(&counter.to_le_bytes());
    }
    Ok([counter, deepest])
}

fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[depth as usize % 4096] = depth as u8;
    black_box(&mut frame);
    if depth == u64::MAX {
        return 0;
    }
    recurse(black_box(depth + 1)).wrapping_add(frame[depth as usize % 4096] as u64)
}

fn fault(c: &mut Call) -> Result<[u64; 2], u32> {
    match c.scalar(0) {
        // SAFETY: raises #UD; the VMM ends this invocation.
        0 => unsafe { asm!("ud2", options(nomem, nostack, noreturn)) },
        1 => {
            let zero = black_box(0u64);
            // SAFETY: divides by zero on purpose (#DE); never resumed.
            unsafe {
                asm!("xor edx, edx", "div {z}", z = in(reg) zero, inout("rax") 1u64 => _, out("rdx") _, options(nomem, nostack))
            };
            Ok([0, 0])
        }
        2 => {
            store(SENTINEL, 1);
            Ok([0, 0])
        }
        3 => Ok([recurse(0), 0]),
        4 => panic!("stacker deliberate panic"),
        _ => Ok([load(c.scalar(1)), 0]),
    }
}

fn spin(_: &mut Call) -> Result<[u64; 2], u32> {
    loop {
        core::hint::spin_loop();
    }
}

fn call_n(c: &mut Call) -> Result<[u64; 2], u32> {
    let (n, len) = (c.scalar(0), (c.scalar(1) as usize).min(4096));
    let mut buf = [0u8; 4096];
    let mut ok = 0;
    let mut first = 0;
    for _ in 0..n {
        fill(&mut buf[..len]);
        match call(0, &[], &mut [Arg::inout(&mut buf[..len])]) {
            Ok(_) if check_inc(black_box(&buf[..len])).is_ok() => ok += 1,
            Ok(_) => {
                if first == 0 {
                    first = u64::from(BAD_BYTES);
                }
            }
            Err(e) => {
                if first == 0 {
                    first = e.code();
                }
            }
        }
    }
    Ok([ok, first])
}

fn survive(c: &mut Call) -> Result<[u64; 2], u32> {
    let tries = c.scalar(0);
    let mut buf = [0u8; 256];
    fill(&mut buf);
    let first = match call(0, &[0], &mut []) {
        Ok(_) => 0,
        Err(e) => e.code(),
    };
    let mut used = 0;
    while used < tries {
        used += 1;
        match call(1, &[], &mut [Arg::inout(&mut buf[..])]) {
            Ok(_) => {
                check_inc(black_box(&buf))?;
                return Ok([first, used]);
            }
            Err(CallError::Ferry(ErrorCode::Restarting)) => {
                for _ in 0..100_000 {
                    core::hint::spin_loop();
                }
            }
            Err(e) => {
                println!("stacker survive: {e:?}");
                return Err(raw(&e));
            }
        }
    }
    Err(4)
}

fn pass_both(c: &mut Call) -> Result<[u64; 2], u32> {
    let len = (c.scalar(0) as usize).min(4096);
    let mut on_stack = [0u8; 4096];
    let mut on_heap = vec![0u8; len];
    fill(&mut on_stack[..len]);
    fill(&mut on_heap);
    let r = call(
        0,
        &[],
        &mut [
            Arg::inout(&mut on_stack[..len]),
            Arg::inout(&mut on_heap[..]),
        ],
    )
    .map_err(|e| {
        println!("stacker pass_both: {e:?}");
        raw(&e)
    })?;
    check_inc(black_box(&on_stack[..len]))?;
    check_inc(&on_heap)?;
    Ok(r)
}

fn inc_both(c: &mut Call) -> Result<[u64; 2], u32> {
    let a0 = c.invocation().args[0].addr;
    let a1 = c.invocation().args[1].addr;
    for i in 0..2 {
        for b in c.arg_mut(i).ok_or(NO_OBJECT)?.iter_mut() {
            *b = b.wrapping_add(1);
        }
    }
    Ok([a0, a1])
}

fn bad_rsp(c: &mut Call) -> Result<[u64; 2], u32> {
    let req = CallRequest::default();
    let rsp = c.scalar(0);
    let status: u64;
    if rsp == 0 {
        // SAFETY: the Call hypercall on a live local request with no
        // objects: the VMM only reads the request.
        unsafe {
            asm!(
                "out 0xE0, eax",
                inout("rax") Hypercall::Call as u64 => status,
                inout("rdi") &req as *const CallRequest as u64 => _,
                inout("rsi") 0u64 => _,
                inout("rdx") 0u64 => _,
                inout("r10") 0u64 => _,
                inout("r8") 0u64 => _,
            )
        };
    } else {
        // SAFETY: as above, with a claimed stack pointer the VMM must
        // check: RSP is swapped only around the `out` (which does not use
        // the stack) and restored from a register the asm owns.
        unsafe {
            asm!(
                "mov {save}, rsp",
                "mov rsp, {new}",
                "out 0xE0, eax",
                "mov rsp, {save}",
                save = out(reg) _,
                new = in(reg) rsp,
                inout("rax") Hypercall::Call as u64 => status,
                inout("rdi") &req as *const CallRequest as u64 => _,
                inout("rsi") 0u64 => _,
                inout("rdx") 0u64 => _,
                inout("r10") 0u64 => _,
                inout("r8") 0u64 => _,
            )
        };
    }
    black_box(&req);
    Ok([status, 0])
}

fn forward(c: &mut Call) -> Result<[u64; 2], u32> {
    let scalars: [u64; 6] = core::array::from_fn(|i| c.scalar(i));
    Ok(match call(0, &scalars, &mut []) {
        Ok(r) => [0, r[0]],
        Err(e @ CallError::Fault { vector, .. }) => [e.code(), vector],
        Err(e) => [e.code(), 0],
    })
}

fn call_many(c: &mut Call) -> Result<[u64; 2], u32> {
    let (n, len) = (c.scalar(0), (c.scalar(1) as usize).min(65536));
    let mut buf = [0u8; 65536];
    let mut ok = 0;
    let mut first = 0;
    for _ in 0..n {
        match call(0, &[], &mut [Arg::inout(&mut buf[..len])]) {
            Ok(_) => ok += 1,
            Err(e) if first == 0 => first = e.code(),
            Err(_) => {}
        }
    }
    black_box(&buf);
    Ok([ok, first])
}

fn nops(c: &mut Call) -> Result<[u64; 2], u32> {
    for _ in 0..c.scalar(0) {
        ferry_guest::nop();
    }
    Ok([c.scalar(0), 0])
}

fn raw_desc(c: &mut Call) -> Result<[u64; 2], u32> {
    let desc = ferry_guest::shared_abi::ArgDesc {
        addr: c.scalar(0),
        len: c.scalar(1),
        mode: ferry_guest::shared_abi::ArgMode::InOut as u32,
        flags: 0,
    };
    // SAFETY: the range is the test's choice; the VMM accepts only memory
    // this frame may name (then the callee writes it in place or the VMM
    // copies it back), and refuses anything else.
    let arg = unsafe { Arg::raw(desc) };
    Ok(match call(0, &[], &mut [arg]) {
        Ok(r) => [0, r[1]],
        Err(e) => [e.code(), 0],
    })
}

ferry_guest::entries! {
    "null" => null,
    "where_sp" => where_sp,
    "inc_inout" => inc_inout,
    "sum_in" => sum_in,
    "pass_stack" => pass_stack,
    "pass_heap" => pass_heap,
    "peek" => peek,
    "heap_secret" => heap_secret,
    "victim" => victim,
    "hostile" => hostile,
    "relay" => relay,
    "fault" => fault,
    "spin" => spin,
    "call_n" => call_n,
    "survive" => survive,
    "pass_both" => pass_both,
    "inc_both" => inc_both,
    "bad_rsp" => bad_rsp,
    "forward" => forward,
    "call_many" => call_many,
    "nops" => nops,
    "raw_desc" => raw_desc,
}
