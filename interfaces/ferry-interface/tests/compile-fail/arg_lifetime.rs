// expect: ferry: explicit lifetimes are not supported
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, p: &'static [u8]);
}

fn main() {}
