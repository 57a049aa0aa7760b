// expect: ferry: a slice of zero-sized elements cannot travel
use ferry_interface::interface;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Zst;
#[interface]
pub trait T {
    fn f(&self, p: &[Zst]);
}

fn main() {}
