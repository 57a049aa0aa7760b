//! Host-side baselines measured in the same run as Ferry's figures, so the
//! comparisons in the table are made on the same machine at the same time:
//! a pipe ping-pong between two processes, host `memcpy` bandwidth, the
//! cost of the two ways to keep a suspended context across a call back,
//! and a description of the machine.

use super::report::{CallbackCost, Machine};
use super::stats::Stats;
use ferry_engine::clock;
use ferry_engine::kvm::KvmError;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, read, sysconf, write, ForkResult, Pid, SysconfVar};
use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Round trips run before the measured ones (page faults, caches, wake-up paths).
const PIPE_WARMUP: usize = 32;

/// Most vCPUs created to time vCPU creation.
const MAX_VCPU_CREATES: usize = 64;

/// Why a baseline could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// `pipe2` failed (out of descriptors).
    #[error("cannot create a pipe")]
    Pipe(#[source] Errno),
    /// `fork` failed (out of processes or memory).
    #[error("cannot fork the pipe partner process")]
    Fork(#[source] Errno),
    /// Reading or changing the CPU affinity failed.
    #[error("cannot pin the pipe ping-pong to one CPU")]
    Affinity(#[source] Errno),
    /// A read or write on the pipes failed.
    #[error("the pipe ping-pong failed")]
    PingPong(#[source] Errno),
    /// The partner died mid ping-pong (its end of the pipe is closed).
    #[error("the pipe partner process closed its pipe early")]
    PartnerGone,
    /// The partner process did not exit cleanly.
    #[error("the pipe partner process ended abnormally ({0:?})")]
    Partner(WaitStatus),
    /// KVM could not be opened.
    #[error("cannot measure the call-back cost")]
    Kvm(#[from] KvmError),
    /// A KVM ioctl failed.
    #[error("{what} failed")]
    Ioctl {
        /// Which call.
        what: &'static str,
        /// The error.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), BaselineError> {
    pipe2(OFlag::O_CLOEXEC).map_err(BaselineError::Pipe)
}

/// Restores the calling thread's CPU affinity when dropped.
struct AffinityGuard {
    /// The mask before pinning.
    saved: CpuSet,
}

impl AffinityGuard {
    /// Pin the calling thread to the CPU it is on now (CPU 0 if unknown).
    fn pin_here() -> Result<Self, BaselineError> {
        let me = Pid::from_raw(0);
        let saved = sched_getaffinity(me).map_err(BaselineError::Affinity)?;
        let mut one = CpuSet::new();
        one.set(sched_getcpu().unwrap_or(0))
            .map_err(BaselineError::Affinity)?;
        sched_setaffinity(me, &one).map_err(BaselineError::Affinity)?;
        Ok(Self { saved })
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.saved);
    }
}

/// The forked partner: killed and reaped on drop unless [`Partner::wait`] reaped it.
struct Partner {
    /// Its pid.
    pid: Pid,
    /// Whether it has been reaped.
    reaped: bool,
}

impl Partner {
    /// Wait for a clean exit.
    fn wait(mut self) -> Result<(), BaselineError> {
        match self.reap() {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(status) => Err(BaselineError::Partner(status)),
            Err(e) => Err(BaselineError::PingPong(e)),
        }
    }

    /// `waitpid`, retrying on EINTR.
    fn reap(&mut self) -> nix::Result<WaitStatus> {
        let status = loop {
            match waitpid(self.pid, None) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        self.reaped = true;
        status
    }
}

impl Drop for Partner {
    fn drop(&mut self) {
        if !self.reaped {
            // `pid` is our own unreaped child, so it cannot have been reused.
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = self.reap();
        }
    }
}

/// Close every descriptor of this (forked) process but `keep`, so a
/// partner forked at the same moment by another thread never holds our
/// pipe ends (it would hide EOF). No safe wrapper closes descriptors by
/// number, so this is raw `close_range` (Linux 5.9+), else `close` in a loop.
fn close_all_but(keep: [i32; 2]) {
    let (lo, hi) = (keep[0].min(keep[1]), keep[0].max(keep[1]));
    for (first, last) in [(0, lo - 1), (lo + 1, hi - 1), (hi + 1, i32::MAX)] {
        if first > last {
            continue;
        }
        // SAFETY: only called in the freshly forked child, where no Rust
        // object owns these descriptors any more; closing touches no memory.
        unsafe {
            if libc::syscall(
                libc::SYS_close_range,
                first.cast_unsigned(),
                last.cast_unsigned(),
                0,
            ) != 0
            {
                for fd in first..=last.min(4095) {
                    libc::close(fd);
                }
            }
        }
    }
}

/// The partner's work after `fork`: echo each byte from `rd` to `wr` until
/// EOF. Only syscalls (nix's wrappers allocate nothing): the parent is
/// multi-threaded, so nothing here may allocate or take a lock. Returns
/// the exit code.
fn partner_loop(rd: impl AsFd, wr: impl AsFd) -> i32 {
    let mut byte = [0u8];
    loop {
        match read(rd.as_fd(), &mut byte) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return 2,
        }
        loop {
            match write(wr.as_fd(), &byte) {
                Ok(1) => break,
                Err(Errno::EINTR) => continue,
                _ => return 3,
            }
        }
    }
}

/// Write one byte, retrying on EINTR.
fn put_byte(fd: &OwnedFd) -> Result<(), BaselineError> {
    loop {
        match write(fd, &[0x5a]) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(BaselineError::PartnerGone),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(BaselineError::PingPong(e)),
        }
    }
}

/// Read one byte, retrying on EINTR; EOF means the partner died.
fn get_byte(fd: &OwnedFd) -> Result<(), BaselineError> {
    let mut byte = [0u8];
    loop {
        match read(fd.as_fd(), &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(BaselineError::PartnerGone),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(BaselineError::PingPong(e)),
        }
    }
}

/// `n` round trips of a one-byte ping-pong over two pipes between this
/// process and a forked partner, each timed with the host TSC: the cost of
/// the classic IPC alternative to migrating threads. `pinned` puts both
/// processes on the CPU the caller is on (restored afterwards); otherwise
/// the scheduler places them. Returns TSC cycles per round trip.
pub fn pipe_round_trips(n: usize, pinned: bool) -> Result<Vec<u64>, BaselineError> {
    // Dropped last: restores the caller's affinity after the partner is gone.
    let _affinity = if pinned {
        Some(AffinityGuard::pin_here()?)
    } else {
        None
    };
    let (to_partner_r, to_partner_w) = pipe()?;
    let (from_partner_r, from_partner_w) = pipe()?;
    let mut samples = Vec::with_capacity(n);

    // SAFETY: the child runs only `close_all_but`, `partner_loop` and
    // `_exit` (syscalls, no allocation or locks), as a multi-threaded
    // parent requires.
    let pid = match unsafe { fork() }.map_err(BaselineError::Fork)? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            close_all_but([to_partner_r.as_raw_fd(), from_partner_w.as_raw_fd()]);
            let code = partner_loop(&to_partner_r, &from_partner_w);
            // SAFETY: ends the child without running any Rust code (no
            // destructors, no atexit handlers of the parent's libraries).
            unsafe { libc::_exit(code) }
        }
    };
    let partner = Partner { pid, reaped: false };
    drop(to_partner_r);
    drop(from_partner_w);

    for i in 0..PIPE_WARMUP + n {
        let t0 = clock::now();
        put_byte(&to_partner_w)?;
        get_byte(&from_partner_r)?;
        let t1 = clock::now();
        if i >= PIPE_WARMUP {
            samples.push(t1.saturating_sub(t0).max(1));
        }
    }
    // EOF tells the partner to exit.
    drop(to_partner_w);
    partner.wait()?;
    Ok(samples)
}

/// Host `memcpy` bandwidth in bytes per second for copies of `bytes`
/// between two separate, pre-faulted heap buffers: the median over `reps`
/// timed batches. The yardstick for Ferry's copies between guests.
pub fn memcpy_bandwidth(bytes: usize, reps: usize) -> f64 {
    let bytes = bytes.max(1);
    // Filled with non-zero bytes, so every page is faulted in before timing.
    let src = vec![0xa5u8; bytes];
    let mut dst = vec![0x5au8; bytes];
    // Small copies are batched so one timing is well above the clock's resolution.
    let batch = ((1usize << 20) / bytes).clamp(1, 4096);
    dst.copy_from_slice(black_box(&src));
    let mut per_copy: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                black_box(&mut dst).copy_from_slice(black_box(&src));
            }
            black_box(&dst);
            t.elapsed() / u32::try_from(batch).unwrap_or(u32::MAX)
        })
        .collect();
    per_copy.sort_unstable();
    let median = per_copy
        .get(per_copy.len() / 2)
        .copied()
        .unwrap_or_default();
    let secs = median.as_secs_f64().max(1e-9);
    bytes as f64 / secs
}

