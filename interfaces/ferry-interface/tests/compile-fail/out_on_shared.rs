// expect: ferry: #[out] applies only to a `&mut T` or `&mut [T]` parameter
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, #[out] x: &[u8]);
}

fn main() {}
