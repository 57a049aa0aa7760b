// expect: ferry: associated types are not supported
use ferry_interface::interface;

#[interface]
pub trait T {
    type X;
    fn f(&self);
}

fn main() {}
