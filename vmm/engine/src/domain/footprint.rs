//! What a domain's guest memory costs the host: the pages of it that are
//! resident right now (`mincore`), so tests and benchmarks can check that
//! memory is a limit, not a reservation.

use super::Domain;
use shared_abi::layout::PAGE_SIZE;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Resident bytes of the host mapping `[addr, addr + len)` (page-aligned).
fn resident(addr: *mut libc::c_void, len: usize) -> std::io::Result<u64> {
    let page = usize::try_from(PAGE_SIZE).unwrap_or(4096);
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: `addr..addr + len` is a live mapping owned by the caller's
    // domain; mincore only reads the page tables and writes one byte per
    // page into `vec`, which holds one byte per page of the range.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = vec.iter().filter(|b| *b & 1 == 1).count() as u64;
    Ok(n * PAGE_SIZE)
}

impl Domain {
    /// Bytes of its guest memory resident on the host now: what it has
    /// touched (image, system pages, the TSSs of its vCPUs, the stacks and
    /// heap it used), or all of it with huge pages. KVM's own per-VM and
    /// per-vCPU memory is not counted.
    pub fn resident_bytes(&self) -> std::io::Result<u64> {
        let mut total = 0;
        for region in self.mem.iter() {
            let len = usize::try_from(region.len())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            total += resident(region.as_ptr().cast(), len)?;
        }
        Ok(total)
    }
}
