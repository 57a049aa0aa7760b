//! What a domain's guest memory costs the host: the pages of it that are
//! resident right now (`mincore`), so tests and benchmarks can check that
//! memory is a limit, not a reservation.

use super::Domain;
use shared_abi::layout::{IMAGE_BASE, PAGE_SIZE};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Bytes per page, as a `usize`.
const PAGE: usize = 4096;
const _: () = assert!(PAGE as u64 == PAGE_SIZE);

/// Which pages of the host mapping `[addr, addr + len)` (page-aligned) are
/// resident: one bool per page.
fn resident_pages(addr: *mut libc::c_void, len: usize) -> std::io::Result<Vec<bool>> {
    let mut vec = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: `addr..addr + len` is a live mapping owned by the caller's
    // domain; mincore only reads the page tables and writes one byte per
    // page into `vec`, which holds one byte per page of the range.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(vec.into_iter().map(|b| b & 1 == 1).collect())
}

/// Resident bytes of the host mapping `[addr, addr + len)` (page-aligned).
fn resident(addr: *mut libc::c_void, len: usize) -> std::io::Result<u64> {
    let n = resident_pages(addr, len)?.iter().filter(|r| **r).count() as u64;
    Ok(n * PAGE_SIZE)
}

/// The pages a domain's boot left resident: what a restart may zero in
/// place instead of giving back to the host.
///
/// Giving pages back (`MADV_DONTNEED`) runs every KVM VM's MMU notifier
/// of this process, so its cost grows with the number of domains (0.9 ms
/// per restart with 16 domains, 6–22 ms with 4,096). The boot of a restart
/// touches these same pages again anyway, so zeroing them where they are
/// costs a few microseconds and leaves the footprint where it was.
#[derive(Debug, Default)]
pub(crate) struct BootFootprint {
    pages: Vec<bool>,
}

/// How a reset cleared guest memory (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cleared {
    /// Only boot pages (and system pages) were resident: zeroed in place.
    InPlace,
    /// The guest had touched more than its boot did: all given back.
    GivenBack,
}

impl BootFootprint {
    /// Record which pages of `mem` are resident now (at the end of a boot).
    /// With huge pages every page is resident and zeroing it all in place
    /// would cost more than a refault: nothing is recorded, so a reset gives
    /// everything back.
    pub(crate) fn record(mem: &GuestMemoryMmap, huge_pages: bool) -> Self {
        if huge_pages {
            return Self::default();
        }
        let Some(region) = mem.iter().next() else {
            return Self::default();
        };
        let Ok(len) = usize::try_from(region.len()) else {
            return Self::default();
        };
        match resident_pages(region.as_ptr().cast(), len) {
            Ok(pages) => Self { pages },
            Err(e) => {
                log::debug!("no boot footprint recorded: {e}");
                Self::default()
            }
        }
    }

    /// Zero all of `mem` for a restart: in place if every resident page
    /// is one the boot left resident, else by giving every page back.
    ///
    /// The caller guarantees that nothing runs in or copies to the domain.
    pub(crate) fn clear(&self, mem: &GuestMemoryMmap) -> std::io::Result<Cleared> {
        let Some(region) = mem.iter().next() else {
            return Ok(Cleared::GivenBack);
        };
        let len = usize::try_from(region.len())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let base: *mut u8 = region.as_ptr();
        let now = resident_pages(base.cast(), len)?;
        // Pages below the image are the VMM's system pages: a fault
        // pushes its frame onto a vCPU's exception stack there whether or
        // not boot did, and will again; they count as boot pages.
        let system_pages = usize::try_from(IMAGE_BASE / PAGE_SIZE).unwrap_or(usize::MAX);
        let within_boot = self.pages.len() == now.len()
            && now
                .iter()
                .zip(&self.pages)
                .enumerate()
                .all(|(i, (n, b))| !*n || *b || i < system_pages);
        if !within_boot {
            // SAFETY: the range is exactly the private anonymous mapping
            // owned by `mem`; nothing runs in the domain or copies to it
            // (the caller's guarantee); MADV_DONTNEED makes later accesses
            // read zero pages, which is the point. KVM's memslot keeps the
            // same host address.
            let rc = unsafe { libc::madvise(base.cast(), len, libc::MADV_DONTNEED) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            return Ok(Cleared::GivenBack);
        }
        let mut first = 0;
        for run in now.chunk_by(|a, b| a == b) {
            if run.first() == Some(&true) {
                // SAFETY: the pages `first..first + run.len()` lie inside the
                // mapping owned by `mem` (`now` has one entry per page of
                // it); nothing runs in the domain or copies to it, so no
                // one else accesses these bytes while they are zeroed.
                unsafe { std::ptr::write_bytes(base.add(first * PAGE), 0, run.len() * PAGE) };
            }
            first += run.len();
        }
        Ok(Cleared::InPlace)
    }
}

impl Domain {
    /// Guest addresses of the resident pages of its memory (tests).
    #[cfg(feature = "test-util")]
    pub(crate) fn resident_page_addrs(&self) -> std::io::Result<Vec<u64>> {
        let Some(region) = self.mem.iter().next() else {
            return Ok(Vec::new());
        };
        let len = usize::try_from(region.len())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let pages = resident_pages(region.as_ptr().cast(), len)?;
        Ok(pages
            .iter()
            .enumerate()
            .filter(|(_, r)| **r)
            .map(|(i, _)| i as u64 * PAGE_SIZE)
            .collect())
    }

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
