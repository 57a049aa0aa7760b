//! Spawning new threads inside this domain (the `Spawn` hypercall).

use crate::call::CallError;
use crate::hypercall::hypercall_scalar;
use crate::image::tables;
use shared_abi::{ErrorCode, Hypercall};

/// Start a new thread in this domain at entry index `entry` (of this
/// image's own table), with `arg` as its first scalar and no caller. It
/// runs concurrently with the caller, on its own vCPU and stack, counted
/// against the domain's `max_spawned` quota until it ends. Returns the new
/// thread's id, or `Ferry(QuotaExceeded)`, `Ferry(NoSuchEntry)`, … (the
/// status word decoded like a call's).
pub fn spawn(entry: u32, arg: u64) -> Result<u64, CallError> {
    let (status, regs) = hypercall_scalar(Hypercall::Spawn, [entry as u64, arg, 0, 0, 0, 0]);
    if status == 0 {
        Ok(regs[0])
    } else {
        let [r0, r1, r2, r3, _] = regs;
        Err(CallError::decode(status, [r0, r1, r2, r3]))
    }
}

/// [`spawn`] by entry name: looks `name` up in this image's entry table so
/// callers need not hard-code indices. An unknown name fails with
/// `Ferry(NoSuchEntry)` without a hypercall.
pub fn spawn_named(name: &str, arg: u64) -> Result<u64, CallError> {
    let index = tables()
        .entries
        .iter()
        .position(|e| e.name.as_bytes() == Some(name.as_bytes()))
        .ok_or(CallError::Ferry(ErrorCode::NoSuchEntry))?;
    spawn(index as u32, arg)
}
