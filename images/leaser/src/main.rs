//! `leaser`: lending objects instead of copying them (`ARG_LEND`).
//!
//! Caller entries:
//!
//! | name | does / returns |
//! |------|----------------|
//! | `drive(s0 = slot, s1 = len, s2 = mode, s3 = lend, s4 = offset, s5 = fill)` | a page-aligned buffer, the object `len` bytes at byte `offset` of it, filled with `pattern(i) = i ^ 0x5A`; one call on `slot` with it as IN (mode 1), OUT (2) or INOUT (3), lent if `lend` = 1; then checks what it must (below) and returns `[a, code | nonzero << 32]`: `a` the callee's `r1` (the object's address in the callee) on success, CR2 on a fault, 0 otherwise; `code` the call's raw status word (0 on success); `nonzero` the bytes of the object not zero after the call |
//!
//! | `drive_nested(s0 = slot, s1 = len, s2 = mode, s3 = relay mode, s4 = relay lend)` | `drive` of a lent object (offset 0, fill 0x33) on `slot`, a `relay`, which passes it on (slot 0) as `relay mode`, lent if `relay lend` = 1 |
//! | `drive_flags(s0 = slot, s1 = flags)` | one call on `slot` with a 2-page IN object whose descriptor's `flags` word is `flags` as given: `[0, raw status word]` |
//!
//! `drive`'s checks, each a distinct application status: 10 the callee saw
//! other bytes than the caller's (IN/INOUT sum), 11 an OUT object was not
//! all zero in the callee, 12 an OUT/INOUT object does not hold the
//! callee's bytes after success, 13 an IN object changed (after any
//! outcome), 2 a bad argument, 3 no heap for the buffer.
//!
//! Callee entries (object 0 as the argument; `r1` = its address here):
//!
//! | name | does / returns |
//! |------|----------------|
//! | `sum_in` | `[Σ bytes, addr]`; remembers `addr` |
//! | `fill_out(s0 = fill)` | counts non-zero bytes, then writes `i ^ fill`: `[non-zero, addr]`; remembers `addr` |
//! | `inc_inout` | `[Σ bytes, addr]`, then adds 1 to every byte; remembers `addr` |
//! | `write_in` | `[Σ bytes, addr]`, after a store into byte 8 of its IN object (a fault when lent: read-only) |
//! | `half_then_fault(s0 = fill)` | writes `i ^ fill` into the first half of its OUT object, then `ud2` |
//! | `hold_fault` | `ud2` while holding its object |
//! | `hold_spin` | spins forever while holding its object (budget tests) |
//! | `touch_last` | reads the byte at the address remembered last: `[byte, addr]` (a fault once the lease is gone) |
//! | `relay(s0 = slot, s1 = mode, s2 = lend)` | passes its object 0 on (same address and length) as `mode`, lent if `lend`, and returns the callee's results; a failed call is `Err(1000 + low 32 bits of the status word)` |
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use ferry_guest::shared_abi::{ArgDesc, ArgMode, ErrorCode};
use ferry_guest::{call, Arg, Call, CallError, PageBuf};

/// Bad argument.
const BAD_ARG: u32 = 2;
/// No heap for the buffer.
const NO_MEMORY: u32 = 3;

/// The address of the object the last `sum_in`/`fill_out`/`inc_inout` saw.
static LAST: AtomicU64 = AtomicU64::new(0);

fn pattern(i: usize) -> u8 {
    (i as u8) ^ 0x5A
}

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

fn drive(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, len, mode) = (c.scalar(0) as u32, c.scalar(1) as usize, c.scalar(2));
    let (lend, offset, fill) = (c.scalar(3) == 1, c.scalar(4) as usize, c.scalar(5) as u8);
    one_call(slot, len, mode, lend, offset, fill, &[u64::from(fill)])
}

fn drive_nested(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, len, mode) = (c.scalar(0) as u32, c.scalar(1) as usize, c.scalar(2));
    let (relay_mode, relay_lend, fill) = (c.scalar(3), c.scalar(4), 0x33);
    let relayed = [0, relay_mode, relay_lend, u64::from(fill)];
    one_call(slot, len, mode, true, 0, fill, &relayed)
}

fn drive_flags(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, flags) = (c.scalar(0) as u32, c.scalar(1) as u32);
    let buf = PageBuf::new(2).ok_or(NO_MEMORY)?;
    let desc = ArgDesc {
        addr: buf.as_ptr() as u64,
        len: buf.len() as u64,
        mode: ArgMode::In as u32,
        flags,
    };
    // SAFETY: an IN object of this frame's own buffer, live for the call;
    // the VMM never writes an IN object.
    let arg = unsafe { Arg::raw(desc) };
    let word = match call(slot, &[], &mut [arg]) {
        Ok(_) => 0,
        Err(e) => e.code(),
    };
    Ok([0, word])
}

