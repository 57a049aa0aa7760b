//! `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`: the prebuilt
//! `compiler_builtins` for the host target does not export them, and `core`
//! calls them. Each is a single string instruction in inline assembly, so
//! LLVM cannot recognise a loop in them and turn it back into a call to
//! themselves. The direction flag is clear on entry (System V ABI).

use core::arch::asm;

/// Copy `n` bytes from `src` to `dst` (non-overlapping).
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes; the ranges do not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; rep movsb copies exactly
    // RCX bytes forwards and only changes RCX, RDI, RSI (declared).
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// Copy `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // dst is below src or past its end: a forward copy never reads a
        // byte it has already overwritten.
        // SAFETY: as for memcpy; forward copying is correct for this overlap.
        unsafe {
            asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags),
            );
        }
    } else {
        // dst overlaps the tail of src: copy backwards, from the last byte.
        // SAFETY: n > 0 here (else the first branch is taken), so the last
        // byte addresses are in range; DF is set only for this instruction
        // and cleared again, as the ABI requires.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack),
            );
        }
    }
    dst
}

/// Fill `n` bytes at `dst` with the low byte of `c`.
///
/// # Safety
/// `dst` writable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; rep stosb writes exactly RCX
    // bytes of AL forwards and changes only RCX and RDI (declared).
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("al") c as u8,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// Compare `n` bytes: <0, 0, >0 like C's `memcmp`.
///
/// # Safety
/// Both ranges readable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let end_a: *const u8;
    let end_b: *const u8;
    // SAFETY: the caller guarantees both ranges. `repe cmpsb` compares
    // [RSI] with [RDI] and advances both until a difference or RCX = 0; it
    // only reads memory and changes RCX, RSI, RDI and the flags.
    unsafe {
        asm!(
            "repe cmpsb",
            inout("rcx") n => _,
            inout("rsi") a => end_a,
            inout("rdi") b => end_b,
            options(nostack, readonly),
        );
    }
    // The last pair compared is the first difference, or equal if none.
    // SAFETY: at least one pair was compared, so both are inside the ranges.
    let (x, y) = unsafe { (*end_a.sub(1), *end_b.sub(1)) };
    x as i32 - y as i32
}

/// Compare `n` bytes for equality only (0 = equal).
///
/// # Safety
/// Both ranges readable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// `core` (prebuilt with unwinding) still names the personality routine;
/// with `panic = "abort"` it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// The prebuilt `alloc` (compiled with unwinding) has landing pads that
/// resume unwinding; with `panic = "abort"` no unwind ever starts, so this
/// is unreachable. Stops with #UD rather than trusting that.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    loop {
        // SAFETY: ud2 only raises #UD, which ends the invocation.
        unsafe { asm!("ud2", options(nomem, nostack)) };
    }
}
