//! What a disallowed system call does: the filter answers `SECCOMP_RET_TRAP`,
//! the kernel sends `SIGSYS` to the calling thread, and this handler writes
//! one line on stderr naming the thread and the system call, then ends the
//! process with [`EXIT_CODE`] (as Firecracker does). Only async-signal-safe
//! work: a thread-local byte array read, a number formatted on the stack, a
//! raw `write(2)` and `_exit(2)`, all allowed by the filter.

use std::cell::Cell;
use std::sync::OnceLock;

/// The exit status of a process ended by a disallowed system call:
/// 128 + 31 (`SIGSYS`), as a shell reports a process killed by that signal.
pub const EXIT_CODE: i32 = 159;

/// Bytes of a thread's name kept for the message (Linux names are ≤ 15).
const NAME_LEN: usize = 32;

thread_local! {
    /// This thread's name, kept when it was confined (the handler may not
    /// ask the kernel). Const-initialised, no destructor: signal-safe.
    static NAME: Cell<[u8; NAME_LEN]> = const { Cell::new([0; NAME_LEN]) };
}

/// Why the handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the SIGSYS handler")]
pub struct HandlerError(#[source] std::io::Error);

/// Keep the calling thread's name for the handler's message.
pub fn remember_name() {
    let mut name = [0u8; NAME_LEN];
    let current = std::thread::current();
    let given = current.name().unwrap_or("unnamed").as_bytes();
    name.iter_mut().zip(given).for_each(|(d, s)| *d = *s);
    let _ = NAME.try_with(|n| n.set(name));
}

/// The line the handler writes: `ferry: seccomp: thread `NAME` made system
/// call NR, which its filter does not allow; exiting with status 159`.
/// Fills `out` and returns the bytes used; no allocation.
fn message(name: &[u8], nr: i64, out: &mut [u8; 192]) -> usize {
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for b in bytes {
            if let Some(slot) = out.get_mut(len) {
                *slot = *b;
                len += 1;
            }
        }
    };
    put(b"ferry: seccomp: thread `");
    put(name.split(|b| *b == 0).next().unwrap_or_default());
    put(b"` made system call ");
    put(digits(nr, &mut [0u8; 20]));
    put(b", which its filter does not allow; exiting with status ");
    put(digits(i64::from(EXIT_CODE), &mut [0u8; 20]));
    put(b"\n");
    len
}

/// `n` in decimal (a negative number gets a `-`), written into `buf`.
fn digits(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut v = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            // `v % 10` is below 10: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let digit = (v % 10) as u8;
            *d = b'0' + digit;
        }
        v /= 10;
        if v == 0 || at == 1 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            *d = b'-';
        }
    }
    buf.get(at..).unwrap_or_default()
}

/// Byte offset of `si_syscall` in the kernel's `siginfo_t` for `SIGSYS`
/// (after `si_signo`, `si_errno`, `si_code`, padding and `si_call_addr`).
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for a SA_SIGINFO
    // handler; for SIGSYS the system call number is the i32 at
    // SI_SYSCALL_OFFSET, inside the 128-byte structure.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read_unaligned()
    };
    let name = NAME.try_with(Cell::get).unwrap_or([0; NAME_LEN]);
    let mut line = [0u8; 192];
    let len = message(&name, i64::from(nr), &mut line);
    // SAFETY: `line` is a live buffer of at least `len` bytes; write(2) and
    // _exit(2) are async-signal-safe and allowed by the filter.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len);
        libc::_exit(EXIT_CODE);
    }
}

/// Install the handler once per process (later calls return the first result).
pub fn install() -> Result<(), &'static HandlerError> {
    static INSTALLED: OnceLock<Result<(), HandlerError>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
            // value; we then set the handler and SA_SIGINFO. `on_sigsys`
            // is async-signal-safe.
            let rc = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigsys
                    as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut())
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(HandlerError(std::io::Error::last_os_error()))
            }
        })
        .as_ref()
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_thread_and_the_call() {
        let mut name = [0u8; NAME_LEN];
        name[..8].copy_from_slice(b"ferry-t7");
        let mut out = [0u8; 192];
        let len = message(&name, 41, &mut out);
        assert_eq!(
            std::str::from_utf8(&out[..len]).unwrap(),
            "ferry: seccomp: thread `ferry-t7` made system call 41, which its filter does not \
             allow; exiting with status 159\n"
        );
        assert_eq!(digits(0, &mut [0; 20]), b"0");
        assert_eq!(digits(-12, &mut [0; 20]), b"-12");
        assert_eq!(digits(i64::MIN, &mut [0; 20]), b"-9223372036854775808");
    }
}
