// expect: PASS
//! Control case: everything the mapping supports compiles, so a failure of
//! the other cases is theirs, not the harness's. `no_std`, as in a guest.
#![no_std]
#![no_main]
use ferry_interface::{interface, AppError};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

#[derive(Clone, Copy, Debug, PartialEq, Eq, AppError)]
#[repr(u32)]
pub enum E {
    A = 1,
    B = 0xFFEF,
    C = BASE + 1,
}

const BASE: u32 = 0x100;

#[repr(C, align(16))]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct S {
    pub a: [u8; 16],
}

#[interface(prefix = "p_")]
pub trait Everything {
    fn objects(&self, a: &S, b: &mut S, #[out] c: &mut S, d: &[u32], e: &mut [u8], #[out] f: &mut [u64]) -> Result<(), E>;
    fn scalars(&self, a: u8, b: i64, c: bool, d: usize, e: isize, f: u16) -> (u64, i8);
    fn sixteen(&self, a0: &u8, a1: &u8, a2: &u8, a3: &u8, a4: &u8, a5: &u8, a6: &u8, a7: &u8, a8: &u8, a9: &u8, a10: &u8, a11: &u8, a12: &u8, a13: &u8, a14: &u8, a15: &[u8; 3]);
    fn thirty_byte_method_name_here__(&self) -> u32;
}

pub struct Server;

impl Everything for Server {
    fn objects(&self, _: &S, _: &mut S, _: &mut S, _: &[u32], _: &mut [u8], _: &mut [u64]) -> Result<(), E> {
        Err(E::C)
    }
    fn scalars(&self, a: u8, _: i64, _: bool, _: usize, _: isize, _: u16) -> (u64, i8) {
        (u64::from(a), -1)
    }
    fn sixteen(&self, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &u8, _: &[u8; 3]) {}
    fn thirty_byte_method_name_here__(&self) -> u32 {
        EVERYTHING_INTERFACE.methods.len() as u32
    }
}

pub static SERVED: &dyn ferry_interface::Serve = &EverythingServer(&Server);

/// A client, for any transport.
pub fn client<T: ferry_interface::Transport>(t: T) -> Result<u64, ferry_interface::Error<core::convert::Infallible>> {
    let c = EverythingClient::bind(t, "d").map_err(|_| ferry_interface::Error::Ferry(ferry_interface::Failure::Malformed))?;
    c.scalars(1, 2, true, 3, 4, 5).map(|r| r.0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
