//! `logger`: an append-only log of lines.
//!
//! Entries:
//! - `append(line IN) -> r0 = lines so far` (including this one);
//! - `count() -> r0 = lines so far`.
//!
//! Application status codes:
//! - 1 `NO_LINE`: `append` got no object.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use ferry_guest::Call;
use spin::Mutex;

/// `append` was called without an object.
const NO_LINE: u32 = 1;

/// Every line ever appended, in order.
static LINES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn append(c: &mut Call) -> Result<[u64; 2], u32> {
    let line = c.arg(0).ok_or(NO_LINE)?.to_vec();
    let mut lines = LINES.lock();
    lines.push(line);
    Ok([lines.len() as u64, 0])
}

fn count(_: &mut Call) -> Result<[u64; 2], u32> {
    Ok([LINES.lock().len() as u64, 0])
}

ferry_guest::entries! {
    "append" => append,
    "count" => count,
}
