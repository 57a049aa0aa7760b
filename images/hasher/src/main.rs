//! `hasher`: SHA-256 as a service.
//!
//! Entries:
//! - `sha256(data IN, digest OUT [u8; 32]) -> r0 = data length`.
//!
//! Application status codes:
//! - 1 `NO_DATA`: no object 0;
//! - 2 `BAD_DIGEST`: object 1 missing, not OUT/INOUT, or not 32 bytes.
#![no_std]
#![no_main]

use ferry_guest::Call;
use sha2::{Digest, Sha256};

/// No data object.
const NO_DATA: u32 = 1;
/// No 32-byte writable digest object.
const BAD_DIGEST: u32 = 2;

fn sha256(c: &mut Call) -> Result<[u64; 2], u32> {
    let data = c.arg(0).ok_or(NO_DATA)?;
    let digest = Sha256::digest(data);
    let len = data.len() as u64;
    let out = c.arg_mut(1).ok_or(BAD_DIGEST)?;
    if out.len() != digest.len() {
        return Err(BAD_DIGEST);
    }
    out.copy_from_slice(&digest);
    Ok([len, 0])
}

ferry_guest::entries! {
    "sha256" => sha256,
}
