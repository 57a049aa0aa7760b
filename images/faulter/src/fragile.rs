//! `faulter-fragile`: TEST-ONLY. The `faulter` entries, but the image's
//! initialisation faults (`ud2`) from its first restart on
//! (`generation() >= 1`): any fault in a domain running it leaves the domain
//! `Dead`, which the `RESTART_FAULT` kind exists to show. Never in a soak.
#![no_std]
#![no_main]

mod chain;

/// Kind `RESTART_FAULT` is allowed here: the restart it causes faults.
const FRAGILE: bool = true;

/// Runs before `Ready`: faults once the domain has restarted.
fn init() {
    if ferry_guest::generation() >= 1 {
        // SAFETY: `ud2` raises #UD and never returns; it touches no memory.
        unsafe { core::arch::asm!("ud2", options(noreturn)) }
    }
}

ferry_guest::entries! {
    init = init;
    "inject" => chain::inject,
    "hold" => chain::hold,
    "sites" => chain::sites,
    "once" => chain::once,
    "bystand" => chain::bystand,
    "storm" => chain::storm,
}
