//! Host-side baselines measured in the same run as Ferry's figures, so the
//! comparisons in the table are made on the same machine at the same time:
//! a pipe ping-pong between two processes, host `memcpy` bandwidth, the
//! cost of the two ways to keep a suspended context across a call back,
//! and a description of the machine.

use super::report::{CallbackCost, Machine};
use super::stats::Stats;
use ferry_engine::clock;
use ferry_engine::kvm::KvmError;
use std::hint::black_box;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Round trips run before the measured ones (page faults, caches, wake-up paths).
const PIPE_WARMUP: usize = 32;

/// Most vCPUs created to time vCPU creation.
const MAX_VCPU_CREATES: usize = 64;

/// Why a baseline could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// `pipe2` failed.
    #[error("cannot create a pipe")]
    Pipe(#[source] io::Error),
    /// `fork` failed.
    #[error("cannot fork the pipe partner process")]
    Fork(#[source] io::Error),
    /// Reading or changing the CPU affinity failed.
    #[error("cannot pin the pipe ping-pong to one CPU")]
    Affinity(#[source] io::Error),
    /// A read or write on the pipes failed.
    #[error("the pipe ping-pong failed")]
    PingPong(#[source] io::Error),
    /// The partner process did not exit cleanly.
    #[error("the pipe partner process ended abnormally (wait status {0:#x})")]
    Partner(i32),
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

/// The last OS error, as an `io::Error`.
fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), BaselineError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(BaselineError::Pipe(last_error()));
    }
    let [r, w] = fds;
    // SAFETY: `pipe2` succeeded, so both are open descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) })
}

/// Restores the calling thread's CPU affinity when dropped.
struct AffinityGuard {
    /// The mask before pinning.
    saved: libc::cpu_set_t,
}

impl AffinityGuard {
    /// Pin the calling thread to the CPU it is on now (CPU 0 if unknown).
    fn pin_here() -> Result<Self, BaselineError> {
        // SAFETY: an all-zero `cpu_set_t` is a valid (empty) set.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a writable `cpu_set_t` of the size passed.
        let rc = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved)
        };
        if rc != 0 {
            return Err(BaselineError::Affinity(last_error()));
        }
        // SAFETY: no arguments, no memory touched.
        let here = unsafe { libc::sched_getcpu() };
        let cpu = usize::try_from(here).unwrap_or(0);
        // SAFETY: as above, an all-zero set is valid.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `CPU_SET` only writes inside `one` (it bounds-checks `cpu`).
        unsafe { libc::CPU_SET(cpu, &mut one) };
        // SAFETY: `one` is a valid `cpu_set_t` of the size passed.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) };
        if rc != 0 {
            return Err(BaselineError::Affinity(last_error()));
        }
        Ok(Self { saved })
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        // SAFETY: `saved` is the valid mask read in `pin_here`.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.saved) };
    }
}

/// The forked partner: killed and reaped on drop unless [`Partner::wait`] reaped it.
struct Partner {
    /// Its pid.
    pid: libc::pid_t,
    /// Whether it has been reaped.
    reaped: bool,
}

impl Partner {
    /// Wait for a clean exit.
    fn wait(mut self) -> Result<(), BaselineError> {
        let status = self.reap();
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(BaselineError::Partner(status))
        }
    }

    /// `waitpid`, retrying on EINTR; returns the wait status.
    fn reap(&mut self) -> libc::c_int {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a writable int; `pid` is our own child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid || last_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        self.reaped = true;
        status
    }
}

impl Drop for Partner {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: `pid` is our own unreaped child, so the pid cannot have
            // been reused; SIGKILL and waitpid touch no memory of ours.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.reap();
        }
    }
}

/// The partner's whole life after `fork`: echo each byte from `rd` to `wr`
/// until EOF, then `_exit`. Only raw syscalls: the parent is multi-threaded,
/// so nothing here may allocate or take a lock.
///
/// # Safety
/// Call only in a freshly forked child; `rd`/`wr` must be open descriptors.
unsafe fn partner_loop(rd: libc::c_int, wr: libc::c_int) -> ! {
    // Close every other descriptor, so a partner forked at the same moment
    // by another thread never holds our pipe ends (it would hide EOF).
    let (lo, hi) = if rd < wr { (rd, wr) } else { (wr, rd) };
    for (first, last) in [(0, lo - 1), (lo + 1, hi - 1), (hi + 1, libc::c_int::MAX)] {
        if first <= last {
            // SAFETY: close_range only closes descriptors of this process.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    first as libc::c_uint,
                    last as libc::c_uint,
                    0,
                )
            };
            if rc != 0 {
                for fd in first..=last.min(4095) {
                    // SAFETY: closing a descriptor (or EBADF) touches no memory.
                    unsafe { libc::close(fd) };
                }
            }
        }
    }
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into `byte`.
        let n = unsafe { libc::read(rd, (&mut byte as *mut u8).cast(), 1) };
        if n == 0 {
            // SAFETY: ends this process without running any Rust code.
            unsafe { libc::_exit(0) };
        }
        if n < 0 {
            // SAFETY: reads this thread's errno.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            // SAFETY: as above.
            unsafe { libc::_exit(2) };
        }
        loop {
            // SAFETY: writes the one byte at `byte`.
            let w = unsafe { libc::write(wr, (&byte as *const u8).cast(), 1) };
            if w == 1 {
                break;
            }
            // SAFETY: reads this thread's errno.
            if w < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            // SAFETY: ends this process without running any Rust code.
            unsafe { libc::_exit(3) };
        }
    }
}

/// Write one byte, retrying on EINTR.
fn put_byte(fd: &OwnedFd) -> io::Result<()> {
    let byte = 0x5au8;
    loop {
        // SAFETY: writes the one byte at `byte` to an open descriptor.
        let w = unsafe { libc::write(fd.as_raw_fd(), (&byte as *const u8).cast(), 1) };
        if w == 1 {
            return Ok(());
        }
        let e = last_error();
        if w < 0 && e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Err(e);
    }
}

/// Read one byte, retrying on EINTR; EOF is an error (the partner died).
fn get_byte(fd: &OwnedFd) -> io::Result<()> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into `byte` from an open descriptor.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
        match n {
            1 => return Ok(()),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => {
                let e = last_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
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

    // SAFETY: the child runs only `partner_loop` (raw syscalls, no
    // allocation or locks), as a multi-threaded parent requires.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(BaselineError::Fork(last_error()));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; both descriptors are open.
        unsafe { partner_loop(to_partner_r.as_raw_fd(), from_partner_w.as_raw_fd()) }
    }
    let partner = Partner { pid, reaped: false };
    drop(to_partner_r);
    drop(from_partner_w);

    for i in 0..PIPE_WARMUP + n {
        let t0 = clock::now();
        put_byte(&to_partner_w).map_err(BaselineError::PingPong)?;
        get_byte(&from_partner_r).map_err(BaselineError::PingPong)?;
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
    // SAFETY: sysconf reads a system value and touches no memory of ours.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpus = usize::try_from(online)
        .ok()
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
        fn mask() -> libc::cpu_set_t {
            // SAFETY: zeroed set is valid; the kernel fills it.
            let mut m: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: `m` is a writable set of the size passed.
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut m) };
            m
        }
        // SAFETY: plain comparison of two initialised sets.
        let count = |m: &libc::cpu_set_t| unsafe { libc::CPU_COUNT(m) };
        let before = mask();
        pipe_round_trips(10, true).unwrap();
        assert_eq!(count(&mask()), count(&before));
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
