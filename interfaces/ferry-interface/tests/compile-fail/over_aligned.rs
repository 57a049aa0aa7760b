// expect: ferry: an object type needs more than 16-byte alignment
use ferry_interface::interface;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
#[repr(C, align(32))]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Big {
    pub a: [u8; 32],
}
#[interface]
pub trait T {
    fn f(&self, p: &Big);
}

fn main() {}
