//! The host's limits a system of many domains runs into, checked before
//! anything is created: a limit reached halfway through a boot would leave
//! a user with a cryptic `EMFILE` from deep inside KVM.
//!
//! File descriptors: every VM takes one and every vCPU one (vCPUs are
//! created lazily, up to a domain's capacity, while the system runs), so a
//! system needs up to `Σ (1 + vCPU capacity)` beyond what is open. The soft
//! limit is raised as far as the hard limit allows; if even the hard limit
//! is too low, the boot is refused with the number of domains that fit.

/// Descriptors kept free for everything else the VMM opens (logs, the
/// watchdog, images read from files, `/proc` reads).
pub const FD_HEADROOM: u64 = 64;

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
        let mut used = open + FD_HEADROOM;
        let fit = per_domain
            .iter()
            .take_while(|d| {
                used = used.saturating_add(**d);
                used <= lim.rlim_max
            })
            .count();
        return Err(HostLimitError::TooFewFds {
            needed,
            domains: per_domain.len(),
            open,
            hard: lim.rlim_max,
            fit,
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
