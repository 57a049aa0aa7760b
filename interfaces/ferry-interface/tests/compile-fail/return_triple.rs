// expect: ferry: unsupported return type `(u8, u8, u8)`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self) -> (u8, u8, u8);
}

fn main() {}
