//! `kv-crashable`: `kv` plus a `crash` entry that faults, so `ferry soak`
//! can restart the store at times and check that the VMM's model follows
//! its generation (state lost by a restart is expected, never a lost
//! result). Entries and status codes as in `store.rs`, then:
//! - `crash()`: `ud2` (#UD, vector 6); the domain restarts empty.
#![no_std]
#![no_main]

extern crate alloc;

mod store;

use ferry_guest::Call;

/// `get(key IN, value OUT) -> r0 = value length`, honestly.
fn get(c: &mut Call) -> Result<[u64; 2], u32> {
    store::get_with(c, None)
}

/// Fault on purpose.
fn crash(_: &mut Call) -> Result<[u64; 2], u32> {
    // SAFETY: `ud2` only raises #UD; the VMM turns it into a fault report.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

ferry_guest::entries! {
    init = store::init;
    "put" => store::put,
    "get" => get,
    "delete" => store::delete,
    "count" => store::count,
    "crash" => crash,
}
