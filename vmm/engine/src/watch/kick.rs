//! Kicking a host thread out of `KVM_RUN`, as Firecracker kicks its vCPUs:
//! a real-time signal sent with `pthread_kill`, whose handler sets
//! `immediate_exit` on the `kvm_run` page of the vCPU the thread runs.
//!
//! The signal alone makes a running `KVM_RUN` return `EINTR`; the handler's
//! `immediate_exit` closes the race of a signal landing just before the
//! ioctl. A thread publishes which `kvm_run` it is about to run through a
//! thread-local pointer ([`RunSlot`]), checks whether it was already told to
//! stop *after* publishing it, and clears both the pointer and
//! `immediate_exit` after every run, so no stale kick reaches the next user
//! of a vCPU (vCPUs move between host threads). A kick that lands while the
//! thread is in VMM code finds no pointer and does nothing: the flag the
//! kicker set before signalling is what the thread acts on.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;

thread_local! {
    /// The `immediate_exit` byte of the vCPU this thread is running, or null.
    /// Const-initialised, no destructor: safe to touch from a signal handler.
    static TARGET: AtomicPtr<u8> = const { AtomicPtr::new(ptr::null_mut()) };
}

/// Kicks sent (process-wide), for tests and logs.
static SENT: AtomicU64 = AtomicU64::new(0);

/// Why the kick signal could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the kick signal handler")]
pub struct KickError(#[source] std::io::Error);

/// The signal used for kicks: the first real-time signal the C library
/// leaves to programs.
pub fn signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {
    // Async-signal-safe: one TLS load (const-initialised, no destructor),
    // one volatile byte store into a live kvm_run page.
    let _ = TARGET.try_with(|t| {
        let p = t.load(Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: a non-null pointer is published only by `RunSlot::arm`
            // for the duration of one run of a vCPU this thread owns; the
            // handler runs on that same thread, so the vCPU (and its kvm_run
            // mapping) cannot be dropped underneath it.
            unsafe { p.write_volatile(1) };
        }
    });
}

/// Install the handler once per process (later calls return the first result).
pub fn install() -> Result<(), &'static KickError> {
    static INSTALLED: OnceLock<Result<(), KickError>> = OnceLock::new();
    match INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; we then set the handler. `on_kick` is async-signal-safe.
        // No SA_RESTART: an interrupted KVM_RUN must return EINTR.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(signal(), &sa, ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(KickError(std::io::Error::last_os_error()))
        }
    }) {
        Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Send the kick to `thread`. The caller guarantees `thread` is alive (the
/// watchdog kicks only threads whose registration it holds).
pub fn kick(thread: libc::pthread_t) -> bool {
    SENT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the caller guarantees the thread has not exited; the signal's
    // handler is installed before any meter is registered.
    unsafe { libc::pthread_kill(thread, signal()) == 0 }
}

/// Kicks sent so far (process-wide).
pub fn sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// This thread's "which vCPU am I running" slot, used around one run.
pub struct RunSlot;

impl RunSlot {
    /// Publish `immediate_exit` (a byte of the `kvm_run` page of the vCPU
    /// about to run on this thread) as the kick's target.
    pub fn arm(immediate_exit: *mut u8) {
        let _ = TARGET.try_with(|t| t.store(immediate_exit, Ordering::SeqCst));
    }

    /// No vCPU runs on this thread any more: kicks find nothing to set.
    pub fn disarm() {
        let _ = TARGET.try_with(|t| t.store(ptr::null_mut(), Ordering::SeqCst));
    }
}
