//! `print!`/`println!`: format into a stack buffer and send it with the
//! `Print` hypercall, in chunks that end on UTF-8 character boundaries.
//! No shared state: the buffer is on the calling thread's stack, so threads
//! on several vCPUs of one domain print at once (their output interleaves
//! at chunk boundaries, never inside one).

use crate::hypercall::hypercall;
use core::fmt::{self, Write};
use shared_abi::Hypercall;

/// Bytes formatted on the stack before a `Print` (small: entries may run on
/// small stacks).
const CHUNK: usize = 256;

/// Send already-formatted UTF-8 text.
pub(crate) fn print_str(s: &str) {
    // SAFETY: `s` is valid for `s.len()` bytes; Print only reads them.
    unsafe {
        hypercall(
            Hypercall::Print as u32,
            [s.as_ptr() as u64, s.len() as u64, 0, 0, 0, 0],
        )
    };
}

struct Printer {
    buf: [u8; CHUNK],
    len: usize,
}

impl Printer {
    fn flush(&mut self) {
        if self.len > 0 {
            // SAFETY: only whole `str`s or prefixes ending on a character
            // boundary are ever appended, so the buffer is UTF-8.
            print_str(unsafe { core::str::from_utf8_unchecked(&self.buf[..self.len]) });
            self.len = 0;
        }
    }
}

impl Write for Printer {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while !s.is_empty() {
            let room = CHUNK - self.len;
            if s.len() <= room {
                self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
                self.len += s.len();
                return Ok(());
            }
            // Take the longest prefix that fits and ends on a boundary.
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.buf[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
            self.len += cut;
            s = &s[cut..];
            self.flush();
        }
        Ok(())
    }
}

/// Implementation of [`print!`]; not for direct use.
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut p = Printer {
        buf: [0; CHUNK],
        len: 0,
    };
    let _ = p.write_fmt(args);
    p.flush();
}

/// Print to the VMM's log (the `Print` hypercall), like `std`'s `print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::_print(::core::format_args!($($arg)*))
    };
}

/// Print a line to the VMM's log, like `std`'s `println!`.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
