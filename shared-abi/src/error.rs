//! Status codes a caller gets back in `RAX` after `Call`.
//!
//! `0` is success; `1..APP_ERROR_BASE` are Ferry's own [`ErrorCode`]s;
//! `APP_ERROR_BASE + n` means the callee returned application status `n`.

use num_enum::{IntoPrimitive, TryFromPrimitive};

/// Added to a callee's own non-zero return status before it reaches the caller.
pub const APP_ERROR_BASE: u64 = 0x1_0000;

/// Ferry's reasons for refusing or failing a call. Stable numbers.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, TryFromPrimitive, IntoPrimitive)]
pub enum ErrorCode {
    /// The capability slot is not in the caller's list.
    BadSlot = 1,
    /// More than [`crate::MAX_ARGS`] descriptors, or more than 6 scalars.
    TooManyArgs = 2,
    /// A descriptor's mode is not IN, OUT or INOUT, or its reserved word is not 0.
    BadMode = 3,
    /// A descriptor names memory outside the caller's data region.
    OutOfRange = 4,
    /// `addr + len` overflows.
    Overflow = 5,
    /// Two OUT/INOUT descriptors overlap.
    OverlappingOutputs = 6,
    /// The objects do not fit the callee's stack budget.
    TooLarge = 7,
    /// `EAX` named no hypercall.
    UnknownHypercall = 8,
    /// The callee faulted; `RDI` = vector, `RSI` = RIP, `RDX` = error code,
    /// `R10` = CR2.
    Fault = 9,
    /// The callee domain has faulted and could not be restarted.
    DomainDead = 10,
    /// The callee's stack pool is empty and its policy is `fail`, or the
    /// only stacks out are held by the calling thread itself (waiting would
    /// deadlock).
    NoStack = 11,
    /// The callee domain faulted and is quarantined or being reset; retry later.
    Restarting = 12,
    /// A hypercall's pointer argument (not a descriptor) is outside the
    /// data region, or the thing it points at is malformed.
    BadPointer = 13,
    /// The call would make the invocation chain deeper than the VMM allows.
    TooDeep = 14,
    /// `Spawn` would exceed the domain's quota of spawned threads.
    QuotaExceeded = 15,
    /// `Spawn` named an entry index the domain does not have.
    NoSuchEntry = 16,
    /// The VMM could not carry out the call for a reason of its own (a
    /// poisoned lock, a server thread that could not start, a KVM failure);
    /// nothing ran in the callee; not the caller's fault.
    Internal = 17,
    /// A boot hypercall (`Hello`, `Ready`) made after the domain booted:
    /// the VMM has no use for it; nothing happened.
    BootOver = 18,
    /// The call's CPU budget ran out (its callee was stopped, quarantined
    /// and restarted), or a wait on the caller's behalf — for a stack under
    /// `block`, a message-mode reply, a domain to finish restarting — passed
    /// its wall-clock limit (then nobody is blamed and nothing was stopped).
    Timeout = 19,
    /// The callee made `Exit`, which only a thread's bottom frame may do:
    /// the callee's frame is gone (its stack and vCPU back in its pool, its
    /// domain still serving) and the caller resumes here to clean up.
    CalleeExited = 20,
    /// A call into a `mapped` stack-mode domain from a frame running on the
    /// thread's window stack, whose stack pointer is not inside that frame's
    /// part of the thread's window slot, or leaves less than
    /// [`crate::layout::MAPPED_MIN_STACK`] below the callee's frame.
    BadStack = 21,
}

impl ErrorCode {
    /// Decode a status word (`None` for anything that is not an `ErrorCode`).
    pub fn from_u64(v: u64) -> Option<Self> {
        u32::try_from(v).ok().and_then(|v| Self::try_from(v).ok())
    }
}

/// A decoded `RAX` after `Call`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallStatus {
    /// The call succeeded.
    Ok,
    /// Ferry refused or failed the call.
    Ferry(ErrorCode),
    /// The callee returned this non-zero application status.
    App(u32),
    /// A status word no version of the ABI produces.
    Unknown(u64),
}

