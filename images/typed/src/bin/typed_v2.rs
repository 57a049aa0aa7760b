//! `typed_v2`: TEST-ONLY. Calls `test_api::v2::Probe` (a `probe_add` with
//! another signature, so another method id, than version 1's): a system
//! granting it a version-1 server must not boot. Raw entries:
//!
//! - `drive(start, by)`: `probe_add(start, by)` in `server`: `[sum, value
//!   after]`.
//! - `bind()`: bind Probe and Records in `server`: `[Probe's outcome,
//!   Records' outcome]` (0 bound, 1 `NotGranted`, 2 `NotDeclared`).
//!   Records is not in this image's `uses`, so it is `NotDeclared` even
//!   where the manifest grants its methods.
#![no_std]
#![no_main]

#[path = "../report.rs"]
#[allow(dead_code, reason = "shared by the three images; each uses part")]
mod report;

use ferry_guest::{Call, Vmm};
use report::{bind_code, bound, called, BAD_ARGUMENT};
use test_api::v2::{ProbeClient, PROBE_INTERFACE};
use test_api::RecordsClient;

/// See the crate documentation.
fn drive(c: &mut Call) -> Result<[u64; 2], u32> {
    let probe = bound(ProbeClient::bind(Vmm, "server"))?;
    let mut value = u32::try_from(c.scalar(0)).map_err(|_| BAD_ARGUMENT)?;
    let sum = called(probe.probe_add(&mut value, c.scalar(1)))?;
    Ok([sum, u64::from(value)])
}

/// See the crate documentation.
fn bind(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([
        bind_code(&ProbeClient::bind(Vmm, "server")),
        bind_code(&RecordsClient::bind(Vmm, "server")),
    ])
}

ferry_guest::image! {
    uses: [PROBE_INTERFACE],
    raw: ["drive" => drive, "bind" => bind],
}
