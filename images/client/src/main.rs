//! `client`: an end-to-end workload over `kv` and `hasher`, serving
//! [`client_api::Workload`].
//!
//! It binds typed handles by the names the manifest grants (`kv`,
//! `hasher`) and names no slot number, apart from one deliberate raw call
//! outside its capabilities (slot 42), which must be refused with
//! `BadSlot`.
//!
//! Several client threads may run at once (each on its own vCPU of this
//! domain) against the same `kv`: thread `t`'s keys are `t<t>-key-<i>`, so
//! threads with distinct indices store disjoint keys and never see each
//! other's deletes. Each thread measures the floor itself.
//!
//! Work: `measure_floor(1000)`; put N keys `t<t>-key-<i>` with values of
//! 1..=200 bytes derived from `i`; get all N back and compare; delete every
//! 10th key (`i % 10 == 0`) and check that getting it fails with
//! `KvError::NotFound`; hash the values of keys 0..100 with `hasher` and
//! compare with an in-guest SHA-256; call slot 42 and expect
//! `Ferry(BadSlot)`.
//!
//! The answer counts the calls that succeeded: N puts + N gets + ceil(N/10)
//! deletes + 100 hashes (2200 for N = 1000).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;
use client_api::WorkloadError;
use core::fmt::Debug;
use ferry_guest::interface::Error;
use ferry_guest::shared_abi::ErrorCode;
use ferry_guest::{call, measure_floor, println, CallError, Vmm};
use hasher_api::HasherClient;
use kv_api::{KvClient, KvError};
use sha2::{Digest, Sha256};

/// The slot the manifest does not grant (the deliberate raw call).
const SLOT_NOT_GRANTED: u32 = 42;
/// Keys when the caller passes 0.
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

/// Report a failed phase and turn it into the workload's error.
fn fail(phase: WorkloadError, i: u64, e: impl Debug) -> WorkloadError {
    println!("client: {phase:?} at item {i}: {e:?}");
    phase
}

/// The workload (stateless: each thread's state lives on its stack).
struct Client;

impl client_api::Workload for Client {
    fn main(&self, keys: u64, t: u64) -> Result<u64, WorkloadError> {
        let n = match keys {
            0 => DEFAULT_KEYS,
            n => n,
        };
        let kv = KvClient::bind(Vmm, "kv").map_err(|e| fail(WorkloadError::NotGranted, 0, e))?;
        let hasher =
            HasherClient::bind(Vmm, "hasher").map_err(|e| fail(WorkloadError::NotGranted, 0, e))?;
        let mut ok = 0u64;

        measure_floor(1000);
        println!("client t{t}: measured the floor (1000 nops)");

        for i in 0..n {
            let (k, v) = (key(t, i), value(i));
            kv.put(&k, &v)
                .map_err(|e| fail(WorkloadError::PutFailed, i, e))?;
            ok += 1;
        }
        println!("client t{t}: put {n} keys");

        let mut buf = [0u8; MAX_VALUE];
        for i in 0..n {
            let len = kv
                .get(&key(t, i), &mut buf)
                .map_err(|e| fail(WorkloadError::GetFailed, i, e))?;
            ok += 1;
            if buf.get(..len) != Some(&value(i)[..]) {
                println!("client t{t}: value of t{t}-key-{i} differs");
                return Err(WorkloadError::GetMismatch);
            }
        }
        println!("client t{t}: got and checked {n} keys");

        let mut deleted = 0u64;
        for i in (0..n).step_by(10) {
            let k = key(t, i);
            kv.delete(&k)
                .map_err(|e| fail(WorkloadError::DeleteFailed, i, e))?;
            ok += 1;
            match kv.get(&k, &mut buf) {
                Err(Error::App(KvError::NotFound)) => {}
                other => {
                    println!("client t{t}: get of deleted t{t}-key-{i} gave {other:?}");
                    return Err(WorkloadError::DeletedStillThere);
                }
            }
            deleted += 1;
        }
        println!("client t{t}: deleted {deleted} keys, each get of them failed as expected");

        for i in 0..HASHES {
            let v = value(i);
            let mut digest = [0u8; 32];
            hasher
                .sha256(&v, &mut digest)
                .map_err(|e| fail(WorkloadError::HashFailed, i, e))?;
            ok += 1;
            if digest[..] != Sha256::digest(&v)[..] {
                println!("client t{t}: digest of value {i} differs");
                return Err(WorkloadError::HashMismatch);
            }
        }
        println!("client t{t}: hashed and checked {HASHES} values");

        // The one raw call: outside this domain's capabilities on purpose.
        match call(SLOT_NOT_GRANTED, &[], &mut []) {
            Err(CallError::Ferry(ErrorCode::BadSlot)) => {}
            other => {
                println!("client t{t}: slot {SLOT_NOT_GRANTED} gave {other:?}");
                return Err(WorkloadError::BadSlotNotRefused);
            }
        }
        println!("client t{t}: done, {ok} successful calls");
        Ok(ok)
    }
}

static CLIENT: Client = Client;

ferry_guest::image! {
    serves: [client_api::WorkloadServer(&CLIENT)],
    uses: [kv_api::KV_INTERFACE, hasher_api::HASHER_INTERFACE],
}
