//! `kv-corrupt`: `kv` except that every 100th `get` flips one bit of the
//! value it returns (bit 0 of the first byte): a lying domain, for the test
//! proving the caller-side checks catch it. Entries and status codes as in
//! `store.rs`.
#![no_std]
#![no_main]

extern crate alloc;

mod store;

use ferry_guest::Call;

/// Every how many gets the value is corrupted.
const CORRUPT_EVERY: u64 = 100;

/// `get(key IN, value OUT) -> r0 = value length`, lying every 100th time.
fn get(c: &mut Call) -> Result<[u64; 2], u32> {
    store::get_with(c, Some(CORRUPT_EVERY))
}

ferry_guest::entries! {
    init = store::init;
    "put" => store::put,
    "get" => get,
    "delete" => store::delete,
    "count" => store::count,
}
