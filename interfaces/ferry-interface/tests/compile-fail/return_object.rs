// expect: ferry: unsupported return type
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self) -> &[u8];
}

fn main() {}
