//! Seccomp for the host threads that run guest code, as Firecracker filters
//! its vCPU threads: a thread that runs `KVM_RUN` for a hostile guest may
//! make only the system calls that work needs ([`rules::ALLOWED`]), with
//! `ioctl` limited to the KVM requests it uses. Anything else ends the
//! process with a line naming the thread and the call ([`sigsys`]), except
//! `openat`, which fails with `EACCES` ([`rules::REFUSED`]).
//!
//! Filters are per thread (no TSYNC): the engine confines the threads it
//! starts to run guest code (manifest and spawned threads, message-mode
//! servers, the restarter) as their first act; the main thread, the
//! watchdog, a test harness's threads and any thread calling
//! `System::run_thread` stay unfiltered unless they call
//! [`confine_current_thread`] themselves. On by default; a process turns
//! it off with [`set_enabled`] (`ferry --no-seccomp`).

pub mod rules;
pub mod sigsys;

pub use sigsys::EXIT_CODE;

use seccompiler::BpfProgram;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Whether threads running guest code are confined (process-wide).
static ENABLED: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// This thread installed the filters already.
    static CONFINED: Cell<bool> = const { Cell::new(false) };
}

/// Why a thread could not be confined.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Build(&'static rules::BuildError),
    #[error(transparent)]
    Handler(&'static sigsys::HandlerError),
    #[error(
        "cannot install the seccomp filter on this thread (run with --no-seccomp to go without)"
    )]
    Install(#[source] seccompiler::Error),
}

/// Turn confinement on or off for every thread confined from now on (a
/// thread already confined stays so). For `ferry --no-seccomp` and for
/// programs that run where seccomp is missing.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether threads that run guest code are confined.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The two programs, built once per process.
fn programs() -> Result<&'static [BpfProgram; 2], SandboxError> {
    static PROGRAMS: OnceLock<Result<[BpfProgram; 2], rules::BuildError>> = OnceLock::new();
    PROGRAMS
        .get_or_init(rules::build)
        .as_ref()
        .map_err(SandboxError::Build)
}

/// Check, before any thread needs it, that the filters build and the
/// handler installs (a system refuses to boot otherwise, with
/// confinement on).
pub fn prepare() -> Result<(), SandboxError> {
    if !enabled() {
        return Ok(());
    }
    programs()?;
    sigsys::install().map_err(SandboxError::Handler)?;
    Ok(())
}

/// Confine the calling thread to the system calls guest-running work needs,
/// for the rest of its life. Returns whether it is confined: false if
/// confinement is off. A thread confined already returns true at once.
/// Callers run guest code on this thread only after `Ok`.
pub fn confine_current_thread() -> Result<bool, SandboxError> {
    if !enabled() {
        return Ok(false);
    }
    if CONFINED.try_with(Cell::get).unwrap_or(false) {
        return Ok(true);
    }
    let programs = programs()?;
    sigsys::install().map_err(SandboxError::Handler)?;
    sigsys::remember_name();
    // The refusals first: installing a filter is itself a system call
    // (prctl, seccomp) that the allowlist would trap.
    for p in programs.iter().rev() {
        seccompiler::apply_filter(p).map_err(SandboxError::Install)?;
    }
    let _ = CONFINED.try_with(|c| c.set(true));
    Ok(true)
}

/// Whether the calling thread is confined.
pub fn is_confined() -> bool {
    CONFINED.try_with(Cell::get).unwrap_or(false)
}
