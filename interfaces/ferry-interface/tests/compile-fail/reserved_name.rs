// expect: ferry: `bind` is reserved
use ferry_interface::interface;

#[interface]
pub trait T {
    fn bind(&self);
}

fn main() {}
