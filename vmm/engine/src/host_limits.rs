//! The host's limits a system of many domains runs into, checked before
//! anything is created: a limit reached halfway through a boot would leave
//! a user with a cryptic `EMFILE` from deep inside KVM.
//!
//! File descriptors: every VM takes one and every vCPU one (vCPUs are
//! created lazily, up to a domain's capacity, while the system runs), so a
//! system needs up to `Σ (1 + vCPU capacity)` beyond what is open. The soft
//! limit is raised as far as the hard limit allows; if even the hard limit
//! is too low, the boot is refused with the number of domains that fit.
//!
//! Memory maps: every domain maps its guest memory once and each vCPU its
//! `kvm_run` page once, and every host thread that may start maps a stack
//! and its guard. The kernel's `vm.max_map_count` bounds them all; a system
//! that would pass it is refused the same way.
//!
//! What cannot be counted beforehand is reached during the boot: KVM
//! refusing a VM, a memory slot or a vCPU, or the host refusing guest
//! memory. [`boot_limit`] decides whether such a failure is a limit (and
//! which) and words it as one sentence naming the limit and how many
//! domains fit. KVM itself bounds VMs only by descriptors and kernel memory
//! (19,000 empty VMs were created in one process on the development host);
//! memory slots are per VM and Ferry uses [`crate::kvm::MEMSLOTS_PER_DOMAIN`]
//! of them per domain, far below KVM's limit (32,764 there).

/// Descriptors kept free for everything else the VMM opens (logs, the
/// watchdog, images read from files, `/proc` reads).
pub const FD_HEADROOM: u64 = 64;

/// Maps kept free for the allocator's arenas, the VMM's own threads and
/// libraries loaded later.
pub const MAP_HEADROOM: u64 = 256;

/// Where the kernel's limit on memory maps per process is read.
const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

/// Why the host cannot hold the system.
#[derive(Debug, thiserror::Error)]
pub enum HostLimitError {
    /// Even the hard limit on file descriptors is too low.
    #[error(
        "this system needs up to {needed} file descriptors (one per VM and one per vCPU, for {domains} domains; \
         {open} already open, {FD_HEADROOM} kept spare) but the hard limit (RLIMIT_NOFILE) is {hard}: \
         the first {fit} of the {domains} domains fit; raise the limit (`ulimit -Hn`, as root) or boot fewer domains"
    )]
    TooFewFds {
        /// Descriptors the system may need, with those open and the headroom.
        needed: u64,
        /// Domains in the system.
        domains: usize,
        /// Descriptors open before the boot.
        open: u64,
        /// The hard limit.
        hard: u64,
        /// How many domains, in manifest order, fit under it.
        fit: usize,
    },
    /// The kernel's limit on memory maps per process is too low.
    #[error(
        "this system may need up to {needed} memory maps (guest memory and one `kvm_run` per vCPU for {domains} \
         domains, two per host thread it may start; {open} already mapped, {MAP_HEADROOM} kept spare) but the \
         kernel allows {limit} (vm.max_map_count): the first {fit} of the {domains} domains fit; raise it \
         (`sysctl vm.max_map_count=N`, as root) or boot fewer domains"
    )]
    TooFewMaps {
        /// Maps the system may need, with those mapped and the headroom.
        needed: u64,
        /// Domains in the system.
        domains: usize,
        /// Maps before the boot.
        open: u64,
        /// The kernel's limit.
        limit: u64,
        /// How many domains, in manifest order, fit under it.
        fit: usize,
    },
    /// A domain's boot ran into a host or KVM limit halfway through.
    #[error(
        "domain `{domain}` could not boot: {op} failed ({cause}), so {limit} is reached: \
         the first {fit} of the {domains} domains fit; {advice}"
    )]
    ReachedAtBoot {
        /// The domain that did not boot.
        domain: String,
        /// What it was doing, e.g. "KVM_CREATE_VM".
        op: &'static str,
        /// The system call's error, as the OS words it.
        cause: String,
        /// The limit, named for people.
        limit: &'static str,
        /// Domains before it in manifest order (all booted).
        fit: usize,
        /// Domains in the system.
        domains: usize,
        /// What a user can do about it.
        advice: &'static str,
    },
    /// The limit could not be read or raised.
    #[error("cannot {what} the file descriptor limit (RLIMIT_NOFILE)")]
    Rlimit {
        /// "read" or "raise".
        what: &'static str,
        /// The system call's error.
        #[source]
        source: std::io::Error,
    },
}

/// What a domain's boot takes from KVM or the host that may run out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootResource {
    /// A VM (`KVM_CREATE_VM`): a descriptor and kernel memory.
    Vm,
    /// Its guest memory (an anonymous mapping of `memory_mib`).
    GuestMemory,
    /// A memory slot of its VM (`KVM_SET_USER_MEMORY_REGION`).
    MemorySlot,
    /// A vCPU (`KVM_CREATE_VCPU`): a descriptor and kernel memory.
    Vcpu,
}

