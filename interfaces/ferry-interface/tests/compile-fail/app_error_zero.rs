// expect: ferry: an AppError code (the variant's discriminant) must be in 1..0xFFF0
use ferry_interface::AppError;

#[derive(AppError)]
pub enum E {
    A = 0,
}

fn main() {}
