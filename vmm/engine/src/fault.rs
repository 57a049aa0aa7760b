//! Turning a guest's death into a precise report: vector, RIP, error code,
//! CR2 and, for a panic, the guest's own message.

use crate::arch;
use crate::guest_io;
use crate::ids::ThreadId;
use crate::vcpu::{Exit, Vcpu};
use shared_abi::pseudo_vector;
use std::fmt;
use vm_memory::GuestMemoryMmap;

/// What killed a domain (or would have): enough to find the bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// The domain's name.
    pub domain: String,
    /// The CPU vector (0..=31) or a [`pseudo_vector`].
    pub vector: u64,
    /// Where the guest was: the faulting instruction for exceptions.
    pub rip: u64,
    /// The exception's error code (0 if it has none).
    pub error_code: u64,
    /// CR2 for page faults; the guest-physical address for unbacked accesses.
    pub cr2: u64,
    /// The guest's panic message, or why the VMM could not decode more.
    pub message: Option<String>,
    /// The migrating thread that was running, if any.
    pub thread: Option<ThreadId>,
    /// That thread's invocation chain when it faulted, outermost domain
    /// first (empty when no thread was running, e.g. at boot).
    pub chain: Vec<String>,
}

/// A human name for a vector.
pub fn vector_name(v: u64) -> &'static str {
    match v {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "NMI",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack fault (#SS)",
        13 => "general protection (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 error (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD error (#XM)",
        pseudo_vector::PANIC => "panic",
        pseudo_vector::SHUTDOWN => "shutdown (triple fault)",
        pseudo_vector::UNBACKED_ACCESS => "access to unbacked memory",
        pseudo_vector::VCPU_ERROR => "vCPU error",
        pseudo_vector::BUDGET => "CPU budget exceeded",
        pseudo_vector::DOMAIN_DOWN => "domain went down (another thread's call)",
        _ => "exception",
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "domain `{}`: {} at rip {:#x}",
            self.domain,
            vector_name(self.vector),
            self.rip
        )?;
        if arch::has_error_code(self.vector) {
            write!(f, ", error code {:#x}", self.error_code)?;
        }
        if self.vector == 14 || self.vector == pseudo_vector::UNBACKED_ACCESS {
            write!(f, ", address {:#x}", self.cr2)?;
        }
        if let Some(t) = self.thread {
            write!(f, " ({t}")?;
            if !self.chain.is_empty() {
                write!(f, ", chain {}", self.chain.join(" → "))?;
            }
            write!(f, ")")?;
        }
        if let Some(m) = &self.message {
            // A panic message is guest text: shown escaped.
            write!(f, ": {}", crate::guest_text::escape(m))?;
        }
        Ok(())
    }
}

/// Longest panic message the VMM reads.
pub const MAX_PANIC_MESSAGE: u64 = 1024;

/// Build the report for a fatal `exit` of `vcpu` in domain `domain`.
pub fn decode(vcpu: &mut Vcpu, exit: Exit, mem: &GuestMemoryMmap, domain: &str) -> FaultReport {
    let rip = vcpu.regs().rip;
    let mut r = FaultReport {
        domain: domain.to_owned(),
        vector: 0,
        rip,
        error_code: 0,
        cr2: 0,
        message: None,
        thread: None,
        chain: Vec::new(),
    };
    match exit {
        Exit::Exception { vector } => {
            r.vector = vector;
            let rsp = vcpu.regs().rsp;
            let words = if arch::has_error_code(vector) { 6 } else { 5 };
            let frame_ok = arch::exception_stacks(vcpu.slot())
                .iter()
                .any(|&(lo, hi)| rsp >= lo && rsp.checked_add(words * 8).is_some_and(|e| e <= hi));
            if frame_ok {
                let mut at = rsp;
                if arch::has_error_code(vector) {
                    r.error_code = guest_io::read_u64(mem, at).unwrap_or(0);
                    at += 8;
                }
                r.rip = guest_io::read_u64(mem, at).unwrap_or(0);
            } else {
                r.message = Some(format!(
                    "exception frame at {rsp:#x} is outside the exception stacks"
                ));
            }
            if vector == 14 {
                r.cr2 = vcpu.sregs().map(|s| s.cr2).unwrap_or(0);
            }
        }
        Exit::Shutdown => {
            r.vector = pseudo_vector::SHUTDOWN;
            if let Ok(regs) = vcpu.regs_by_ioctl() {
                r.rip = regs.rip;
            }
            r.cr2 = vcpu.sregs().map(|s| s.cr2).unwrap_or(0);
        }
        Exit::Unbacked { addr } => {
            r.vector = pseudo_vector::UNBACKED_ACCESS;
            r.cr2 = addr;
        }
        Exit::Unexpected(why) => {
            r.vector = pseudo_vector::VCPU_ERROR;
            r.message = Some(why.to_owned());
        }
        Exit::Hypercall | Exit::Interrupted => {
            r.vector = pseudo_vector::VCPU_ERROR;
            r.message = Some("not a fault".to_owned());
        }
    }
    vcpu.mark_dirty();
    r
}

/// The report for a guest panic of domain `domain` on `vcpu`, with the
/// `message` the caller read (bounded, checked) from the guest's memory.
pub fn panic_report(vcpu: &mut Vcpu, domain: &str, message: String) -> FaultReport {
    let regs = *vcpu.regs();
    vcpu.mark_dirty();
    FaultReport {
        domain: domain.to_owned(),
        vector: pseudo_vector::PANIC,
        rip: regs.rip,
        error_code: 0,
        cr2: 0,
        message: Some(message),
        thread: None,
        chain: Vec::new(),
    }
}
