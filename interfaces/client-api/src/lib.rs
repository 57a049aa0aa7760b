//! The demo `client`: the workload the VMM starts threads at.
#![no_std]
#![deny(missing_docs)]

use ferry_interface::AppError;

/// An end-to-end workload over `kv` and `hasher`.
#[ferry_interface::interface]
pub trait Workload {
    /// Put `keys` keys of thread `thread` (1000 if 0), get them back,
    /// delete every tenth, hash a hundred values and make one call outside
    /// the client's capabilities; answer the calls that succeeded.
    fn main(&self, keys: u64, thread: u64) -> Result<u64, WorkloadError>;
}

/// The phase of the workload that went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AppError)]
#[repr(u32)]
pub enum WorkloadError {
    /// A `kv.put` failed.
    PutFailed = 1,
    /// A `kv.get` failed.
    GetFailed = 2,
    /// A `kv.get` answered another value than was put.
    GetMismatch = 3,
    /// A `kv.delete` failed.
    DeleteFailed = 4,
    /// A `kv.get` after the key's delete did not answer `NotFound`.
    DeletedStillThere = 5,
    /// A `hasher.sha256` failed.
    HashFailed = 6,
    /// `hasher` answered another digest than the client computed.
    HashMismatch = 7,
    /// The call outside the client's capabilities was not refused with
    /// `BadSlot`.
    BadSlotNotRefused = 8,
    /// `kv` or `hasher` is not granted to this client (binding failed).
    NotGranted = 9,
}
