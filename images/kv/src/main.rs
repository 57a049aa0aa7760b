//! `kv`: an in-guest key-value store; see `store.rs` for the entries and
//! application status codes.
#![no_std]
#![no_main]

extern crate alloc;

mod store;

use ferry_guest::Call;

/// `get(key IN, value OUT) -> r0 = value length`, honestly.
fn get(c: &mut Call) -> Result<[u64; 2], u32> {
    store::get_with(c, None)
}

ferry_guest::entries! {
    init = store::init;
    "put" => store::put,
    "get" => get,
    "delete" => store::delete,
    "count" => store::count,
}
