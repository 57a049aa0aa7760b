// expect: ferry: more than 6 scalar parameters
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, a0: u8, a1: u8, a2: u8, a3: u8, a4: u8, a5: u8, a6: u8);
}

fn main() {}
