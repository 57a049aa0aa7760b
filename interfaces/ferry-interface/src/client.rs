//! The client side: how a generated stub reaches the VMM and reads its
//! answer.

use crate::server::{InterfaceDecl, MethodDecl};
use crate::types::{AppError, Plain, Reply};
use shared_abi::{runtime_status, ArgDesc, ArgMode, CallRequest, CallStatus, ErrorCode};

/// The slot of a method the manifest did not grant: the stub answers
/// `BadSlot` for it without a hypercall.
pub const NO_SLOT: u32 = u32::MAX;

/// Limits a caller sets on one call, in microseconds: `budget_us` is the
/// CPU time the callee (and whatever it calls) may use, `wait_us` the
/// wall-clock limit of any wait on the caller's behalf (a stack, a
/// message-mode reply, a restart). 0 means the manifest's default; a larger
/// value is cut to that default, and a budget to what remains of the
/// caller's own. Either running out answers `ErrorCode::Timeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU budget of the call in µs (0 = default).
    pub budget_us: u64,
    /// Wall-clock limit of each wait in µs (0 = default).
    pub wait_us: u64,
}

/// How a stub reaches the VMM. The guest runtime implements it with the
/// `Call` hypercall and the capability table the VMM wrote at boot; host
/// tests implement it with a mock that plays the server.
pub trait Transport {
    /// Make the `Call` hypercall: answer `RAX` and `RDI, RSI, RDX, R10, R8`.
    ///
    /// # Safety
    /// Every descriptor of `req.args[..req.nargs]` names memory the caller
    /// lends for the call: readable, and for OUT/INOUT writable, with no
    /// live reference to it but the borrows the stub holds.
    unsafe fn call(&self, req: &CallRequest, limits: Limits) -> (u64, [u64; 5]);

    /// The capability slot that reaches `method` of `interface` in
    /// `domain`, if the manifest granted it and the entry there is that
    /// method (same entry name, interface and method id); looked up once,
    /// when a handle is bound.
    fn slot(&self, domain: &str, interface: &str, method: &MethodDecl) -> Option<u32>;

    /// Whether this image declared `interface` among those it calls: only
    /// then did the VMM check at boot that the servers it reaches were
    /// built from the same definition.
    fn declared(&self, interface: &InterfaceDecl) -> bool;
}

/// Why a handle could not be bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// The manifest grants this domain no method of the interface in the
    /// named domain (or there is no such domain).
    NotGranted,
    /// The image did not declare the interface among those it calls, so
    /// the VMM could not check it at boot (add it to the image's `uses`).
    NotDeclared,
}

/// A typed call's failure: the server's own error, or Ferry's. The two
/// never mix: a timeout, a fault or a restart is never an `App` error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The server answered with one of the interface's errors.
    App(E),
    /// Ferry refused or failed the call, or the answer broke the interface.
    Ferry(Failure),
}

/// Ferry's side of a failed typed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The VMM refused or failed the call (`BadSlot` for an ungranted
    /// method, `Timeout`, `Restarting`, `DomainDead`, `CalleeExited`,
    /// `NoStack`, …). Never `ErrorCode::Fault`: that one is [`Failure::Fault`].
    Call(ErrorCode),
    /// The callee faulted or panicked; registers as the VMM reported them.
    Fault {
        /// CPU exception vector, or a `shared_abi::pseudo_vector`.
        vector: u64,
        /// RIP of the faulting instruction (0 when the report is not ours).
        rip: u64,
        /// The exception's error code.
        error_code: u64,
        /// CR2 (the faulting address of a page fault).
        cr2: u64,
    },
    /// The server's dispatcher rejected the invocation as not matching the
    /// method's signature (object count, mode, length, alignment, scalar
    /// range): client and server disagree about the interface.
    Malformed,
    /// The server has no entry with the index the VMM started.
    UnknownEntry,
    /// The answer is not one the interface defines: an application status
    /// it does not know, results out of range for the declared type, or a
    /// status word no ABI produces.
    BadReply {
        /// `RAX` as the VMM returned it.
        status: u64,
        /// `RDI`, `RSI`.
        results: [u64; 2],
    },
}

