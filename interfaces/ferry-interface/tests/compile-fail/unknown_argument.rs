// expect: ferry: unknown argument
use ferry_interface::interface;

#[interface(name = "x")]
pub trait T {
    fn f(&self);
}

fn main() {}
