//! `typed_v1`: TEST-ONLY. Serves `Probe` version 1 (entry `probe_add`),
//! calls `Probe` version 1, and has a raw entry `drive` (see
//! `probe::drive`).
#![no_std]
#![no_main]

#[path = "../probe.rs"]
#[allow(dead_code, reason = "each binary uses one version of the interface")]
mod probe;

use ferry_guest::Call;

fn drive(c: &mut Call) -> Result<[u64; 2], u32> {
    probe::drive(c, &probe::PROBE_V1)
}

ferry_guest::image! {
    serves: [probe::ProbeServer],
    uses: [probe::PROBE_V1],
    raw: ["drive" => drive],
}