/// Decode a `Call` answer into a method's declared result. Generated stubs
/// call this; it is public so hand-written ones decode the same way.
#[inline(always)]
pub fn finish<R: Reply, E: AppError>(status: u64, regs: [u64; 5]) -> Result<R, Error<E>> {
    let results = [regs[0], regs[1]];
    if status == 0 {
        return R::from_words(results).ok_or(Error::Ferry(Failure::BadReply { status, results }));
    }
    Err(match CallStatus::from_u64(status) {
        CallStatus::Ferry(ErrorCode::Fault) => Error::Ferry(Failure::Fault {
            vector: regs[0],
            rip: regs[1],
            error_code: regs[2],
            cr2: regs[3],
        }),
        CallStatus::Ferry(e) => Error::Ferry(Failure::Call(e)),
        CallStatus::App(runtime_status::MALFORMED) => Error::Ferry(Failure::Malformed),
        CallStatus::App(runtime_status::UNKNOWN_ENTRY) => Error::Ferry(Failure::UnknownEntry),
        CallStatus::App(n) => match E::from_code(n) {
            Some(e) if n < runtime_status::BASE => Error::App(e),
            _ => Error::Ferry(Failure::BadReply { status, results }),
        },
        CallStatus::Ok | CallStatus::Unknown(_) => {
            Error::Ferry(Failure::BadReply { status, results })
        }
    })
}

/// Resolve every method of `interface` in `domain` to its capability slot
/// ([`NO_SLOT`] for one the manifest did not grant).
pub fn resolve<const N: usize>(
    transport: &impl Transport,
    interface: &InterfaceDecl,
    domain: &str,
) -> Result<[u32; N], BindError> {
    if !transport.declared(interface) {
        return Err(BindError::NotDeclared);
    }
    let mut slots = [NO_SLOT; N];
    let mut granted = false;
    for (slot, m) in slots.iter_mut().zip(interface.methods) {
        if let Some(s) = transport.slot(domain, interface.name, m) {
            *slot = s;
            granted = true;
        }
    }
    if granted {
        Ok(slots)
    } else {
        Err(BindError::NotGranted)
    }
}

/// The descriptor of an object lent to a call.
#[inline(always)]
fn desc(addr: u64, len: usize, mode: ArgMode) -> ArgDesc {
    ArgDesc {
        addr,
        len: len as u64,
        mode: mode as u32,
        flags: 0,
    }
}

/// Descriptor of an IN object.
#[inline(always)]
pub fn desc_in<T: ?Sized + Plain>(v: &T) -> ArgDesc {
    desc(
        core::ptr::from_ref(v).cast::<u8>() as u64,
        core::mem::size_of_val(v),
        ArgMode::In,
    )
}

/// Descriptor of an OUT (`mode = Out`) or INOUT object.
#[inline(always)]
pub fn desc_mut<T: ?Sized + Plain>(v: &mut T, mode: ArgMode) -> ArgDesc {
    desc(
        core::ptr::from_mut(v).cast::<u8>() as u64,
        core::mem::size_of_val(v),
        mode,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_abi::APP_ERROR_BASE;

    #[derive(Debug, PartialEq)]
    struct E7;
    impl AppError for E7 {
        fn code(&self) -> u32 {
            7
        }
        fn from_code(c: u32) -> Option<Self> {
            (c == 7).then_some(E7)
        }
    }

    fn f(status: u64, r: [u64; 5]) -> Result<u32, Error<E7>> {
        finish(status, r)
    }

    #[test]
    fn answers_decode_into_the_right_variant() {
        assert_eq!(f(0, [5, 0, 0, 0, 0]), Ok(5));
        assert_eq!(
            f(0, [1 << 40, 0, 0, 0, 0]),
            Err(Error::Ferry(Failure::BadReply {
                status: 0,
                results: [1 << 40, 0]
            }))
        );
        assert_eq!(f(APP_ERROR_BASE + 7, [0; 5]), Err(Error::App(E7)));
        assert!(matches!(
            f(APP_ERROR_BASE + 8, [0; 5]),
            Err(Error::Ferry(Failure::BadReply { .. }))
        ));
        assert_eq!(
            f(
                APP_ERROR_BASE + u64::from(runtime_status::MALFORMED),
                [0; 5]
            ),
            Err(Error::Ferry(Failure::Malformed))
        );
        assert_eq!(
            f(ErrorCode::Timeout as u64, [0; 5]),
            Err(Error::Ferry(Failure::Call(ErrorCode::Timeout)))
        );
        assert_eq!(
            f(ErrorCode::Fault as u64, [14, 2, 3, 4, 0]),
            Err(Error::Ferry(Failure::Fault {
                vector: 14,
                rip: 2,
                error_code: 3,
                cr2: 4
            }))
        );
    }
}
