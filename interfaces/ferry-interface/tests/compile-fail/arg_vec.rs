// expect: ferry: unsupported parameter type `Vec<u8>`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, v: Vec<u8>);
}

fn main() {}
