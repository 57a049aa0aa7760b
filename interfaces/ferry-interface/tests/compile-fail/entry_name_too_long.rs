// expect: ferry: entry name `kv_a_method_name_of_thirty_bytes_` is 33 bytes; the ABI allows 32
use ferry_interface::interface;

#[interface(prefix = "kv_")]
pub trait T {
    fn a_method_name_of_thirty_bytes_(&self);
}

fn main() {}
