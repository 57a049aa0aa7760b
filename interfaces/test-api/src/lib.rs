//! TEST-ONLY interfaces served and called by the `typed_*` guest images,
//! which the real-VM tests of typed interfaces (`tests/tests/vm/typed.rs`)
//! boot.
//!
//! - [`v1::Probe`], [`v2::Probe`] and [`v3::Probe`]: one interface name in
//!   three definitions. v2 changes a parameter's type (so `probe_add` gets
//!   another method id: a v2 client and a v1 server must not boot
//!   together); v3 only adds a method (so a v3 client and a v1 server boot,
//!   and the added method is simply not granted).
//! - [`Records`]: plain structs as objects in every mode, with an
//!   application error, under an entry prefix (`rec_`), served by the same
//!   image as Probe v1 (one entry table for two interfaces).
#![no_std]
#![deny(missing_docs)]

pub mod records;
pub mod v1;
pub mod v2;
pub mod v3;

pub use records::{Record, Records, RecordsClient, RecordsError, RecordsServer, RECORDS_INTERFACE};
