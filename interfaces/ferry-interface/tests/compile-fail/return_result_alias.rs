// expect: ferry: write the result as `Result<T, E>`
use ferry_interface::interface;
pub type Result<T> = core::result::Result<T, u32>;
#[interface]
pub trait T {
    fn f(&self) -> Result<u8>;
}

fn main() {}
