//! A guest's hypercall, decoded once from its registers into a typed value
//! that the boot loop and the migration engine both match on (uhyve's and
//! Hubris's "parse, then dispatch"). Nothing here trusts a value: addresses
//! stay allegations until the data region checks them.

use kvm_bindings::kvm_regs;
use shared_abi::Hypercall;

/// What a guest asked for, with its register arguments named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRequest {
    /// First words of a booting guest: where its `Hello` is.
    Hello {
        /// Address of the `Hello`.
        addr: u64,
    },
    /// The guest finished its initialisation.
    Ready,
    /// Log a line.
    Print {
        /// Address of the text.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// Migrate into another domain.
    Call {
        /// Address of the `CallRequest`.
        request: u64,
        /// CPU budget asked for, in µs (`RSI`; 0 = the callee's default).
        budget_us: u64,
        /// Wall-clock limit of each wait, in µs (`RDX`; 0 = the default).
        wait_us: u64,
    },
    /// Return from the current entry.
    Return {
        /// 0 = success, else an application code.
        status: u64,
        /// Two results.
        results: [u64; 2],
    },
    /// The exit floor: do nothing, come straight back.
    Nop,
    /// The guest panicked.
    Panic {
        /// Address of the message.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// End the calling thread.
    Exit {
        /// The exit code.
        code: u64,
    },
    /// Start a thread in the caller's own domain.
    Spawn {
        /// Entry index (unchecked).
        entry: u64,
        /// Its first scalar.
        arg: u64,
    },
    /// A number this ABI does not know (all 64 bits of `RAX`: a number
    /// with high bits set is unknown, not truncated into a known one).
    Unknown {
        /// `RAX` as the guest left it.
        number: u64,
    },
}

impl GuestRequest {
    /// Decode the registers of a vCPU that just wrote the hypercall port.
    pub fn decode(r: &kvm_regs) -> Self {
        let known = u32::try_from(r.rax)
            .ok()
            .and_then(|n| Hypercall::try_from(n).ok());
        match known {
            Some(Hypercall::Hello) => Self::Hello { addr: r.rdi },
            Some(Hypercall::Ready) => Self::Ready,
            Some(Hypercall::Print) => Self::Print {
                addr: r.rdi,
                len: r.rsi,
            },
            Some(Hypercall::Call) => Self::Call {
                request: r.rdi,
                budget_us: r.rsi,
                wait_us: r.rdx,
            },
            Some(Hypercall::Return) => Self::Return {
                status: r.rdi,
                results: [r.rsi, r.rdx],
            },
            Some(Hypercall::Nop) => Self::Nop,
            Some(Hypercall::Panic) => Self::Panic {
                addr: r.rdi,
                len: r.rsi,
            },
            Some(Hypercall::Exit) => Self::Exit { code: r.rdi },
            Some(Hypercall::Spawn) => Self::Spawn {
                entry: r.rdi,
                arg: r.rsi,
            },
            None => Self::Unknown { number: r.rax },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(rax: u64) -> kvm_regs {
        kvm_regs {
            rax,
            rdi: 1,
            rsi: 2,
            rdx: 3,
            ..Default::default()
        }
    }

    #[test]
    fn names_the_arguments() {
        assert_eq!(
            GuestRequest::decode(&regs(Hypercall::Return as u64)),
            GuestRequest::Return {
                status: 1,
                results: [2, 3]
            }
        );
        assert_eq!(
            GuestRequest::decode(&regs(Hypercall::Spawn as u64)),
            GuestRequest::Spawn { entry: 1, arg: 2 }
        );
    }

    #[test]
    fn high_bits_make_a_number_unknown() {
        let n = (1 << 32) | Hypercall::Call as u64;
        assert_eq!(
            GuestRequest::decode(&regs(n)),
            GuestRequest::Unknown { number: n }
        );
        assert_eq!(
            GuestRequest::decode(&regs(0)),
            GuestRequest::Unknown { number: 0 }
        );
    }
}
