// expect: ferry: an object cannot be or contain a reference
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, p: &mut &u8);
}

fn main() {}
