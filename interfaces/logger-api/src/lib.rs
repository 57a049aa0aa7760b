//! `logger`: an append-only log of lines.
#![no_std]
#![deny(missing_docs)]

/// An append-only log.
#[ferry_interface::interface]
pub trait Logger {
    /// Append one line; answer the number of lines so far, this one
    /// included.
    fn append(&self, line: &[u8]) -> u64;
    /// The number of lines so far.
    fn count(&self) -> u64;
}
