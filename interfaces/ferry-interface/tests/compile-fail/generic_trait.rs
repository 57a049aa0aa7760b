// expect: ferry: generic interfaces are not supported
use ferry_interface::interface;

#[interface]
pub trait T<X> {
    fn f(&self, x: &X);
}

fn main() {}