impl BootResource {
    fn op(self) -> &'static str {
        match self {
            Self::Vm => "KVM_CREATE_VM",
            Self::GuestMemory => "mapping its guest memory",
            Self::MemorySlot => "KVM_SET_USER_MEMORY_REGION",
            Self::Vcpu => "KVM_CREATE_VCPU",
        }
    }
}

/// Make a boot operation fail as the kernel would when a limit is
/// reached: the limits of VMs, memory slots and vCPUs cannot be reached
/// cheaply on a test host (the descriptor check before a boot refuses
/// first), so tests replace the kernel's answer at the call site and check
/// that what follows — the boot's error, the sentence, the count of
/// domains that fit — is right with real VMs around it.
#[cfg(feature = "test-util")]
pub mod inject {
    use super::BootResource;
    use std::sync::Mutex;

    /// Armed: (operation, errno, the domain whose operation fails).
    static ARMED: Mutex<Option<(BootResource, i32, String)>> = Mutex::new(None);

    /// Fail the boot operation `resource` of the domain named `domain`
    /// with `errno` (process-wide; one at a time; once).
    pub fn fail_boot_op(resource: BootResource, errno: i32, domain: &str) {
        if let Ok(mut armed) = ARMED.lock() {
            *armed = Some((resource, errno, domain.to_owned()));
        }
    }

    /// Disarm whatever [`fail_boot_op`] armed and has not fired.
    pub fn disarm() {
        if let Ok(mut armed) = ARMED.lock() {
            *armed = None;
        }
    }

    /// The errno `resource` of `domain` must fail with now, if armed for it.
    pub(crate) fn take(resource: BootResource, domain: &str) -> Option<i32> {
        let mut armed = ARMED.lock().ok()?;
        match armed.as_ref() {
            Some((r, errno, d)) if *r == resource && d == domain => {
                let errno = *errno;
                *armed = None;
                Some(errno)
            }
            _ => None,
        }
    }
}

/// The errno a test armed for `resource` (always `None` in a build
/// without the `test-util` feature).
pub(crate) fn injected(resource: BootResource, domain: &str) -> Option<i32> {
    #[cfg(feature = "test-util")]
    {
        inject::take(resource, domain)
    }
    #[cfg(not(feature = "test-util"))]
    {
        let _ = (resource, domain);
        None
    }
}

const FD_ADVICE: &str =
    "raise the hard limit (`ulimit -Hn`, as root) or `fs.file-max`, or boot fewer domains";
const MEMORY_ADVICE: &str = "free host memory or boot fewer (or smaller) domains";

/// Whether `resource` failing with `errno` while domain `domain` boots
/// (`fit` domains before it, `domains` in all) is a limit of the host or of
/// KVM, and if so the sentence that says which. `None`: not a limit (a bug
/// or a broken host), reported as the boot error it is.
pub fn boot_limit(
    resource: BootResource,
    errno: i32,
    domain: &str,
    fit: usize,
    domains: usize,
) -> Option<HostLimitError> {
    let (limit, advice) = match (resource, errno) {
        (_, libc::EMFILE) => (
            "the file descriptor limit of this process (RLIMIT_NOFILE)",
            FD_ADVICE,
        ),
        (_, libc::ENFILE) => ("the system-wide file limit (fs.file-max)", FD_ADVICE),
        (BootResource::GuestMemory, libc::ENOMEM) => (
            "the host's memory for guest memory (its address space limit RLIMIT_AS or overcommit)",
            MEMORY_ADVICE,
        ),
        (BootResource::Vm | BootResource::Vcpu | BootResource::MemorySlot, libc::ENOMEM) => {
            ("the kernel's memory for KVM", MEMORY_ADVICE)
        }
        (BootResource::Vm, libc::ENOSPC | libc::EAGAIN) => {
            ("KVM's limit on VMs", "boot fewer domains (each is one VM)")
        }
        (BootResource::MemorySlot, libc::ENOSPC) => {
            ("KVM's limit on memory slots", "boot fewer domains")
        }
        _ => return None,
    };
    Some(HostLimitError::ReachedAtBoot {
        domain: domain.to_owned(),
        op: resource.op(),
        cause: std::io::Error::from_raw_os_error(errno).to_string(),
        limit,
        fit,
        domains,
        advice,
    })
}

/// How many of `per_domain` (in order) fit under `limit` after `base`.
fn fitting(per_domain: &[u64], base: u64, limit: u64) -> usize {
    let mut used = base;
    per_domain
        .iter()
        .take_while(|d| {
            used = used.saturating_add(**d);
            used <= limit
        })
        .count()
}

/// Check `needed_by_domain` maps per domain, plus `threads` host threads
/// that may start, against the kernel's map limit (`limit` and `open` as
/// read from `/proc`; a pure function, so the sentence can be tested).
pub fn check_maps(
    per_domain: &[u64],
    threads: u64,
    open: u64,
    limit: u64,
) -> Result<(), HostLimitError> {
    let base = open + MAP_HEADROOM + 2 * threads;
    let needed = per_domain.iter().fold(base, |n, d| n.saturating_add(*d));
    if needed <= limit {
        return Ok(());
    }
    Err(HostLimitError::TooFewMaps {
        needed,
        domains: per_domain.len(),
        open,
        limit,
        fit: fitting(per_domain, base, limit),
    })
}

