//! The allowlist of a thread that runs guest code: every system call it may
//! make, the arguments it may make it with, and why. docs/RELIABILITY.md
//! ("Seccomp") carries the same table for readers; this one is what the
//! kernel enforces.

use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// `_IOC(dir, 0xAE, nr, size)`: a KVM ioctl request number as the kernel
/// headers compute it (`include/uapi/asm-generic/ioctl.h`).
const fn kvm_ioc(dir: u64, nr: u64, size: usize) -> u64 {
    const KVMIO: u64 = 0xAE;
    (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const NONE: u64 = 0;
const WRITE: u64 = 1;
const READ: u64 = 2;

/// `KVM_CHECK_EXTENSION` (a vCPU's creation asks the VM for `KVM_CAP_XSAVE2`).
pub const KVM_CHECK_EXTENSION: u64 = kvm_ioc(NONE, 0x03, 0);
/// `KVM_CREATE_VCPU`: a domain's vCPUs are created lazily, on the first
/// frame that finds none idle.
pub const KVM_CREATE_VCPU: u64 = kvm_ioc(NONE, 0x41, 0);
/// `KVM_RUN`: the one call of the hot path.
pub const KVM_RUN: u64 = kvm_ioc(NONE, 0x80, 0);
/// `KVM_GET_REGS`: general registers after a shutdown (fault reports).
pub const KVM_GET_REGS: u64 = kvm_ioc(READ, 0x81, size_of::<kvm_bindings::kvm_regs>());
/// `KVM_SET_REGS`: a vCPU's reset (creation, after a fault, after a restart).
pub const KVM_SET_REGS: u64 = kvm_ioc(WRITE, 0x82, size_of::<kvm_bindings::kvm_regs>());
/// `KVM_GET_SREGS`: a reset reads the special registers it rewrites; a
/// fault report reads CR2.
pub const KVM_GET_SREGS: u64 = kvm_ioc(READ, 0x83, size_of::<kvm_bindings::kvm_sregs>());
/// `KVM_SET_SREGS`: a reset reloads segments, TR, paging and EFER.
pub const KVM_SET_SREGS: u64 = kvm_ioc(WRITE, 0x84, size_of::<kvm_bindings::kvm_sregs>());
/// `KVM_SET_CPUID2`: a vCPU's creation gives it the host's CPUID table.
pub const KVM_SET_CPUID2: u64 = kvm_ioc(WRITE, 0x90, size_of::<kvm_bindings::kvm_cpuid2>());
/// `KVM_SET_XSAVE`: a reset puts x87/SSE/AVX/AVX-512 state back to init.
pub const KVM_SET_XSAVE: u64 = kvm_ioc(WRITE, 0xa5, size_of::<kvm_bindings::kvm_xsave>());

/// `KVM_SET_USER_MEMORY_REGION`: a lease adds a memory slot to the
/// callee's VM at the call and deletes it when the frame is popped; mapped
/// stack mode adds and deletes the memory slot of a thread's window stack in
/// the domains it enters (pre-mapped: at its start and end; map-on-call: at
/// a call and its return).
pub const KVM_SET_USER_MEMORY_REGION: u64 = kvm_ioc(
    WRITE,
    0x46,
    size_of::<kvm_bindings::kvm_userspace_memory_region>(),
);

/// Which calls of a system call are allowed.
#[derive(Clone, Copy, Debug)]
pub enum Args {
    /// Any arguments.
    Any,
    /// Argument `index` (its low 32 bits) is one of the values.
    OneOf(u8, &'static [u64]),
    /// Argument `index` has none of the bits of the mask set.
    NoneOf(u8, u64),
}

/// One allowed system call, with the reason it is allowed.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    /// Its name (as in `man 2`).
    pub name: &'static str,
    /// Its number on x86-64.
    pub nr: i64,
    /// Which calls are allowed.
    pub args: Args,
    /// Why a thread running guest code makes it.
    pub why: &'static str,
}

const fn allow(name: &'static str, nr: i64, args: Args, why: &'static str) -> Allowed {
    Allowed {
        name,
        nr,
        args,
        why,
    }
}

/// The KVM requests a thread running guest code may make.
pub const KVM_REQUESTS: &[u64] = &[
    KVM_RUN,
    KVM_CREATE_VCPU,
    KVM_CHECK_EXTENSION,
    KVM_SET_CPUID2,
    KVM_GET_REGS,
    KVM_SET_REGS,
    KVM_GET_SREGS,
    KVM_SET_SREGS,
    KVM_SET_XSAVE,
    KVM_SET_USER_MEMORY_REGION,
];

/// The allowlist. Anything else ends the process (see `sigsys.rs`), except
/// the calls of [`REFUSED`].
pub const ALLOWED: &[Allowed] = &[
    allow(
        "ioctl",
        libc::SYS_ioctl,
        Args::OneOf(1, KVM_REQUESTS),
        "KVM_RUN (hot path); KVM_CREATE_VCPU, KVM_CHECK_EXTENSION (XSAVE2 size), KVM_SET_CPUID2 \
         for a vCPU created lazily; KVM_GET/SET_SREGS, KVM_SET_REGS, KVM_SET_XSAVE for the reset \
         of a vCPU (creation, after a fault, after a restart); KVM_GET_SREGS/KVM_GET_REGS for a \
         fault report (CR2, registers after a shutdown); KVM_SET_USER_MEMORY_REGION to add and \
         delete a lease's memory slot in the callee's VM (objects lent with ARG_LEND) and the \
         memory slot of a thread's window stack (mapped stack mode)",
    ),
    allow(
        "mmap",
        libc::SYS_mmap,
        Args::NoneOf(2, libc::PROT_EXEC as u64),
        "the kvm_run page of a vCPU created lazily; a window stack's memory on its first use; \
         the allocator's arenas and large blocks (observers allocate); never executable",
    ),
    allow(
        "mprotect",
        libc::SYS_mprotect,
        Args::NoneOf(2, libc::PROT_EXEC as u64),
        "the allocator grows a thread arena in place; never executable",
    ),
    allow(
        "munmap",
        libc::SYS_munmap,
        Args::Any,
        "the allocator frees large blocks; a vCPU destroyed after a failed reset; the thread's \
         signal stack when it ends",
    ),
    allow(
        "madvise",
        libc::SYS_madvise,
        Args::OneOf(2, &[libc::MADV_DONTNEED as u64]),
        "a domain reset zeroes guest memory (MADV_DONTNEED); a thread's window stack is zeroed \
         when it ends; the allocator trims arenas; the C library releases an ending thread's \
         stack",
    ),
    allow(
        "mincore",
        libc::SYS_mincore,
        Args::Any,
        "a domain reset asks which guest pages are resident, to zero its boot pages in place \
         (reads page tables only)",
    ),
    allow(
        "brk",
        libc::SYS_brk,
        Args::Any,
        "the allocator's main arena, used by a thread when no other arena is free",
    ),
    allow(
        "futex",
        libc::SYS_futex,
        Args::Any,
        "locks, condition variables and channels: stack waits, hand-offs to servers and their \
         replies, the restarter's queue, observers' locks",
    ),
    allow(
        "sched_yield",
        libc::SYS_sched_yield,
        Args::Any,
        "spinning waits in channels and the stack pool",
    ),
    allow(
        "clock_gettime",
        libc::SYS_clock_gettime,
        Args::Any,
        "wait limits and time accounting read the monotonic clock; the vDSO answers on this \
         host, but falls back to the system call where the clock source has no vDSO mode",
    ),
    allow(
        "clock_nanosleep",
        libc::SYS_clock_nanosleep,
        Args::Any,
        "a thread that drives guest work (the soak's workers, a fault injector) polls, with \
         short sleeps, for a domain's reset to finish; sleeping reaches nothing",
    ),
    allow(
        "nanosleep",
        libc::SYS_nanosleep,
        Args::Any,
        "as clock_nanosleep, for a libc that sleeps with the older call",
    ),
    allow(
        "write",
        libc::SYS_write,
        Args::OneOf(0, &[1, 2]),
        "logging (guest text, refusals, faults, restarts) to stderr; stdout for completeness",
    ),
    allow(
        "rt_sigreturn",
        libc::SYS_rt_sigreturn,
        Args::Any,
        "return from the budget kick's SIGRTMIN handler, which lands on these threads",
    ),
    allow(
        "rt_sigprocmask",
        libc::SYS_rt_sigprocmask,
        Args::Any,
        "the C library masks signals while a thread ends",
    ),
    allow(
        "sigaltstack",
        libc::SYS_sigaltstack,
        Args::Any,
        "Rust's runtime removes the thread's signal stack when it ends",
    ),
    allow(
        "getrandom",
        libc::SYS_getrandom,
        Args::Any,
        "the first hash map a thread makes seeds its hasher (observers keep maps)",
    ),
    allow(
        "close",
        libc::SYS_close,
        Args::Any,
        "a vCPU destroyed after a failed reset closes its file",
    ),
    allow(
        "openat",
        libc::SYS_openat,
        Args::Any,
        "never succeeds: refused with EACCES by the second filter (see REFUSED)",
    ),
    allow("exit", libc::SYS_exit, Args::Any, "the thread ends"),
    allow(
        "exit_group",
        libc::SYS_exit_group,
        Args::Any,
        "the SIGSYS handler ends the process; a process exit",
    ),
];

/// System calls that fail with `EACCES` instead of ending the process:
/// `openat`, because the C library opens `/proc/sys/vm/overcommit_memory`
/// the first time any thread arena shrinks, and treats a failure as "no
/// overcommit policy"; a panic's backtrace also tries to open files.
pub const REFUSED: &[(&str, i64)] = &[("openat", libc::SYS_openat)];

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp filter")]
pub struct BuildError(#[source] pub seccompiler::Error);

fn rules_for(args: Args) -> Result<Vec<SeccompRule>, BackendError> {
    let dword = SeccompCmpArgLen::Dword;
    match args {
        Args::Any => Ok(Vec::new()),
        Args::OneOf(index, values) => values
            .iter()
            .map(|v| {
                SeccompRule::new(vec![SeccompCondition::new(
                    index,
                    dword.clone(),
                    SeccompCmpOp::Eq,
                    *v,
                )?])
            })
            .collect(),
        Args::NoneOf(index, mask) => Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
            index,
            dword,
            SeccompCmpOp::MaskedEq(mask),
            0,
        )?])?]),
    }
}

