//! `kv-corrupt`: `kv` except that every 100th `get` flips one bit of the
//! value it returns (bit 0 of the first byte): a lying domain, for the test
//! proving the caller-side checks catch it.
#![no_std]
#![no_main]

extern crate alloc;

mod store;

/// The lying store.
static STORE: store::Store = store::Store {
    corrupt_every: Some(100),
};

ferry_guest::image! {
    init: store::init,
    serves: [kv_api::KvServer(&STORE)],
    uses: [logger_api::LOGGER_INTERFACE],
}
