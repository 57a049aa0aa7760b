//! `my-domain`: a Ferry domain of your own.
//!
//! It serves `Greeter`, an interface defined below, and calls the built-in
//! `hasher` service through its `-api` crate. The thread that
//! `manifest.toml` starts at `run` greets through a typed `GreeterClient`,
//! so one run exercises both directions:
//!
//! ```text
//! greeter.run ──greet──▶ greeter.greet ──sha256──▶ hasher.sha256
//! ```
//!
//! Each arrow is a migrating call: the thread itself moves into the callee
//! domain, on a fresh stack there, with the objects the signature names
//! copied in (and back, for `&mut`). Here `greet` is served by this same
//! domain, on another of its stacks.
#![no_std]
#![no_main]

use core::fmt::Write as _;
use ferry_guest::{println, Call, Vmm};
use greeter::{GreetError, Greeter, GreeterClient, GreeterServer, MAX_NAME};
use hasher_api::HasherClient;

/// The interface this domain serves. When other images call it, move this
/// module into an `-api` crate of its own that they all depend on (as
/// `hasher-api` is for `hasher`).
pub mod greeter {
    /// Why a greeting failed: the interface's application errors.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, ferry_interface::AppError)]
    #[repr(u32)]
    pub enum GreetError {
        /// The name is longer than [`MAX_NAME`] bytes.
        NameTooLong = 1,
        /// The name is not UTF-8.
        NotUtf8 = 2,
        /// `reply` cannot hold the greeting.
        ReplyTooSmall = 3,
        /// The hasher could not be reached, or failed.
        HasherFailed = 4,
    }

    /// Longest name `greet` accepts, in bytes.
    pub const MAX_NAME: usize = 64;

    /// Greetings sealed with the name's SHA-256.
    #[ferry_interface::interface]
    pub trait Greeter {
        /// Write `Hello, <name>! sha256 <hex digest of name>` to `reply`
        /// (IN `name`, OUT `reply`); answer the greeting's length.
        fn greet(&self, name: &[u8], #[out] reply: &mut [u8]) -> Result<usize, GreetError>;
    }
}

/// The server. Many threads may be inside a domain at once, so a server's
/// state must be shareable (`&self`: atomics or a lock); this one has none.
struct Greetings;

/// The one instance every invocation of `greet` runs on.
static GREETINGS: Greetings = Greetings;

impl Greeter for Greetings {
    fn greet(&self, name: &[u8], reply: &mut [u8]) -> Result<usize, GreetError> {
        if name.len() > MAX_NAME {
            return Err(GreetError::NameTooLong);
        }
        let name = core::str::from_utf8(name).map_err(|_| GreetError::NotUtf8)?;
        // A capability by name: the manifest granted `hasher.sha256`.
        let hasher = HasherClient::bind(Vmm, "hasher").map_err(|_| GreetError::HasherFailed)?;
        let mut digest = [0u8; 32];
        hasher
            .sha256(name.as_bytes(), &mut digest)
            .map_err(|_| GreetError::HasherFailed)?;
        let mut out = Cursor { buf: reply, len: 0 };
        write!(out, "Hello, {name}! sha256 ").map_err(|_| GreetError::ReplyTooSmall)?;
        for b in digest {
            write!(out, "{b:02x}").map_err(|_| GreetError::ReplyTooSmall)?;
        }
        Ok(out.len)
    }
}

/// Formats into a byte buffer, failing when it is full.
struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `run` could not bind `Greeter` in domain `greeter`.
const RUN_NOT_BOUND: u32 = 1;
/// A greeting failed.
const RUN_GREET_FAILED: u32 = 2;

/// A raw entry, where `manifest.toml`'s thread starts: greet `Ferry`
/// `rounds` (scalar 0) times through the typed client, print the last
/// greeting, and answer `[rounds, length of the greeting]`.
fn run(c: &mut Call) -> Result<[u64; 2], u32> {
    let rounds = c.scalar(0);
    let greeter = GreeterClient::bind(Vmm, "greeter").map_err(|_| RUN_NOT_BOUND)?;
    let mut reply = [0u8; 128];
    let mut len = 0;
    for _ in 0..rounds {
        len = match greeter.greet(b"Ferry", &mut reply) {
            Ok(n) => n,
            Err(e) => {
                println!("greet failed: {e:?}");
                return Err(RUN_GREET_FAILED);
            }
        };
    }
    let text = reply.get(..len).unwrap_or_default();
    println!("{}", core::str::from_utf8(text).unwrap_or("(not UTF-8)"));
    Ok([rounds, len as u64])
}

// The image's declaration: the interfaces it serves (their methods become
// its entries `greet`, …), the interfaces it calls (the VMM checks at boot
// that the servers it reaches were built from the same definitions), and
// its raw entries.
ferry_guest::image! {
    serves: [GreeterServer(&GREETINGS)],
    uses: [greeter::GREETER_INTERFACE, hasher_api::HASHER_INTERFACE],
    raw: ["run" => run],
}
