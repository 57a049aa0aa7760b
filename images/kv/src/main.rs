//! `kv`: an in-guest key-value store serving [`kv_api::Kv`] (see
//! `store.rs`).
#![no_std]
#![no_main]

extern crate alloc;

mod store;

/// The honest store.
static STORE: store::Store = store::Store {
    corrupt_every: None,
};

ferry_guest::image! {
    init: store::init,
    serves: [kv_api::KvServer(&STORE)],
    uses: [logger_api::LOGGER_INTERFACE],
}
