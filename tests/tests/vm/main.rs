//! Every scenario that boots real VMs, in one test binary (one link, one
//! process): calls and argument lists, call-backs, threads and pools,
//! faults and restarts, message mode, boot errors, and the engine defects
//! each fixed with a test. Tests that count or change process-wide things
//! (allocations, file descriptors) keep binaries of their own.

#[path = "../common/mod.rs"]
mod common;

mod arglists;
mod budgets;
mod callbacks;
mod calls;
mod defects;
mod exits;
mod faults;
mod gaps;
mod grow;
mod leases;
mod manifest;
mod mapped;
mod message;
mod pools;
mod privacy;
mod replies;
mod restart;
mod threads;
mod typed;
// hygiene
mod spawns;
mod xstate;
