// expect: ferry: interface methods take `&self`, not `self` by value
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(self);
}

fn main() {}