/// Map a kvm-ioctls error to a [`BaselineError`] naming the call.
fn ioctl(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> BaselineError {
    move |source| BaselineError::Ioctl { what, source }
}

/// The two ways to keep a suspended frame's context when a thread calls
/// back into a domain it is already in (A→B→A), measured on this host:
/// save+restore through six vCPU ioctls on every call back (p50 of
/// `samples`), or a vCPU per (thread, domain, depth), created once (p50 of
/// up to 64 creations).
pub fn callback_cost(samples: usize) -> Result<CallbackCost, BaselineError> {
    let kvm = ferry_engine::kvm::open()?;
    let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
    let vcpu = vm.create_vcpu(0).map_err(ioctl("KVM_CREATE_VCPU"))?;

    let mut save_restore = Vec::with_capacity(samples.max(1));
    for _ in 0..samples.max(1) {
        let t0 = clock::now();
        let regs = vcpu.get_regs().map_err(ioctl("KVM_GET_REGS"))?;
        let sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
        let fpu = vcpu.get_fpu().map_err(ioctl("KVM_GET_FPU"))?;
        vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))?;
        vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
        vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))?;
        save_restore.push(clock::now().saturating_sub(t0));
    }

    let creates = samples.clamp(1, MAX_VCPU_CREATES);
    let mut create = Vec::with_capacity(creates);
    let mut keep = Vec::with_capacity(creates);
    for id in 1..=creates as u64 {
        let t0 = clock::now();
        let v = vm.create_vcpu(id).map_err(ioctl("KVM_CREATE_VCPU"))?;
        create.push(clock::now().saturating_sub(t0));
        keep.push(v);
    }
    drop(keep);

    let p50 = |s: &[u64]| Stats::from_cycles(s).map_or(0, |s| s.p50);
    Ok(CallbackCost {
        save_restore_p50: p50(&save_restore),
        vcpu_create_p50: p50(&create),
    })
}

