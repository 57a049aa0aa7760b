//! `hasher`: SHA-256 as a service.
#![no_std]
#![deny(missing_docs)]

/// Hash functions, computed in the server's domain.
#[ferry_interface::interface]
pub trait Hasher {
    /// Write the SHA-256 digest of `data` to `digest`; answer `data`'s
    /// length.
    fn sha256(&self, data: &[u8], #[out] digest: &mut [u8; 32]) -> u64;
}
