//! The store shared by `kv`, `kv-corrupt` and `kv-crashable` (each bin
//! `mod store;` this): an implementation of [`kv_api::Kv`]. Every put is
//! logged first, as `put <key as lossy UTF-8> <value length>`, through the
//! domain's `logger` capability.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use ferry_guest::Vmm;
use hashbrown::HashMap;
use kv_api::{Kv, KvError};
use logger_api::LoggerClient;
use spin::{Mutex, Once};

/// The store; created by `init` before the domain says `Ready`.
static MAP: Mutex<Option<HashMap<Vec<u8>, Vec<u8>>>> = Mutex::new(None);

/// Gets served so far (drives `kv-corrupt`'s lies).
static GETS: AtomicU64 = AtomicU64::new(0);

/// The logger handle, bound once at boot (`None` if the manifest grants
/// no logger: every put then fails with `LogFailed`).
static LOGGER: Once<Option<LoggerClient<Vmm>>> = Once::new();

/// Create the empty store and bind the logger (the `init` of every bin).
pub fn init() {
    *MAP.lock() = Some(HashMap::new());
    LOGGER.call_once(|| LoggerClient::bind(Vmm, "logger").ok());
}

/// Run `f` on the store.
fn with_map<R>(f: impl FnOnce(&mut HashMap<Vec<u8>, Vec<u8>>) -> R) -> R {
    let mut guard = MAP.lock();
    f(guard.get_or_insert_with(HashMap::new))
}

/// The store, honest or lying: with `corrupt_every = Some(n)` every n-th
/// get (counted over the whole domain) flips bit 0 of the value's first
/// byte.
pub struct Store {
    /// Every how many gets to lie, if at all.
    pub corrupt_every: Option<u64>,
}

impl Kv for Store {
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        // Log first (without holding the lock across the call): a put whose
        // log line could not be written stores nothing.
        let line = format!("put {} {}", String::from_utf8_lossy(key), value.len());
        let logger = LOGGER.get().and_then(Option::as_ref);
        logger
            .ok_or(KvError::LogFailed)?
            .append(line.as_bytes())
            .map_err(|_| KvError::LogFailed)?;
        with_map(|m| m.insert(key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn get(&self, key: &[u8], value: &mut [u8]) -> Result<usize, KvError> {
        let n = with_map(|m| {
            let v = m.get(key).ok_or(KvError::NotFound)?;
            let dst = value.get_mut(..v.len()).ok_or(KvError::BufferTooSmall)?;
            dst.copy_from_slice(v);
            Ok::<_, KvError>(v.len())
        })?;
        if let Some(every) = self.corrupt_every {
            let k = GETS.fetch_add(1, Ordering::Relaxed) + 1;
            if k.is_multiple_of(every) && n > 0 {
                value[0] ^= 1;
            }
        }
        Ok(n)
    }

    fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        with_map(|m| m.remove(key)).ok_or(KvError::NotFound)?;
        Ok(())
    }

    fn count(&self) -> u64 {
        with_map(|m| m.len()) as u64
    }
}
