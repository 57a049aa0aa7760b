//! Ferry's guest runtime: everything a `no_std` guest image needs to boot,
//! export entries, call other domains and report problems.
//!
//! An image is `#![no_std] #![no_main]`, depends on this crate, declares
//! what it serves, calls and exports with [`image!`] (or, raw entries only,
//! [`entries!`]) and links with `guest/link.ld` (its `build.rs` calls
//! `ferry_image_build::link_image`, crate `guest/image-build`). This crate
//! provides:
//! - `_start`: heap setup, the entry table, imports and capability buffer,
//!   `Hello`, the image's init function, `Ready`;
//! - the dispatcher the VMM starts every invocation at: a served
//!   interface's method through its `Serve::dispatch`, or a raw entry
//!   ([`Call`] wraps the invocation frame);
//! - [`Vmm`], the [`interface::Transport`] typed stubs bind and call
//!   through (capabilities by domain name, from the table the VMM wrote);
//! - [`call`] (with [`Arg`] descriptors) to migrate into another domain
//!   through the raw ABI;
//! - [`print!`]/[`println!`], a panic handler that reports through the
//!   `Panic` hypercall, the heap (`alloc` works), and the `mem*` functions
//!   `core` needs;
//! - [`spawn`]/[`spawn_named`] to start more threads in this domain;
//! - the latency sample ring the VMM reads after a run ([`measure_floor`],
//!   [`record_sample`]).
//!
//! Guests run at CPL3 in 64-bit mode, identity-mapped, possibly on several
//! vCPUs at once (several threads inside one domain simultaneously): all
//! global state here is atomic, locked or immutable, and printing and panic
//! reporting format into buffers on the calling thread's own stack.
#![no_std]

extern crate alloc;

pub use ferry_interface as interface;
pub use shared_abi;

mod call;
mod entry;
mod hypercall;
mod image;
mod mem;
mod pages;
mod print;
mod rng;
mod rt;
mod samples;
mod spawn;
mod transport;

pub use call::{call, call_raw, call_with, last_call_cycles, Answer, Arg, CallError, Limits, Pod};
pub use entry::{Call, EntryFn, BAD_ERROR_STATUS, UNKNOWN_ENTRY_STATUS};
pub use hypercall::{exit, hypercall_raw, nop, rdtsc};
pub use image::ImageDecl;
pub use pages::PageBuf;
pub use print::_print;
pub use rng::Rng;
#[doc(hidden)]
pub use rt::__test_only_start_with_abi_version;
pub use rt::{_start, boot_info, domain_id, generation};
pub use samples::{measure_floor, record_sample, SAMPLE_CAPACITY};
pub use spawn::{spawn, spawn_named};
pub use transport::Vmm;
