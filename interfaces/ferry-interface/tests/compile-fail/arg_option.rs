// expect: ferry: unsupported parameter type `Option<u32>`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, v: Option<u32>);
}

fn main() {}
