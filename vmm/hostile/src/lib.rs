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
//!   the answer each party must get for each.

pub mod fuzz;
pub mod inject;
