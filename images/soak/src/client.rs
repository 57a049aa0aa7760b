//! `soak-client`: the soak's workload — random kv puts, gets and deletes,
//! some straight to kv and some through `soak-relay`, which faults on
//! request. The client judges nothing: the VMM keeps the model of kv (from
//! the bytes it copied) and checks every answer kv gives.
//!
//! Entry `work(scalar0 = seed, scalar1 = operations, scalar2 = thread index
//! t, scalar3 = relay faults one in N operations (0 never), scalar4 = kv
//! crashes one in N operations (0 never)) -> Ok([r0, r1])` with
//! `r0 = answered successfully | answered with an error << 32` and
//! `r1 = relay faults asked before forwarding | after forwarding << 21 |
//! kv crashes asked << 42` (21 bits each: keep batches under 2 million
//! operations).
//!
//! Keys are `s<t>-<i>` for i in 0..32, so threads with distinct indices
//! never touch each other's keys and each key's operations are ordered.
//! Values are 1..=200 random bytes.
//!
//! Capability slots (manifest order): 0 `relay.put`, 1 `relay.get`,
//! 2 `relay.delete`, 3 `kv.put`, 4 `kv.get`, 5 `kv.delete`, 6 `kv.crash`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use ferry_guest::{call, Arg, Call, Rng};

/// Keys per thread.
const KEYS: u64 = 32;
/// Largest value in bytes (and the get buffer).
const MAX_VALUE: usize = 200;
/// Relay modes (see `soak-relay`).
const RELAY_FORWARD: u64 = 0;
const RELAY_FAULT_BEFORE: u64 = 1;
const RELAY_FAULT_AFTER: u64 = 2;
/// Slot of `kv.crash`.
const SLOT_CRASH: u32 = 6;

fn work(c: &mut Call) -> Result<[u64; 2], u32> {
    let mut rng = Rng::new(c.scalar(0));
    let (ops, t) = (c.scalar(1), c.scalar(2));
    let (relay_faults, kv_crashes) = (c.scalar(3), c.scalar(4));
    let (mut ok, mut failed) = (0u64, 0u64);
    let (mut before, mut after, mut crashes) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; MAX_VALUE];
    for _ in 0..ops {
        if rng.one_in(kv_crashes) {
            // kv faults and restarts empty; the VMM's model follows its
            // generation.
            let _ = call(SLOT_CRASH, &[], &mut []);
            crashes += 1;
        }
        let key = format!("s{t}-{}", rng.next_u64() % KEYS).into_bytes();
        let via_relay = rng.next_u64().is_multiple_of(2);
        let mode = match (via_relay, rng.one_in(relay_faults)) {
            (true, true) if rng.next_u64().is_multiple_of(2) => RELAY_FAULT_BEFORE,
            (true, true) => RELAY_FAULT_AFTER,
            _ => RELAY_FORWARD,
        };
        before += u64::from(mode == RELAY_FAULT_BEFORE);
        after += u64::from(mode == RELAY_FAULT_AFTER);
        let base = if via_relay { 0 } else { 3 };
        let answer = match rng.next_u64() % 20 {
            0..=7 => {
                let len = 1 + (rng.next_u64() % MAX_VALUE as u64) as usize;
                let value: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                call(
                    base,
                    &[mode],
                    &mut [Arg::input(&key[..]), Arg::input(&value[..])],
                )
            }
            8..=16 => call(
                base + 1,
                &[mode],
                &mut [Arg::input(&key[..]), Arg::output(&mut buf)],
            ),
            _ => call(base + 2, &[mode], &mut [Arg::input(&key[..])]),
        };
        match answer {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    const FIELD: u64 = (1 << 21) - 1;
    Ok([
        (ok & 0xFFFF_FFFF) | failed << 32,
        (before & FIELD) | (after & FIELD) << 21 | (crashes & FIELD) << 42,
    ])
}

ferry_guest::entries! {
    "work" => work,
}
