//! The one instruction every hypercall is: `out 0xE0, eax`.

use core::arch::asm;
use shared_abi::Hypercall;

/// Make hypercall `nr` with `args` in RDI, RSI, RDX, R10, R8, R9.
/// Returns RAX and the (possibly rewritten) RDI, RSI, RDX, R10, R8.
///
/// # Safety
/// Pointer arguments must be valid for whatever the VMM does with them for
/// this hypercall (e.g. `Call` writes OUT objects back into caller memory).
#[inline(always)]
pub(crate) unsafe fn hypercall(nr: u32, args: [u64; 6]) -> (u64, [u64; 5]) {
    let rax: u64;
    let (rdi, rsi, rdx, r10, r8): (u64, u64, u64, u64, u64);
    // SAFETY: the caller vouches for the pointer arguments. The VMM may
    // overwrite RAX, RDI, RSI, RDX, R10, R8 (declared as outputs) and nothing
    // else; it may read and write memory reachable from exposed pointers,
    // which an asm block without `nomem`/`readonly` is allowed to do. The
    // `out` itself does not touch the stack.
    unsafe {
        asm!(
            "out 0xE0, eax",
            inout("rax") nr as u64 => rax,
            inout("rdi") args[0] => rdi,
            inout("rsi") args[1] => rsi,
            inout("rdx") args[2] => rdx,
            inout("r10") args[3] => r10,
            inout("r8") args[4] => r8,
            in("r9") args[5],
            options(nostack),
        );
    }
    (rax, [rdi, rsi, rdx, r10, r8])
}

/// A hypercall whose arguments are plain numbers (no pointers).
#[inline(always)]
pub(crate) fn hypercall_scalar(nr: Hypercall, args: [u64; 6]) -> (u64, [u64; 5]) {
    // SAFETY: callers pass only hypercalls whose arguments are not pointers
    // (Nop, Ready, Return, Exit, Spawn), so the VMM touches no guest memory.
    unsafe { hypercall(nr as u32, args) }
}

/// Make any hypercall, including numbers the ABI does not know (the test of
/// `ErrorCode::UnknownHypercall` needs that). Returns RAX and RDI, RSI, RDX,
/// R10, R8 as the VMM left them.
///
/// # Safety
/// For a known hypercall whose arguments are pointers (`Hello`, `Print`,
/// `Call`, `Panic`), the VMM reads — and for `Call` writes — guest memory
/// there: the same rules as [`call_raw`](crate::call_raw) apply.
pub unsafe fn hypercall_raw(nr: u32, args: [u64; 6]) -> (u64, [u64; 5]) {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall(nr, args) }
}

/// The `Nop` hypercall: one exit to the VMM and straight back (the floor of
/// any call's cost).
pub fn nop() {
    hypercall_scalar(Hypercall::Nop, [0; 6]);
}

/// Read the TSC, ordered by `lfence` on both sides so no earlier instruction
/// finishes after it and no later one starts before it. `rdtsc` does not
/// trap at CPL3 here.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: lfence/rdtsc read no memory and only write EAX/EDX.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            "lfence",
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags),
        );
    }
    ((hi as u64) << 32) | lo as u64
}

/// The `Exit` hypercall with `code`. From the thread's bottom frame it ends
/// the thread; from any other frame it ends only this frame, and the caller
/// resumes with `ErrorCode::CalleeExited` (ABI 4). Never returns: if the
/// VMM ever resumed us, we ask again.
pub fn exit(code: u64) -> ! {
    loop {
        hypercall_scalar(Hypercall::Exit, [code, 0, 0, 0, 0, 0]);
    }
}