/// [`check_maps`] against this process and this kernel. A kernel that does
/// not say its limit is not checked.
pub fn ensure_maps(per_domain: &[u64], threads: u64) -> Result<(), HostLimitError> {
    let limit = std::fs::read_to_string(MAX_MAP_COUNT)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let open = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64);
    match limit {
        Some(limit) => check_maps(per_domain, threads, open, limit),
        None => Ok(()),
    }
}

/// Descriptors open in this process now.
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Make room for `per_domain` descriptors per domain (VM + vCPUs): raise
/// the soft limit if needed (to the hard limit at most), or say how many
/// domains fit. Returns the soft limit in force afterwards.
pub fn ensure_fds(per_domain: &[u64]) -> Result<u64, HostLimitError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return Err(HostLimitError::Rlimit {
            what: "read",
            source: std::io::Error::last_os_error(),
        });
    }
    let open = open_fds();
    let needed = per_domain
        .iter()
        .fold(open + FD_HEADROOM, |n, d| n.saturating_add(*d));
    if needed <= lim.rlim_cur {
        return Ok(lim.rlim_cur);
    }
    if needed > lim.rlim_max {
        return Err(HostLimitError::TooFewFds {
            needed,
            domains: per_domain.len(),
            open,
            hard: lim.rlim_max,
            fit: fitting(per_domain, open + FD_HEADROOM, lim.rlim_max),
        });
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` we own; raising the soft limit up
    // to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
        return Err(HostLimitError::Rlimit {
            what: "raise",
            source: std::io::Error::last_os_error(),
        });
    }
    log::debug!(
        "raised the file descriptor soft limit from {} to {} ({needed} may be needed)",
        lim.rlim_cur,
        lim.rlim_max
    );
    Ok(lim.rlim_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_limit_too_low_names_how_many_domains_fit() {
        // 100 domains of 6 maps, 10 threads, 50 mapped: 50 + 256 + 20 + 600.
        let per = [6u64; 100];
        assert!(check_maps(&per, 10, 50, 926).is_ok());
        let e = check_maps(&per, 10, 50, 500).expect_err("over the limit");
        let text = e.to_string();
        // (500 - 326) / 6 = 29 domains fit.
        assert!(text.contains("up to 926 memory maps"), "{text}");
        assert!(
            text.contains("the kernel allows 500 (vm.max_map_count)"),
            "{text}"
        );
        assert!(
            text.contains("the first 29 of the 100 domains fit"),
            "{text}"
        );
    }

    #[test]
    fn a_vm_refused_for_want_of_descriptors_names_the_limit_and_the_domains_that_fit() {
        let e = boot_limit(BootResource::Vm, libc::EMFILE, "log812", 812, 1024)
            .expect("EMFILE is a limit");
        let text = e.to_string();
        assert!(
            text.starts_with("domain `log812` could not boot: KVM_CREATE_VM failed"),
            "{text}"
        );
        assert!(text.contains("RLIMIT_NOFILE"), "{text}");
        assert!(
            text.contains("the first 812 of the 1024 domains fit"),
            "{text}"
        );
    }

    #[test]
    fn each_limit_is_named_and_anything_else_is_not_a_limit() {
        let named = |r, errno| boot_limit(r, errno, "d", 3, 9).map(|e| e.to_string());
        let has = |r, errno, what: &str| {
            let t = named(r, errno).unwrap_or_else(|| panic!("{r:?} {errno}: no limit"));
            assert!(t.contains(what), "{t}");
            assert!(t.contains("the first 3 of the 9 domains fit"), "{t}");
        };
        has(
            BootResource::Vm,
            libc::ENOMEM,
            "the kernel's memory for KVM",
        );
        has(BootResource::Vm, libc::ENOSPC, "KVM's limit on VMs");
        has(BootResource::Vcpu, libc::ENFILE, "fs.file-max");
        has(BootResource::Vcpu, libc::EMFILE, "RLIMIT_NOFILE");
        has(
            BootResource::MemorySlot,
            libc::ENOSPC,
            "KVM's limit on memory slots",
        );
        has(BootResource::GuestMemory, libc::ENOMEM, "RLIMIT_AS");
        assert!(named(BootResource::Vm, libc::EINVAL).is_none());
        assert!(named(BootResource::MemorySlot, libc::EINVAL).is_none());
        assert!(named(BootResource::Vcpu, libc::EEXIST).is_none());
        assert!(named(BootResource::GuestMemory, libc::EINVAL).is_none());
    }

    #[test]
    fn fitting_counts_in_order_and_stops_at_the_first_that_does_not_fit() {
        assert_eq!(fitting(&[5, 5, 5], 0, 10), 2);
        assert_eq!(fitting(&[5, 5, 5], 0, 4), 0);
        assert_eq!(fitting(&[1, 100, 1], 0, 50), 1);
        assert_eq!(fitting(&[], 0, 0), 0);
    }
}
