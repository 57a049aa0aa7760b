// expect: ferry: associated consts are not supported
use ferry_interface::interface;

#[interface]
pub trait T {
    const X: u32;
    fn f(&self);
}

fn main() {}
