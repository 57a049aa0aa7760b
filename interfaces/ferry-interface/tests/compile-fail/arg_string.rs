// expect: ferry: unsupported parameter type `String`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, s: String);
}

fn main() {}
