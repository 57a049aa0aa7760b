//! What the raw entries of the `typed_*` images answer the host: a status
//! per failed check (0 when every check passed; the host test keeps a copy
//! of these numbers) and helpers shared by the three images.

use core::fmt::Debug;
use ferry_guest::interface::{BindError, Error, Failure};
use ferry_guest::println;
use ferry_guest::shared_abi::ErrorCode;

/// Binding Probe in `server` failed: not granted.
pub const NOT_GRANTED: u32 = 1;
/// Binding failed: the image does not declare the interface in `uses`.
pub const NOT_DECLARED: u32 = 2;
/// A typed call that should have succeeded failed.
pub const CALL_FAILED: u32 = 3;
/// Binding a domain the manifest grants nothing in did not answer `NotGranted`.
pub const BOUND_UNGRANTED: u32 = 4;
/// An ungranted method did not answer `Ferry(Call(BadSlot))`.
pub const NOT_BAD_SLOT: u32 = 5;
/// A scalar argument of the entry is out of range.
pub const BAD_ARGUMENT: u32 = 6;
/// `rec_sum` of three records: wrong count or total.
pub const SUM_WRONG: u32 = 10;
/// `rec_sum` of no record did not answer `App(Empty)`.
pub const SUM_NOT_EMPTY: u32 = 11;
/// `rec_sum` of weights over `u32` did not answer `App(Overflow)`.
pub const SUM_NO_OVERFLOW: u32 = 12;
/// `rec_scale` did not scale the weight alone.
pub const SCALE_WRONG: u32 = 13;
/// `rec_scale` over `u32` did not answer `App(Overflow)`.
pub const SCALE_NO_OVERFLOW: u32 = 14;
/// `rec_lookup` of a present record: wrong answer.
pub const LOOKUP_WRONG: u32 = 15;
/// `rec_lookup` of an absent record did not answer `App(NotFound)`.
pub const LOOKUP_NOT_NOT_FOUND: u32 = 16;

/// `Ok` if `ok`, else `Err(status)` after printing `what` and `got`.
pub fn check(ok: bool, status: u32, what: &str, got: impl Debug) -> Result<(), u32> {
    if ok {
        Ok(())
    } else {
        println!("typed: {what}: got {got:?} (status {status})");
        Err(status)
    }
}

/// A binding's outcome as a result word: 0 bound, 1 `NotGranted`, 2
/// `NotDeclared`.
pub fn bind_code<T>(r: &Result<T, BindError>) -> u64 {
    match r {
        Ok(_) => 0,
        Err(BindError::NotGranted) => u64::from(NOT_GRANTED),
        Err(BindError::NotDeclared) => u64::from(NOT_DECLARED),
    }
}

/// The status of a binding that had to succeed.
pub fn bound<T>(r: Result<T, BindError>) -> Result<T, u32> {
    r.map_err(|e| {
        println!("typed: binding failed: {e:?}");
        match e {
            BindError::NotGranted => NOT_GRANTED,
            BindError::NotDeclared => NOT_DECLARED,
        }
    })
}

/// The status of a typed call that had to succeed.
pub fn called<R, E: Debug>(r: Result<R, Error<E>>) -> Result<R, u32> {
    r.map_err(|e| {
        println!("typed: call failed: {e:?}");
        CALL_FAILED
    })
}

/// Whether `r` is the local refusal of an ungranted method.
pub fn is_bad_slot<R, E>(r: &Result<R, Error<E>>) -> bool {
    matches!(r, Err(Error::Ferry(Failure::Call(ErrorCode::BadSlot))))
}