/// `drive`'s call and checks, with `scalars` for the callee.
fn one_call(
    slot: u32,
    len: usize,
    mode: u64,
    lend: bool,
    offset: usize,
    fill: u8,
    scalars: &[u64],
) -> Result<[u64; 2], u32> {
    let pages = (offset + len).div_ceil(4096).max(1);
    let mut buf = PageBuf::new(pages).ok_or(NO_MEMORY)?;
    let obj = buf.get_mut(offset..offset + len).ok_or(BAD_ARG)?;
    for (i, b) in obj.iter_mut().enumerate() {
        *b = pattern(i);
    }
    let before = sum(obj);
    let arg = match mode {
        1 => Arg::input(&*obj),
        2 => Arg::output(&mut *obj),
        3 => Arg::inout(&mut *obj),
        _ => return Err(BAD_ARG),
    };
    let arg = if lend { arg.lend() } else { arg };
    let result = call(slot, scalars, &mut [arg]);
    if mode == 1 && obj.iter().enumerate().any(|(i, &b)| b != pattern(i)) {
        return Err(13);
    }
    let nonzero = obj.iter().filter(|&&b| b != 0).count() as u64;
    let (a, code) = match result {
        Ok([r0, r1]) => {
            match mode {
                1 | 3 if r0 != before => return Err(10),
                2 if r0 != 0 => return Err(11),
                2 if obj.iter().enumerate().any(|(i, &b)| b != (i as u8) ^ fill) => return Err(12),
                3 if obj
                    .iter()
                    .enumerate()
                    .any(|(i, &b)| b != pattern(i).wrapping_add(1)) =>
                {
                    return Err(12)
                }
                _ => {}
            }
            (r1, 0)
        }
        Err(CallError::Fault { cr2, .. }) => (cr2, ErrorCode::Fault as u64),
        Err(e) => (0, e.code()),
    };
    Ok([a, (code & 0xffff_ffff) | nonzero << 32])
}

/// Object 0's address in this domain (0 if there is none).
fn addr0(c: &Call) -> u64 {
    c.invocation().args[0].addr
}

fn sum_in(c: &mut Call) -> Result<[u64; 2], u32> {
    let addr = addr0(c);
    LAST.store(addr, Ordering::Relaxed);
    Ok([sum(c.arg(0).ok_or(BAD_ARG)?), addr])
}

fn fill_out(c: &mut Call) -> Result<[u64; 2], u32> {
    let (addr, fill) = (addr0(c), c.scalar(0) as u8);
    LAST.store(addr, Ordering::Relaxed);
    let out = c.arg_mut(0).ok_or(BAD_ARG)?;
    let nonzero = out.iter().filter(|&&b| b != 0).count() as u64;
    for (i, b) in out.iter_mut().enumerate() {
        *b = (i as u8) ^ fill;
    }
    Ok([nonzero, addr])
}

fn inc_inout(c: &mut Call) -> Result<[u64; 2], u32> {
    let addr = addr0(c);
    LAST.store(addr, Ordering::Relaxed);
    let io = c.arg_mut(0).ok_or(BAD_ARG)?;
    let before = sum(io);
    for b in io.iter_mut() {
        *b = b.wrapping_add(1);
    }
    Ok([before, addr])
}

fn write_in(c: &mut Call) -> Result<[u64; 2], u32> {
    let addr = addr0(c);
    let seen = sum(c.arg(0).ok_or(BAD_ARG)?);
    if c.arg(0).is_none_or(|a| a.len() < 9) {
        return Err(BAD_ARG);
    }
    // SAFETY: none: this entry exists to store into memory the VMM lent
    // read-only (it faults) or copied onto this stack (it does not).
    unsafe { core::ptr::write_volatile((addr + 8) as *mut u8, 0xEE) };
    Ok([seen, addr])
}

fn half_then_fault(c: &mut Call) -> Result<[u64; 2], u32> {
    let fill = c.scalar(0) as u8;
    let out = c.arg_mut(0).ok_or(BAD_ARG)?;
    let half = out.len() / 2;
    for (i, b) in out[..half].iter_mut().enumerate() {
        *b = (i as u8) ^ fill;
    }
    // SAFETY: `ud2` only raises #UD, the fault this entry exists for.
    unsafe { core::arch::asm!("ud2") };
    Ok([0, 0])
}

fn hold_fault(c: &mut Call) -> Result<[u64; 2], u32> {
    let _held = c.arg(0);
    // SAFETY: `ud2` only raises #UD, the fault this entry exists for.
    unsafe { core::arch::asm!("ud2") };
    Ok([0, 0])
}

fn hold_spin(c: &mut Call) -> Result<[u64; 2], u32> {
    let held = c.arg(0).map_or(0, |a| a.len());
    loop {
        core::hint::black_box(held);
    }
}

fn touch_last(_c: &mut Call) -> Result<[u64; 2], u32> {
    let addr = LAST.load(Ordering::Relaxed);
    if addr == 0 {
        return Err(BAD_ARG);
    }
    // SAFETY: none: this entry reads an address that was lent to this
    // domain during an earlier call, to show it faults now.
    let byte = unsafe { core::ptr::read_volatile(addr as *const u8) };
    Ok([u64::from(byte), addr])
}

fn relay(c: &mut Call) -> Result<[u64; 2], u32> {
    let (slot, mode, lend) = (c.scalar(0) as u32, c.scalar(1) as u32, c.scalar(2) == 1);
    let d = c.invocation().args[0];
    if ArgMode::from_u32(mode).is_none() || c.nargs() == 0 {
        return Err(BAD_ARG);
    }
    let desc = ArgDesc {
        addr: d.addr,
        len: d.len,
        mode,
        flags: 0,
    };
    // SAFETY: the descriptor names this invocation's own object 0, which
    // is this frame's for the duration of the call; the VMM decides
    // whether it may be written.
    let arg = unsafe { Arg::raw(desc) };
    let arg = if lend { arg.lend() } else { arg };
    call(slot, &[c.scalar(3)], &mut [arg]).map_err(|e| 1000 + (e.code() & 0xffff_ffff) as u32)
}

ferry_guest::entries! {
    "drive" => drive,
    "drive_nested" => drive_nested,
    "drive_flags" => drive_flags,
    "sum_in" => sum_in,
    "fill_out" => fill_out,
    "inc_inout" => inc_inout,
    "write_in" => write_in,
    "half_then_fault" => half_then_fault,
    "hold_fault" => hold_fault,
    "hold_spin" => hold_spin,
    "touch_last" => touch_last,
    "relay" => relay,
}
