//! `client`: an end-to-end workload over `kv` and `hasher`.
//!
//! Entries:
//! - `main(scalar0 = number of keys N (1000 if 0), scalar1 = thread index t)
//!   -> r0 = successful calls`.
//!
//! Capability slots (manifest order): 0 `kv.put`, 1 `kv.get`,
//! 2 `kv.delete`, 3 `hasher.sha256`; slot 42 is deliberately not granted.
//!
//! Several client threads may run at once (each on its own vCPU of this
//! domain) against the same `kv`: thread `t`'s keys are `t<t>-key-<i>`, so
//! threads with distinct indices store disjoint keys and never see each
//! other's deletes. Each thread measures the floor itself.
//!
//! Work: `measure_floor(1000)`; put N keys `t<t>-key-<i>` with values of 1..=200
//! bytes derived from `i`; get all N back and compare; delete every 10th key
//! (`i % 10 == 0`) and check that getting it fails with `App(1)`; hash the
//! values of keys 0..100 with `hasher` and compare with an in-guest SHA-256;
//! call slot 42 and expect `Ferry(BadSlot)`.
//!
//! r0 counts the calls that succeeded: N puts + N gets + ceil(N/10) deletes
//! + 100 hashes (2200 for N = 1000).
//!
//! Application status codes (the phase that went wrong):
//! - 1 `PUT_FAILED`, 2 `GET_FAILED`, 3 `GET_MISMATCH`, 4 `DELETE_FAILED`,
//! - 5 `DELETED_STILL_THERE` (a get after delete did not fail with `App(1)`),
//! - 6 `HASH_FAILED`, 7 `HASH_MISMATCH`,
//! - 8 `BAD_SLOT_NOT_REFUSED` (slot 42 did not fail with `Ferry(BadSlot)`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use ferry_guest::shared_abi::ErrorCode;
use ferry_guest::{call, measure_floor, println, Arg, Call, CallError};
use sha2::{Digest, Sha256};

const PUT_FAILED: u32 = 1;
const GET_FAILED: u32 = 2;
const GET_MISMATCH: u32 = 3;
const DELETE_FAILED: u32 = 4;
const DELETED_STILL_THERE: u32 = 5;
const HASH_FAILED: u32 = 6;
const HASH_MISMATCH: u32 = 7;
const BAD_SLOT_NOT_REFUSED: u32 = 8;

const SLOT_PUT: u32 = 0;
const SLOT_GET: u32 = 1;
const SLOT_DELETE: u32 = 2;
const SLOT_SHA256: u32 = 3;
const SLOT_NOT_GRANTED: u32 = 42;

/// Keys when scalar0 is 0.
const DEFAULT_KEYS: u64 = 1000;
/// Values hashed by the hasher phase.
const HASHES: u64 = 100;
/// Largest value (and get buffer) in bytes.
const MAX_VALUE: usize = 200;

/// Key `i` of client thread `t`.
fn key(t: u64, i: u64) -> Vec<u8> {
    format!("t{t}-key-{i}").into_bytes()
}

/// The value stored under `key(t, i)`: 1..=200 bytes, derived from `i` alone.
fn value(i: u64) -> Vec<u8> {
    let len = 1 + (i.wrapping_mul(37) % MAX_VALUE as u64) as usize;
    (0..len)
        .map(|j| (i.wrapping_mul(31) as usize + j * 7) as u8)
        .collect()
}

/// Report a failed phase and turn it into the entry's status.
fn fail(phase: u32, i: u64, e: CallError) -> u32 {
    println!("client: phase {phase} failed at item {i}: {e:?}");
    phase
}

fn main(c: &mut Call) -> Result<[u64; 2], u32> {
    let n = match c.scalar(0) {
        0 => DEFAULT_KEYS,
        n => n,
    };
    let t = c.scalar(1);
    let mut ok = 0u64;

    measure_floor(1000);
    println!("client t{t}: measured the floor (1000 nops)");

    for i in 0..n {
        let (k, v) = (key(t, i), value(i));
        call(SLOT_PUT, &[], &mut [Arg::input(&k[..]), Arg::input(&v[..])])
            .map_err(|e| fail(PUT_FAILED, i, e))?;
        ok += 1;
    }
    println!("client t{t}: put {n} keys");

    let mut buf = [0u8; MAX_VALUE];
    for i in 0..n {
        let k = key(t, i);
        let r = call(
            SLOT_GET,
            &[],
            &mut [Arg::input(&k[..]), Arg::output(&mut buf)],
        )
        .map_err(|e| fail(GET_FAILED, i, e))?;
        ok += 1;
        let got = buf.get(..r[0] as usize).ok_or(GET_MISMATCH)?;
        if got != &value(i)[..] {
            println!("client t{t}: value of t{t}-key-{i} differs");
            return Err(GET_MISMATCH);
        }
    }
    println!("client t{t}: got and checked {n} keys");

    let mut deleted = 0u64;
    for i in (0..n).step_by(10) {
        let k = key(t, i);
        call(SLOT_DELETE, &[], &mut [Arg::input(&k[..])]).map_err(|e| fail(DELETE_FAILED, i, e))?;
        ok += 1;
        match call(
            SLOT_GET,
            &[],
            &mut [Arg::input(&k[..]), Arg::output(&mut buf)],
        ) {
            Err(CallError::App(1)) => {}
            other => {
                println!("client t{t}: get of deleted t{t}-key-{i} gave {other:?}");
                return Err(DELETED_STILL_THERE);
            }
        }
        deleted += 1;
    }
    println!("client t{t}: deleted {deleted} keys, each get of them failed as expected");

    for i in 0..HASHES {
        let v = value(i);
        let mut digest = [0u8; 32];
        call(
            SLOT_SHA256,
            &[],
            &mut [Arg::input(&v[..]), Arg::output(&mut digest)],
        )
        .map_err(|e| fail(HASH_FAILED, i, e))?;
        ok += 1;
        if digest[..] != Sha256::digest(&v)[..] {
            println!("client t{t}: digest of value {i} differs");
            return Err(HASH_MISMATCH);
        }
    }
    println!("client t{t}: hashed and checked {HASHES} values");

    match call(SLOT_NOT_GRANTED, &[], &mut []) {
        Err(CallError::Ferry(ErrorCode::BadSlot)) => {}
        other => {
            println!("client t{t}: slot {SLOT_NOT_GRANTED} gave {other:?}");
            return Err(BAD_SLOT_NOT_REFUSED);
        }
    }
    println!("client t{t}: done, {ok} successful calls");
    Ok([ok, 0])
}

ferry_guest::entries! {
    "main" => main,
}
