//! Guest memory as the oracle sees it: bounded reads of what the fuzzer
//! wrote (untrusted: every address is checked against the domain's memory
//! first), the host's canaries, and the system pages compared with their
//! state before the batch.

use super::wire::{pattern, pattern_word, EDGE_LEN};
use super::FuzzError;
use ferry_engine::domain::Domain;
use shared_abi::layout::{
    vcpu_slot, DomainLayout, EXC_STACK_OFFSET, EXC_STACK_SIZE, GDT_ADDR, IMAGE_BASE,
    IST_STACK_OFFSET, LEASE_PAGE_TABLES_END, MAX_VCPUS, PAGE_SIZE, PAGE_TABLES_ADDR,
    STACK_WINDOW_PT_ADDR, VCPU_AREA_ADDR,
};
use vm_memory::{Bytes, GuestAddress};
use zerocopy::{FromBytes, IntoBytes};

/// Read `len` bytes at `addr` of `d`'s memory.
pub(super) fn read(d: &Domain, addr: u64, len: u64) -> Result<Vec<u8>, FuzzError> {
    let bad = || FuzzError::Memory {
        domain: d.name.clone(),
        addr,
        len,
    };
    let end = addr.checked_add(len).ok_or_else(bad)?;
    if end > d.layout.memory_size {
        return Err(bad());
    }
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| bad())?];
    d.mem()
        .read_slice(&mut buf, GuestAddress(addr))
        .map_err(|_| bad())?;
    Ok(buf)
}

/// Read a wire value at `addr` of `d`'s memory.
pub(super) fn read_obj<T: FromBytes>(d: &Domain, addr: u64) -> Result<T, FuzzError> {
    let bytes = read(d, addr, std::mem::size_of::<T>() as u64)?;
    T::read_from_bytes(&bytes).map_err(|_| FuzzError::Memory {
        domain: d.name.clone(),
        addr,
        len: bytes.len() as u64,
    })
}

/// Write `bytes` at `addr` of `d`'s memory (only while no vCPU of the
/// fuzz domains runs: between batches).
pub(super) fn write(d: &Domain, addr: u64, bytes: &[u8]) -> Result<(), FuzzError> {
    d.mem()
        .write_slice(bytes, GuestAddress(addr))
        .map_err(|_| FuzzError::Memory {
            domain: d.name.clone(),
            addr,
            len: bytes.len() as u64,
        })
}

/// Write a wire value at `addr` of `d`'s memory.
pub(super) fn write_obj<T: IntoBytes + zerocopy::Immutable>(
    d: &Domain,
    addr: u64,
    v: &T,
) -> Result<(), FuzzError> {
    write(d, addr, v.as_bytes())
}

/// Bytes `[start, start + len)` of pattern `tag`, as the guests fill them.
pub(super) fn pattern_bytes(tag: u64, start: u64, len: u64) -> Vec<u8> {
    if (start | len) & 7 == 0 {
        (start / 8..(start + len) / 8)
            .flat_map(|k| pattern_word(tag, k).to_le_bytes())
            .collect()
    } else {
        (start..start + len).map(|o| pattern(tag, o)).collect()
    }
}

// The two windows' page tables are one range below the vCPU area.
const _: () =
    assert!(shared_abi::layout::STACK_WINDOW_PT_END == shared_abi::layout::LEASE_PAGE_TABLES_ADDR);

