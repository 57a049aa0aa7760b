// expect: ferry: interface methods have no default body
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self) {}
}

fn main() {}
