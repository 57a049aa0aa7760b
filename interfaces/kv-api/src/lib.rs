//! `kv`: an in-guest key-value store, the demo's central service.
//!
//! Client images call it through [`KvClient`], the `kv` images serve it
//! through [`KvServer`], and the host-side demo referee and soak referee
//! read [`KvError`]'s codes from here instead of keeping copies.
#![no_std]
#![deny(missing_docs)]

use ferry_interface::AppError;

/// A key-value store of byte strings.
#[ferry_interface::interface]
pub trait Kv {
    /// Store `value` under `key`, after logging the put to `logger`; a put
    /// whose log line could not be written stores nothing.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    /// Copy the value of `key` into the front of `value` (an OUT buffer:
    /// nothing of the caller's bytes is copied in) and answer its length.
    fn get(&self, key: &[u8], #[out] value: &mut [u8]) -> Result<usize, KvError>;
    /// Remove `key`.
    fn delete(&self, key: &[u8]) -> Result<(), KvError>;
    /// How many keys the store holds.
    fn count(&self) -> u64;
}

/// Why a store operation failed. Codes are part of the interface: a
/// caller sees them as `CallError::App(code)` through the raw API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AppError)]
#[repr(u32)]
pub enum KvError {
    /// `get`/`delete` of a missing key.
    NotFound = 1,
    /// `get`'s buffer is shorter than the value.
    BufferTooSmall = 2,
    /// `put`'s nested call to the logger failed (nothing stored).
    LogFailed = 3,
}
