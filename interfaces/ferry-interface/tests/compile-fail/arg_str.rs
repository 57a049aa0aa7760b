// expect: ferry: `&str` cannot travel
use ferry_interface::interface;

#[interface]
pub trait T {
    fn f(&self, s: &str);
}

fn main() {}
