//! `kv-crashable`: `kv` plus a raw `crash` entry that faults, so `ferry
//! soak` can restart the store at times and check that the VMM's model
//! follows its generation (state lost by a restart is expected, never a
//! lost result). `crash()` executes `ud2` (#UD, vector 6); the domain
//! restarts empty.
#![no_std]
#![no_main]

extern crate alloc;

mod store;

use ferry_guest::Call;

/// The honest store.
static STORE: store::Store = store::Store {
    corrupt_every: None,
};

/// Fault on purpose.
fn crash(_: &mut Call) -> Result<[u64; 2], u32> {
    // SAFETY: `ud2` only raises #UD; the VMM turns it into a fault report.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

ferry_guest::image! {
    init: store::init,
    serves: [kv_api::KvServer(&STORE)],
    uses: [logger_api::LOGGER_INTERFACE],
    raw: ["crash" => crash],
}
