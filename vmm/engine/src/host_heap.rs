//! The VMM's own heap, tuned for a process holding many VMs.
//!
//! Every VM registers a KVM MMU notifier on the process's address space,
//! so each `munmap` or `mprotect` anywhere in the process walks every VM's
//! notifier: with N domains, an unmap costs O(N), and a boot of N domains
//! during which the allocator returns memory (glibc trims its heaps with
//! `munmap`, grows a thread's arena with `mprotect`, and serves large
//! allocations with `mmap`/`munmap`) costs O(N²). Measured with
//! `ferry bench --scale` on this PVM host: at 4,096 domains the boot ran at
//! 214 domains/s, with 36% of the CPU time in those notifiers; keeping the
//! heap mapped took it to 883 domains/s (1,024 domains: 951 → 1,748/s).

/// Ask glibc to keep what the VMM allocates mapped: no trimming, large
/// allocations from the heap rather than their own mappings, and heaps
/// grown in large steps. Costs address space and, at worst, some resident
/// memory the VMM freed but kept; buys boots and restarts that do not
/// slow down with the number of VMs. Call once, early, before threads
/// start (the CLI does); a no-op outside glibc.
pub fn keep_heap_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MIB: libc::c_int = 1 << 20;
        for (param, value) in [
            (libc::M_MMAP_THRESHOLD, 32 * MIB),
            (libc::M_TOP_PAD, 64 * MIB),
            (libc::M_TRIM_THRESHOLD, 256 * MIB),
        ] {
            // SAFETY: mallopt only sets allocator parameters; each value is
            // within the range glibc documents for its parameter.
            let ok = unsafe { libc::mallopt(param, value) };
            if ok != 1 {
                log::debug!("mallopt({param}, {value}) refused; the heap keeps its defaults");
            }
        }
    }
}
