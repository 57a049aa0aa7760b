// expect: ferry: async methods are not supported
use ferry_interface::interface;

#[interface]
pub trait T {
    async fn f(&self);
}

fn main() {}
