// expect: ferry: generic methods are not supported
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f<X>(&self, x: &X);
}

fn main() {}
