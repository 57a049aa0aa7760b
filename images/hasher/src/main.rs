//! `hasher`: SHA-256 as a service, serving [`hasher_api::Hasher`].
#![no_std]
#![no_main]

use sha2::{Digest, Sha256};

/// The hash service (stateless).
struct Sha;

impl hasher_api::Hasher for Sha {
    fn sha256(&self, data: &[u8], digest: &mut [u8; 32]) -> u64 {
        digest.copy_from_slice(&Sha256::digest(data));
        data.len() as u64
    }
}

static SHA: Sha = Sha;

ferry_guest::image! {
    serves: [hasher_api::HasherServer(&SHA)],
}
