//! Hypercall numbers and the ports they travel on.
//!
//! `vmcall` does not reach a userspace VMM on KVM, so a hypercall is one
//! `out` instruction: the guest writes the hypercall number (`EAX`) to
//! [`HYPERCALL_PORT`]; arguments are in `RDI, RSI, RDX, R10, R8, R9`; the VMM
//! answers in `RAX` (status) and `RDI, RSI, RDX, R10` (values). The VMM reads
//! and writes those registers through KVM sync regs, so a hypercall costs
//! exactly one exit.

use num_enum::{IntoPrimitive, TryFromPrimitive};

/// The only port a guest at CPL3 may write (its TSS I/O bitmap grants it
/// alone). An 8-bit port so the guest can use the immediate form of `out`.
pub const HYPERCALL_PORT: u16 = 0xE0;

/// Exception stubs (CPL0, written by the VMM) report vector `v` by writing to
/// port `FAULT_PORT_BASE + v`. The guest's I/O bitmap does not grant these
/// ports, so CPL3 code cannot forge a fault report.
pub const FAULT_PORT_BASE: u16 = 0x100;

/// Every hypercall a guest can make. Numbers are stable: new calls get new
/// numbers, old numbers are never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, TryFromPrimitive, IntoPrimitive)]
#[num_enum(error_type(name = UnknownHypercall, constructor = UnknownHypercall))]
pub enum Hypercall {
    /// First words of a booting guest: `RDI` → [`crate::Hello`].
    Hello = 1,
    /// The guest finished its initialisation; the boot stack goes back to the pool.
    Ready = 2,
    /// Log a line: `RDI` = address, `RSI` = length (UTF-8, at most 4 KiB).
    Print = 3,
    /// Migrate into another domain: `RDI` → [`crate::CallRequest`];
    /// `RSI` = the call's CPU budget in microseconds and `RDX` = the
    /// wall-clock limit of any wait on the caller's behalf, in microseconds
    /// (0 = the manifest's default; a larger value is cut to that default,
    /// and a budget to what remains of the caller's own).
    /// Answer: `RAX` = [`crate::CallStatus`] code, `RDI`/`RSI` = results
    /// (`RDI`..`R10` = the report of a `Fault`), `R8` = the callee's
    /// generation as of the answer (it changes when the callee restarted,
    /// losing its state, since an earlier answer).
    Call = 4,
    /// Return from the current entry: `RDI` = status (0 = success, else an
    /// application code), `RSI`/`RDX` = two results.
    Return = 5,
    /// Do nothing and come straight back: the exit floor.
    Nop = 6,
    /// The guest panicked: `RDI` = message address, `RSI` = length. The
    /// domain is stopped like on any other fault.
    Panic = 7,
    /// End the calling thread; `RDI` = exit code. Only the thread's bottom
    /// frame may: from any other frame it ends that frame's call as a fault
    /// would, and the caller gets [`crate::ErrorCode::CalleeExited`].
    Exit = 8,
    /// Start a new thread in the caller's own domain: `RDI` = entry index,
    /// `RSI` = its first scalar. Answer: `RAX` = status, `RDI` = thread id.
    /// Counted against the domain's `max_spawned` quota.
    Spawn = 9,
}

/// The number in `EAX` is not a hypercall this ABI knows (the error of
/// `Hypercall::try_from(u32)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownHypercall(pub u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..64u32 {
            if let Ok(h) = Hypercall::try_from(n) {
                assert_eq!(h as u32, n);
            }
        }
        assert_eq!(Hypercall::try_from(0), Err(UnknownHypercall(0)));
        assert_eq!(Hypercall::try_from(10), Err(UnknownHypercall(10)));
    }
}