/// The host's canaries in one domain: ranges no one may write, filled with
/// `pattern(tag, addr)`. All of them lie in memory the guest cannot reach
/// (the null page, unused system pages, guard pages: unmapped, so only a
/// stray copy of the VMM's could write there) or that it never writes (its
/// stacks' bottom bytes, heap pages it never uses).
pub fn canary_ranges(l: &DomainLayout) -> Vec<(u64, u64)> {
    let n_pt = l.memory_size.div_ceil(2 << 20);
    let n_pd = l.memory_size.div_ceil(1 << 30);
    let tables_end = PAGE_TABLES_ADDR + (2 + n_pd + n_pt) * PAGE_SIZE;
    let mut r = vec![
        (0, PAGE_SIZE),
        (
            GDT_ADDR + 3 * PAGE_SIZE,
            PAGE_TABLES_ADDR - GDT_ADDR - 3 * PAGE_SIZE,
        ),
        // The stack window's page tables (mapped domains) and the lease
        // window's (zero unless a call lends) are no canary: a pattern there
        // would map window pages.
        (tables_end, STACK_WINDOW_PT_ADDR - tables_end),
        (
            LEASE_PAGE_TABLES_END,
            VCPU_AREA_ADDR - LEASE_PAGE_TABLES_END,
        ),
    ];
    for slot in 0..MAX_VCPUS {
        let base = vcpu_slot(slot);
        for guard in [3, 5, 7] {
            r.push((base + guard * PAGE_SIZE, PAGE_SIZE));
        }
    }
    for i in 0..l.stack_count {
        let bottom = l.stack_bottom(i);
        r.push((bottom - PAGE_SIZE, PAGE_SIZE));
        r.push((bottom, 512));
    }
    let heap = l.heap_base();
    let edge = l.memory_size.saturating_sub(EDGE_LEN);
    if heap + 2 * PAGE_SIZE <= edge {
        r.push((heap + PAGE_SIZE, PAGE_SIZE));
    }
    if heap + 4 * PAGE_SIZE <= edge {
        r.push((edge - PAGE_SIZE, PAGE_SIZE));
    }
    r
}

/// What must not change in one domain during a batch.
pub struct Guard {
    /// `[0, IMAGE_BASE)` after the canaries were written.
    system: Vec<u8>,
    canaries: Vec<(u64, u64)>,
    tag: u64,
    generation: u64,
}

/// The mask of the 8-byte word at `addr` of the system pages: bits the CPU
/// or KVM may set (accessed/dirty bits of page-table entries, accessed and
/// busy bits of descriptors) are ignored, and so are the exception stacks
/// (a fault writes its frame there).
fn system_mask(addr: u64, tables_end: u64) -> u64 {
    if (GDT_ADDR..GDT_ADDR + PAGE_SIZE).contains(&addr) {
        return !(3 << 40);
    }
    if (PAGE_TABLES_ADDR..tables_end).contains(&addr) {
        return !0x60;
    }
    if (VCPU_AREA_ADDR..IMAGE_BASE).contains(&addr) {
        let off = (addr - VCPU_AREA_ADDR) % shared_abi::layout::VCPU_SLOT_SIZE;
        let exc = (EXC_STACK_OFFSET..EXC_STACK_OFFSET + EXC_STACK_SIZE).contains(&off);
        let ist = (IST_STACK_OFFSET..IST_STACK_OFFSET + EXC_STACK_SIZE).contains(&off);
        if exc || ist {
            return 0;
        }
    }
    !0
}

impl Guard {
    /// Write `d`'s canaries with `tag` and take the snapshot.
    pub fn arm(d: &Domain, tag: u64) -> Result<Self, FuzzError> {
        let canaries = canary_ranges(&d.layout);
        for &(addr, len) in &canaries {
            let words: Vec<u8> = (addr / 8..(addr + len) / 8)
                .flat_map(|k| pattern_word(tag, k).to_le_bytes())
                .collect();
            write(d, addr, &words)?;
        }
        Ok(Self {
            system: read(d, 0, IMAGE_BASE)?,
            canaries,
            tag,
            generation: d.generation(),
        })
    }

