//! `bootloop-first`: TEST-ONLY image whose initialisation spins forever at
//! every boot, the first one included (generation 0), as a hostile guest
//! that never says `Ready` would. `System::boot` must fail with a typed
//! error naming the domain and its time limit instead of hanging.
//!
//! Entries:
//! - `null() -> (0, 0)` (never reached: the guest never becomes ready).
#![no_std]
#![no_main]

use ferry_guest::Call;

/// Runs before `Ready`: loops forever, making no hypercall.
fn init() {
    loop {
        core::hint::spin_loop();
    }
}

fn null(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([0, 0])
}

ferry_guest::entries! {
    init = init;
    "null" => null,
}
