// expect: ferry: interface methods take `&self`, not `&mut self`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&mut self);
}

fn main() {}