    /// Everything that changed and should not have, one line each (at
    /// most `max`): system pages always; canaries unless the domain
    /// restarted (a restart zeroes all its memory).
    pub fn check(&self, d: &Domain, max: usize) -> Result<Vec<String>, FuzzError> {
        let mut bad = Vec::new();
        let restarted = d.generation() != self.generation;
        let now = read(d, 0, IMAGE_BASE)?;
        let tables_end = {
            let l = &d.layout;
            PAGE_TABLES_ADDR
                + (2 + l.memory_size.div_ceil(1 << 30) + l.memory_size.div_ceil(2 << 20))
                    * PAGE_SIZE
        };
        let in_canary = |a: u64| self.canaries.iter().any(|&(s, l)| a >= s && a < s + l);
        // A vCPU slot's TSS is written when its vCPU is created, which may
        // happen during the batch: zero before, exactly the VMM's TSS now.
        let created: Vec<(u64, u64)> = (0..MAX_VCPUS)
            .map(ferry_engine::domain::tss_image)
            .filter(|(addr, bytes)| {
                let range = |m: &[u8]| -> Option<Vec<u8>> {
                    let at = usize::try_from(*addr).ok()?;
                    m.get(at..at + bytes.len()).map(<[u8]>::to_vec)
                };
                range(&self.system).is_some_and(|b| b.iter().all(|&x| x == 0))
                    && range(&now).as_deref() == Some(bytes.as_slice())
            })
            .map(|(addr, bytes)| (addr, bytes.len() as u64))
            .collect();
        let in_created = |a: u64| created.iter().any(|&(s, l)| a >= s && a < s + l);
        for (k, (was, is)) in self
            .system
            .chunks_exact(8)
            .zip(now.chunks_exact(8))
            .enumerate()
        {
            let addr = k as u64 * 8;
            if (restarted && in_canary(addr)) || in_created(addr) {
                continue;
            }
            let word = |b: &[u8]| {
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                u64::from_le_bytes(w)
            };
            let mask = system_mask(addr, tables_end);
            if (word(was) ^ word(is)) & mask != 0 && bad.len() < max {
                bad.push(format!(
                    "`{}`: system word at {addr:#x} changed: {:#018x} → {:#018x}",
                    d.name,
                    word(was),
                    word(is)
                ));
            }
        }
        if !restarted {
            for &(addr, len) in self.canaries.iter().filter(|(a, _)| *a >= IMAGE_BASE) {
                let is = read(d, addr, len)?;
                let want = pattern_bytes(self.tag, addr, len);
                if let Some(i) = is.iter().zip(&want).position(|(a, b)| a != b) {
                    if bad.len() < max {
                        bad.push(format!(
                            "`{}`: canary at {:#x} (of {addr:#x}+{len:#x}) broken",
                            d.name,
                            addr + i as u64
                        ));
                    }
                }
            }
        }
        Ok(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_stay_out_of_the_data_region_and_the_system_pages() {
        let l = DomainLayout {
            image_end: 0x40_0000,
            memory_size: 16 << 20,
            stack_count: 4,
            stack_size: 0x1_0000,
        };
        let region = super::super::wire::Region::of(&l);
        for (addr, len) in canary_ranges(&l) {
            assert_eq!(addr % 8, 0);
            assert_eq!(len % 8, 0);
            let in_data = region.contains(addr, len);
            let stack_bottom = (0..4).any(|i| addr == l.stack_bottom(i));
            let heap = addr >= l.heap_base();
            assert!(!in_data || stack_bottom || heap, "{addr:#x}+{len:#x}");
            let end = addr + len;
            assert!(
                end <= GDT_ADDR || addr >= 0x4000,
                "{addr:#x} overlaps GDT/IDT/stubs"
            );
            let tables = PAGE_TABLES_ADDR + 2 * PAGE_SIZE + 8 * PAGE_SIZE + PAGE_SIZE;
            assert!(
                end <= PAGE_TABLES_ADDR || addr >= tables,
                "{addr:#x} overlaps page tables"
            );
            assert!(
                end <= STACK_WINDOW_PT_ADDR || addr >= LEASE_PAGE_TABLES_END,
                "{addr:#x} overlaps the windows' page tables"
            );
        }
    }

    #[test]
    fn the_system_mask_ignores_only_cpu_written_bits_and_exception_stacks() {
        assert_eq!(system_mask(GDT_ADDR + 8, 0x2_0000), !(3u64 << 40));
        assert_eq!(system_mask(PAGE_TABLES_ADDR + 8, 0x2_0000), !0x60);
        assert_eq!(system_mask(0x2000, 0x2_0000), !0);
        assert_eq!(
            system_mask(vcpu_slot(3) + EXC_STACK_OFFSET + 8, 0x2_0000),
            0
        );
        assert_eq!(system_mask(vcpu_slot(3) + 8, 0x2_0000), !0);
    }
}
