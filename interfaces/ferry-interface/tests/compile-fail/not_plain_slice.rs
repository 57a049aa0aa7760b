// expect: ferry: `Padded` cannot travel as a call object
use ferry_interface::interface;
#[repr(C)]
pub struct Padded {
    pub a: u8,
    pub b: u64,
}
#[interface]
pub trait T {
    fn f(&self, p: &mut [Padded]);
}

fn main() {}