impl CallStatus {
    /// Decode the status word.
    pub fn from_u64(v: u64) -> Self {
        if v == 0 {
            Self::Ok
        } else if let Some(n) = v
            .checked_sub(APP_ERROR_BASE)
            .and_then(|n| u32::try_from(n).ok())
        {
            Self::App(n)
        } else {
            match ErrorCode::from_u64(v) {
                Some(e) => Self::Ferry(e),
                None => Self::Unknown(v),
            }
        }
    }

    /// Encode the status word.
    pub const fn to_u64(self) -> u64 {
        match self {
            Self::Ok => 0,
            Self::Ferry(e) => e as u64,
            Self::App(n) => APP_ERROR_BASE + n as u64,
            Self::Unknown(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        for v in [0u64, 1, 9, 14, APP_ERROR_BASE, APP_ERROR_BASE + 7] {
            assert_eq!(CallStatus::from_u64(v).to_u64(), v);
        }
        assert_eq!(CallStatus::from_u64(99), CallStatus::Unknown(99));
        assert_eq!(
            CallStatus::from_u64(4),
            CallStatus::Ferry(ErrorCode::OutOfRange)
        );
        assert_eq!(CallStatus::from_u64(APP_ERROR_BASE + 3), CallStatus::App(3));
    }

    #[test]
    fn codes_round_trip() {
        for v in 1..=21u64 {
            let e = ErrorCode::from_u64(v).unwrap();
            assert_eq!(u64::from(u32::from(e)), v);
            assert_eq!(CallStatus::from_u64(v), CallStatus::Ferry(e));
        }
        assert_eq!(ErrorCode::from_u64(17), Some(ErrorCode::Internal));
        assert_eq!(ErrorCode::from_u64(18), Some(ErrorCode::BootOver));
        assert_eq!(ErrorCode::from_u64(19), Some(ErrorCode::Timeout));
        assert_eq!(ErrorCode::from_u64(20), Some(ErrorCode::CalleeExited));
        for v in [0u64, 22, u64::from(u32::MAX), 1 << 32 | 1] {
            assert_eq!(ErrorCode::from_u64(v), None);
        }
    }
}

/// Application statuses the guest runtime answers on an entry's behalf.
/// An entry's own statuses are `1..BASE`; these tell a caller that the
/// invocation never reached the entry's code, or that the entry broke the
/// protocol.
pub mod runtime_status {
    /// First status reserved for the runtime; an interface's error codes
    /// must stay below it.
    pub const BASE: u32 = 0xFFF0;
    /// The dispatcher rejected the invocation before running the entry: the
    /// number of objects, a mode, a length, an alignment or a scalar's range
    /// does not match the method's signature (a caller built from another
    /// definition, or one writing raw descriptors).
    pub const MALFORMED: u32 = 0xFFFD;
    /// The entry returned `Err(0)`, which would read as success.
    pub const BAD_ERROR: u32 = 0xFFFE;
    /// The VMM started an entry index the image's table lacks.
    pub const UNKNOWN_ENTRY: u32 = 0xFFFF;
}

/// Pseudo-vectors for faults that are not CPU exceptions, reported in the
/// vector register of a `Fault` answer (CPU vectors are 0..=31).
pub mod pseudo_vector {
    /// The guest's panic handler reported a panic.
    pub const PANIC: u64 = 0x100;
    /// The vCPU shut down (triple fault: the exception handler itself died).
    pub const SHUTDOWN: u64 = 0x101;
    /// An access to guest-physical memory that is not backed (MMIO exit).
    pub const UNBACKED_ACCESS: u64 = 0x102;
    /// KVM could not run the vCPU (internal error, failed entry, unexpected exit).
    pub const VCPU_ERROR: u64 = 0x103;
    /// The domain this frame called into went down during a call of
    /// *another* thread: the frame was unwound, and — fault reports being
    /// private to the thread whose call faulted — RIP, error code and CR2
    /// are 0.
    pub const DOMAIN_DOWN: u64 = 0x104;
    /// The frame ran past its CPU budget and was stopped by the VMM (the
    /// domain is quarantined and restarted; the caller of the call whose
    /// budget ran out gets `Timeout`, not this report).
    pub const BUDGET: u64 = 0x105;
}
