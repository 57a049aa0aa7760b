// expect: ferry: an interface method takes `&self` first
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(x: u32);
}

fn main() {}
