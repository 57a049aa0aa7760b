//! `faulter`: a link of a fault-injection chain. Called with a fault kind
//! and a depth, it raises the fault at that depth of a chain of faulter
//! domains; as the chain's first domain it also runs storms of injections
//! and judges every answer (see `chain.rs` for the entries and
//! `ferry_hostile::inject` for the host side and the expected answers).
#![no_std]
#![no_main]

mod chain;

/// This image restarts cleanly after any fault.
const FRAGILE: bool = false;

ferry_guest::entries! {
    "inject" => chain::inject,
    "hold" => chain::hold,
    "sites" => chain::sites,
    "once" => chain::once,
    "bystand" => chain::bystand,
    "storm" => chain::storm,
}
