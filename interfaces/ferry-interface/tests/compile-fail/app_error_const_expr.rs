// expect: ferry: an AppError code (the variant's discriminant) must be in 1..0xFFF0
use ferry_interface::AppError;

#[derive(AppError)]
#[repr(u32)]
pub enum E {
    A = BASE + 0x10,
}

const BASE: u32 = 0xFFE0;

fn main() {}
