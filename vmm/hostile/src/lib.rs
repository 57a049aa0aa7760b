//! Hostile guests, driven and judged from the host.
//!
//! Ferry's claim is that nothing a guest does can crash the VMM, leak a
//! resource or corrupt a result. Tests and `ferry soak` both need the same
//! two tools to check that claim, so they live here, outside the engine
//! (which must not know about its own test rigs) and outside the CLI (which
//! the integration tests cannot link):
//!
//! - [`fuzz`]: the host-side oracle for the `fuzzer` image's hostile
//!   hypercalls;
//! - [`inject`]: the fault kinds the `faulter` image raises on request, and
//!   the answer each party must get for each;
//! - [`STACKER_ENTRIES`]: the entry table of the `stacker` image, whose
//!   mapped-mode calls the fuzz test, the soak and the VM tests drive.

pub mod fuzz;
pub mod inject;

/// Every entry of the `stacker` image, in table order: the exports of a
/// `stacker` domain in a manifest built by code.
pub const STACKER_ENTRIES: &[&str] = &[
    "null",
    "where_sp",
    "inc_inout",
    "sum_in",
    "pass_stack",
    "pass_heap",
    "peek",
    "heap_secret",
    "victim",
    "hostile",
    "relay",
    "fault",
    "spin",
    "call_n",
    "survive",
    "pass_both",
    "inc_both",
    "bad_rsp",
    "forward",
    "call_many",
    "nops",
    "raw_desc",
];
