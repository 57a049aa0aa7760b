// expect: ferry: `NotPlain` cannot travel as a call object
use ferry_interface::interface;
#[repr(C)]
pub struct NotPlain {
    pub a: u64,
}
#[interface]
pub trait T {
    fn f(&self, p: &NotPlain);
}

fn main() {}
