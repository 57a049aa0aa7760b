// expect: ferry: duplicate method `f`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self);
    fn f(&self, x: u8);
}

fn main() {}
