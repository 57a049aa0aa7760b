//! One hypercall with every register the fuzzer sets and checks.

use crate::wire::NREGS;
use core::arch::asm;

/// `out 0xE0, eax` with RAX (all 64 bits), RDI, RSI, RDX, R10, R8, R9,
/// R11, R12, R13 from `regs` ([`crate::wire::REG_NAMES`] order); returns
/// them as the VMM left them.
///
/// # Safety
/// If the VMM accepts a `Call`, it writes the OUT/INOUT objects the request
/// names: they must be memory the caller may give away (for the fuzzer: its
/// own scratch only). `Return`, `Exit` and `Panic` never come back here.
#[inline(always)]
pub unsafe fn hypercall(regs: [u64; NREGS]) -> [u64; NREGS] {
    let [mut rax, mut rdi, mut rsi, mut rdx, mut r10, mut r8, mut r9, mut r11, mut r12, mut r13] =
        regs;
    // SAFETY: the VMM changes only registers declared here (all inout) and
    // memory the caller vouched for; `out` itself touches no stack.
    unsafe {
        asm!(
            "out 0xE0, eax",
            inout("rax") rax,
            inout("rdi") rdi,
            inout("rsi") rsi,
            inout("rdx") rdx,
            inout("r10") r10,
            inout("r8") r8,
            inout("r9") r9,
            inout("r11") r11,
            inout("r12") r12,
            inout("r13") r13,
            options(nostack),
        );
    }
    [rax, rdi, rsi, rdx, r10, r8, r9, r11, r12, r13]
}
