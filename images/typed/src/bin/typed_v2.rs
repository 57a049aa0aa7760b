//! `typed_v2`: TEST-ONLY. Calls `Probe` version 2 (a different signature
//! of `probe_add`, so a different method id) through its raw entry
//! `drive`; a system granting it a version-1 server must not boot.
#![no_std]
#![no_main]

#[path = "../probe.rs"]
#[allow(dead_code, reason = "each binary uses one version of the interface")]
mod probe;

use ferry_guest::Call;

fn drive(c: &mut Call) -> Result<[u64; 2], u32> {
    probe::drive(c, &probe::PROBE_V2)
}

ferry_guest::image! {
    uses: [probe::PROBE_V2],
    raw: ["drive" => drive],
}
