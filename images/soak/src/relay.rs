//! `soak-relay`: sits on the soak workload's call path (client → relay →
//! kv) and faults on request, so faults hit a real path while kv's state —
//! and the VMM's model of it — stays exact.
//!
//! Entries (scalar0 = mode: 0 forward, 1 `ud2` before forwarding, 2 `ud2`
//! after kv answered; any other mode forwards):
//! - `put(key IN, value IN)`, `get(key IN, value OUT)`, `delete(key IN)`:
//!   forwarded with the same objects to capability slots 0 `kv.put`,
//!   1 `kv.get`, 2 `kv.delete`; kv's results come back unchanged.
//!
//! Application status: kv's own status `n` is returned as `n`; a Ferry
//! error on the nested call (kv down, refused) as `0x100 | code`; 0x200 when
//! an object is missing.
#![no_std]
#![no_main]

extern crate alloc;

use ferry_guest::{call, Arg, Call, CallError};

/// Capability slots (manifest order).
const SLOT_PUT: u32 = 0;
const SLOT_GET: u32 = 1;
const SLOT_DELETE: u32 = 2;

/// Fault before forwarding.
const MODE_FAULT_BEFORE: u64 = 1;
/// Fault after kv answered.
const MODE_FAULT_AFTER: u64 = 2;
/// An object is missing or has the wrong mode.
const BAD_ARGS: u32 = 0x200;

/// Raise #UD (vector 6): the injected fault.
fn fault() -> ! {
    // SAFETY: `ud2` only raises #UD; the VMM turns it into a fault report.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

/// kv's answer as the relay's own.
fn relay_error(e: CallError) -> u32 {
    match e {
        CallError::App(n) => n,
        e => 0x100 | (e.code() & 0xFF) as u32,
    }
}

/// Forward `args` to `slot` under `mode`.
fn forward(mode: u64, slot: u32, args: &mut [Arg<'_>]) -> Result<[u64; 2], u32> {
    if mode == MODE_FAULT_BEFORE {
        fault();
    }
    let answer = call(slot, &[], args);
    if mode == MODE_FAULT_AFTER {
        fault();
    }
    answer.map_err(relay_error)
}

fn put(c: &mut Call) -> Result<[u64; 2], u32> {
    let mode = c.scalar(0);
    let key = c.arg(0).ok_or(BAD_ARGS)?;
    let value = c.arg(1).ok_or(BAD_ARGS)?;
    forward(mode, SLOT_PUT, &mut [Arg::input(key), Arg::input(value)])
}

fn get(c: &mut Call) -> Result<[u64; 2], u32> {
    let mode = c.scalar(0);
    let key = alloc::vec::Vec::from(c.arg(0).ok_or(BAD_ARGS)?);
    let out = c.arg_mut(1).ok_or(BAD_ARGS)?;
    forward(
        mode,
        SLOT_GET,
        &mut [Arg::input(&key[..]), Arg::output(out)],
    )
}

fn delete(c: &mut Call) -> Result<[u64; 2], u32> {
    let mode = c.scalar(0);
    let key = c.arg(0).ok_or(BAD_ARGS)?;
    forward(mode, SLOT_DELETE, &mut [Arg::input(key)])
}

ferry_guest::entries! {
    "put" => put,
    "get" => get,
    "delete" => delete,
}