/// The two programs a confined thread installs: the allowlist (anything
/// else traps) and the refusals (`EACCES`, anything else allowed). The
/// kernel runs both and the stricter answer wins, so a refused call gets
/// `EACCES` although the allowlist lets it through.
pub fn build() -> Result<[BpfProgram; 2], BuildError> {
    let arch = TargetArch::x86_64;
    let mut allowed = BTreeMap::new();
    for a in ALLOWED {
        allowed.insert(a.nr, rules_for(a.args).map_err(|e| BuildError(e.into()))?);
    }
    let allowlist = SeccompFilter::new(allowed, SeccompAction::Trap, SeccompAction::Allow, arch)
        .map_err(|e| BuildError(e.into()))?;
    let refused = REFUSED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let refusals = SeccompFilter::new(
        refused,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .map_err(|e| BuildError(e.into()))?;
    Ok([
        allowlist
            .try_into()
            .map_err(|e: BackendError| BuildError(e.into()))?,
        refusals
            .try_into()
            .map_err(|e: BackendError| BuildError(e.into()))?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers match the values in the kernel's `linux/kvm.h`
    /// for x86-64 (as printed by a C program including it).
    #[test]
    fn kvm_request_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_CHECK_EXTENSION, 0xAE03);
        assert_eq!(KVM_CREATE_VCPU, 0xAE41);
        assert_eq!(KVM_RUN, 0xAE80);
        assert_eq!(KVM_GET_REGS, 0x8090_AE81);
        assert_eq!(KVM_SET_REGS, 0x4090_AE82);
        assert_eq!(KVM_GET_SREGS, 0x8138_AE83);
        assert_eq!(KVM_SET_SREGS, 0x4138_AE84);
        assert_eq!(KVM_SET_CPUID2, 0x4008_AE90);
        assert_eq!(KVM_SET_XSAVE, 0x5000_AEA5);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_AE46);
    }

    #[test]
    fn the_filters_build_and_list_each_call_once() {
        let [allowlist, refusals] = build().unwrap();
        assert!(!allowlist.is_empty() && !refusals.is_empty());
        let mut nrs: Vec<i64> = ALLOWED.iter().map(|a| a.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), ALLOWED.len(), "a system call listed twice");
        for a in ALLOWED {
            assert!(!a.why.is_empty(), "{} has no reason", a.name);
        }
    }
}