/// The value after `key` and a colon on the first matching line of
/// /proc/cpuinfo-style text.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

/// The KVM module loaded, from /sys/module (PVM first: it changes what
/// the figures mean).
fn kvm_flavour(sys_module: &Path) -> String {
    ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| sys_module.join(m).exists())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if sys_module.join("kvm").exists() {
                "kvm".to_string()
            } else {
                "unknown".to_string()
            }
        })
}

/// Describe this machine for the report header; `tsc_khz` is the guest TSC
/// rate the caller measured or read.
pub fn machine(tsc_khz: u32) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".to_string());
    let cpus = sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    Machine {
        cpu,
        cpus,
        kernel,
        kvm: kvm_flavour(Path::new("/sys/module")),
        tsc_khz,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails with one clear sentence where KVM is missing: these machines have it.
    fn require_kvm() {
        assert!(
            Path::new("/dev/kvm").exists(),
            "/dev/kvm is missing: this test needs KVM, which every Ferry machine must have"
        );
    }

    #[test]
    fn pipe_pinned_gives_positive_samples() {
        let s = pipe_round_trips(200, true).unwrap();
        assert_eq!(s.len(), 200);
        assert!(s.iter().all(|&c| c > 0));
    }

    #[test]
    fn pipe_unpinned_gives_positive_samples() {
        let s = pipe_round_trips(200, false).unwrap();
        assert_eq!(s.len(), 200);
        assert!(s.iter().all(|&c| c > 0));
    }

    #[test]
    fn pinning_is_undone() {
        let mask = || sched_getaffinity(Pid::from_raw(0)).unwrap();
        let before = mask();
        pipe_round_trips(10, true).unwrap();
        assert_eq!(mask(), before);
    }

    #[test]
    fn memcpy_bandwidth_is_positive() {
        for bytes in [8, 4096, 1 << 20] {
            let bw = memcpy_bandwidth(bytes, 5);
            assert!(bw.is_finite() && bw > 0.0, "{bytes}: {bw}");
        }
    }

    #[test]
    fn callback_cost_is_measured() {
        require_kvm();
        let c = callback_cost(50).unwrap();
        assert!(c.save_restore_p50 > 0 && c.vcpu_create_p50 > 0, "{c:?}");
    }

    #[test]
    fn machine_is_described() {
        let m = machine(2_600_000);
        assert!(m.cpus >= 1);
        assert!(!m.cpu.is_empty() && !m.kernel.is_empty() && !m.kvm.is_empty());
        assert_eq!(m.tsc_khz, 2_600_000);
        assert_eq!(
            field("model name\t: Foo CPU\nflags : x", "model name").as_deref(),
            Some("Foo CPU")
        );
    }
}
