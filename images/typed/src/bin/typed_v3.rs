//! `typed_v3`: TEST-ONLY. Calls `test_api::v3::Probe` (version 1 plus
//! `probe_twice`): it boots against a version-1 server, which does not
//! export `probe_twice`, so that method is never granted. Raw entry:
//!
//! - `drive(start, by)`: `probe_add(start, by)` in `server`, then
//!   `probe_twice`, which must answer `BadSlot` without reaching the VMM
//!   and leave the value alone: `[sum, value after]`.
#![no_std]
#![no_main]

#[path = "../report.rs"]
#[allow(dead_code, reason = "shared by the three images; each uses part")]
mod report;

use ferry_guest::{Call, Vmm};
use report::{bound, called, check, is_bad_slot, NOT_BAD_SLOT};
use test_api::v3::{ProbeClient, PROBE_INTERFACE};

/// See the crate documentation.
fn drive(c: &mut Call) -> Result<[u64; 2], u32> {
    let probe = bound(ProbeClient::bind(Vmm, "server"))?;
    let mut value = c.scalar(0);
    let sum = called(probe.probe_add(&mut value, c.scalar(1)))?;
    let before = value;
    let r = probe.probe_twice(&mut value);
    check(
        is_bad_slot(&r) && value == before,
        NOT_BAD_SLOT,
        "probe_twice (not served)",
        (r, value),
    )?;
    Ok([sum, value])
}

ferry_guest::image! {
    uses: [PROBE_INTERFACE],
    raw: ["drive" => drive],
}
