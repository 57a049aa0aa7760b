//! Loading a guest image: check every loadable segment lies in the image
//! area before anything is written, then let `linux-loader` copy it.

use linux_loader::loader::{elf::Elf, KernelLoader};
use shared_abi::layout::{page_up, IMAGE_BASE};
use std::io::Cursor;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Why an image could not be loaded.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a 64-bit x86 ELF executable")]
    NotElf,
    #[error("truncated ELF: {0}")]
    Truncated(&'static str),
    #[error(
        "segment at {start:#x}..{end:#x} is outside the image area {IMAGE_BASE:#x}..{limit:#x}"
    )]
    SegmentOutside {
        /// Segment start (p_paddr).
        start: u64,
        /// Segment end.
        end: u64,
        /// End of guest memory.
        limit: u64,
    },
    #[error("entry point {0:#x} is not inside the image")]
    BadEntry(u64),
    #[error("the ELF loader refused it")]
    Loader(#[source] linux_loader::loader::Error),
}

/// Where a loaded image lies.
#[derive(Clone, Copy, Debug)]
pub struct LoadedImage {
    /// The ELF entry point (`_start`).
    pub entry: u64,
    /// End of the highest segment (`.bss` included), page-aligned.
    pub end: u64,
}

const PT_LOAD: u32 = 1;

fn field<const N: usize>(b: &[u8], at: usize, what: &'static str) -> Result<[u8; N], LoadError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(LoadError::Truncated(what))
}

/// The `[start, end)` of each `PT_LOAD` segment, read from the program headers.
fn load_segments(image: &[u8]) -> Result<(u64, Vec<(u64, u64)>), LoadError> {
    if image.get(..4) != Some(b"\x7fELF") || image.get(4) != Some(&2) || image.get(5) != Some(&1) {
        return Err(LoadError::NotElf);
    }
    let entry = u64::from_le_bytes(field(image, 24, "e_entry")?);
    let phoff = u64::from_le_bytes(field(image, 32, "e_phoff")?);
    let phentsize = u16::from_le_bytes(field(image, 54, "e_phentsize")?) as u64;
    let phnum = u16::from_le_bytes(field(image, 56, "e_phnum")?) as u64;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let at = phoff
            .checked_add(
                i.checked_mul(phentsize)
                    .ok_or(LoadError::Truncated("phdr"))?,
            )
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(LoadError::Truncated("phdr"))?;
        if u32::from_le_bytes(field(image, at, "p_type")?) != PT_LOAD {
            continue;
        }
        let paddr = u64::from_le_bytes(field(image, at + 24, "p_paddr")?);
        let memsz = u64::from_le_bytes(field(image, at + 40, "p_memsz")?);
        let end = paddr
            .checked_add(memsz)
            .ok_or(LoadError::Truncated("p_memsz"))?;
        segs.push((paddr, end));
    }
    Ok((entry, segs))
}

/// Where `image` would end once loaded (its highest segment, `.bss`
/// included, page-aligned), read from its headers alone: what a manifest
/// check needs to know before any memory exists.
pub fn image_end(image: &[u8]) -> Result<u64, LoadError> {
    let (_, segs) = load_segments(image)?;
    let end = segs.iter().map(|&(_, e)| e).fold(IMAGE_BASE, u64::max);
    Ok(page_up(end).unwrap_or(end))
}

/// Load `image` into `mem` (of `memory_size` bytes) after checking it.
pub fn load(
    mem: &GuestMemoryMmap,
    memory_size: u64,
    image: &[u8],
) -> Result<LoadedImage, LoadError> {
    let (entry, segs) = load_segments(image)?;
    let mut end = IMAGE_BASE;
    for &(s, e) in &segs {
        if s < IMAGE_BASE || e > memory_size {
            return Err(LoadError::SegmentOutside {
                start: s,
                end: e,
                limit: memory_size,
            });
        }
        end = end.max(e);
    }
    if !segs.iter().any(|&(s, e)| (s..e).contains(&entry)) {
        return Err(LoadError::BadEntry(entry));
    }
    let mut reader = Cursor::new(image);
    Elf::load(mem, None, &mut reader, Some(GuestAddress(IMAGE_BASE))).map_err(LoadError::Loader)?;
    let end = page_up(end).unwrap_or(end);
    Ok(LoadedImage { entry, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert!(matches!(load_segments(b"hello"), Err(LoadError::NotElf)));
        let mut hdr = vec![0u8; 64];
        hdr[..6].copy_from_slice(b"\x7fELF\x02\x01");
        hdr[32..40].copy_from_slice(&1000u64.to_le_bytes());
        hdr[56..58].copy_from_slice(&1u16.to_le_bytes());
        assert!(matches!(load_segments(&hdr), Err(LoadError::Truncated(_))));
    }
}
