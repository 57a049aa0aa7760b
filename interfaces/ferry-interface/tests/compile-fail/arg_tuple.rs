// expect: ferry: unsupported parameter type `(u8, u8)`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, p: (u8, u8));
}

fn main() {}
