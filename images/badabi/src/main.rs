//! `badabi`: TEST-ONLY image built "against another ABI version".
//!
//! It boots exactly like every image except that its `Hello` carries
//! `abi_version = shared_abi::ABI_VERSION + 1`; the rest of the `Hello` is
//! well formed (one entry, `null`, the runtime's dispatcher and sample ring).
//! The VMM must refuse it at boot, naming both versions; the integration
//! tests check that. Never use it (or the hidden
//! `ferry_guest::__test_only_start_with_abi_version` it relies on) for
//! anything else.
//!
//! Its ELF entry is `badabi_start` (set in its build.rs), not the runtime's
//! `_start`, which is still linked but never runs.
//!
//! Entries:
//! - `null() -> (0, 0)` (never reached if the VMM does its job).
#![no_std]
#![no_main]

use ferry_guest::shared_abi::{BootInfo, ABI_VERSION};
use ferry_guest::Call;

/// The version this image claims to speak: one the VMM does not.
const CLAIMED_ABI_VERSION: u32 = ABI_VERSION + 1;

/// This image's entry point (see build.rs).
///
/// # Safety
/// Only the VMM calls this, as for `ferry_guest::_start`.
#[no_mangle]
pub unsafe extern "C" fn badabi_start(boot: *const BootInfo) -> ! {
    // SAFETY: we are the entry point, called as `_start` would be.
    unsafe { ferry_guest::__test_only_start_with_abi_version(boot, CLAIMED_ABI_VERSION) }
}

fn null(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([0, 0])
}

ferry_guest::entries! {
    "null" => null,
}
