// expect: ferry: unsupported parameter type `*const u8`
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, p: *const u8);
}

fn main() {}
