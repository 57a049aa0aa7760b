//! `bootloop`: TEST-ONLY image whose initialisation spins forever from its
//! first restart on (`generation() >= 1`), as a hostile guest whose boot
//! hangs only after a fault would. Its first boot is normal.
//!
//! Entries:
//! - `null() -> (0, 0)`;
//! - `crash()`: `ud2` (#UD): quarantines the domain, whose restart then loops.
#![no_std]
#![no_main]

use ferry_guest::Call;

/// Runs before `Ready`: loops forever once the domain has restarted.
fn init() {
    if ferry_guest::generation() >= 1 {
        loop {
            core::hint::spin_loop();
        }
    }
}

fn null(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([0, 0])
}

fn crash(_: &mut Call) -> Result<[u64; 2], u32> {
    // SAFETY: `ud2` raises #UD and never returns; it touches no memory.
    unsafe { core::arch::asm!("ud2", options(noreturn)) }
}

ferry_guest::entries! {
    init = init;
    "null" => null,
    "crash" => crash,
}
