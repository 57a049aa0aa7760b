// expect: ferry: `MyError` cannot be an interface's error type
use ferry_interface::interface;
pub enum MyError {
    A = 1,
}
#[interface]
pub trait T {
    fn f(&self) -> Result<(), MyError>;
}

fn main() {}
