//! The store shared by `kv`, `kv-corrupt` and `kv-crashable` (each bin `mod store;` this).
//!
//! Entries (index order, see each bin's `entries!`):
//! - `put(key IN, value IN) -> r0 = 0`: stores the pair after logging
//!   `put <key as lossy UTF-8> <value length>` through capability slot 0
//!   (`logger.append`) with one IN object;
//! - `get(key IN, value OUT) -> r0 = value length`: the value goes into the
//!   first r0 bytes of the OUT buffer;
//! - `delete(key IN) -> r0 = 0`;
//! - `count() -> r0 = number of keys`.
//!
//! Application status codes:
//! - 1 `NOT_FOUND`: `get`/`delete` of a missing key;
//! - 2 `BUFFER_TOO_SMALL`: `get`'s OUT buffer is shorter than the value;
//! - 3 `LOG_FAILED`: `put`'s nested call to the logger failed (nothing stored);
//! - 4 `BAD_ARGS`: an object is missing or has the wrong mode.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use ferry_guest::{call, Arg, Call};
use hashbrown::HashMap;
use spin::Mutex;

/// `get`/`delete` of a missing key.
pub const NOT_FOUND: u32 = 1;
/// `get`'s OUT buffer is shorter than the value.
pub const BUFFER_TOO_SMALL: u32 = 2;
/// `put`'s nested call to the logger failed.
pub const LOG_FAILED: u32 = 3;
/// An object is missing or has the wrong mode.
pub const BAD_ARGS: u32 = 4;

/// Capability slot of `logger.append` in the manifest.
const LOGGER_SLOT: u32 = 0;

/// The store; created by `init` before the domain says `Ready`.
static MAP: Mutex<Option<HashMap<Vec<u8>, Vec<u8>>>> = Mutex::new(None);

/// Gets served so far (drives `kv-corrupt`'s lies).
static GETS: AtomicU64 = AtomicU64::new(0);

/// Create the empty store (the `init` of both bins).
pub fn init() {
    *MAP.lock() = Some(HashMap::new());
}

/// Run `f` on the store.
fn with_map<R>(f: impl FnOnce(&mut HashMap<Vec<u8>, Vec<u8>>) -> R) -> R {
    let mut guard = MAP.lock();
    f(guard.get_or_insert_with(HashMap::new))
}

/// `put(key IN, value IN)`.
pub fn put(c: &mut Call) -> Result<[u64; 2], u32> {
    let key = c.arg(0).ok_or(BAD_ARGS)?.to_vec();
    let value = c.arg(1).ok_or(BAD_ARGS)?.to_vec();
    // Log first (without holding the lock across the call): a put whose log
    // line could not be written stores nothing.
    let line = format!("put {} {}", String::from_utf8_lossy(&key), value.len());
    call(LOGGER_SLOT, &[], &mut [Arg::input(line.as_bytes())]).map_err(|_| LOG_FAILED)?;
    with_map(|m| m.insert(key, value));
    Ok([0, 0])
}

/// `get(key IN, value OUT)`; with `corrupt_every = Some(n)` every n-th get
/// (counted over the whole domain) flips bit 0 of the value's first byte.
pub fn get_with(c: &mut Call, corrupt_every: Option<u64>) -> Result<[u64; 2], u32> {
    let key = c.arg(0).ok_or(BAD_ARGS)?.to_vec();
    let out = c.arg_mut(1).ok_or(BAD_ARGS)?;
    let n = with_map(|m| {
        let v = m.get(&key).ok_or(NOT_FOUND)?;
        let dst = out.get_mut(..v.len()).ok_or(BUFFER_TOO_SMALL)?;
        dst.copy_from_slice(v);
        Ok::<_, u32>(v.len())
    })?;
    if let Some(every) = corrupt_every {
        let k = GETS.fetch_add(1, Ordering::Relaxed) + 1;
        if k.is_multiple_of(every) && n > 0 {
            out[0] ^= 1;
        }
    }
    Ok([n as u64, 0])
}

/// `delete(key IN)`.
pub fn delete(c: &mut Call) -> Result<[u64; 2], u32> {
    let key = c.arg(0).ok_or(BAD_ARGS)?;
    with_map(|m| m.remove(key)).ok_or(NOT_FOUND)?;
    Ok([0, 0])
}

/// `count()`.
pub fn count(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([with_map(|m| m.len()) as u64, 0])
}
