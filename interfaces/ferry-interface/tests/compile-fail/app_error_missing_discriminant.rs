// expect: ferry: AppError variant `B` needs an explicit discriminant
use ferry_interface::AppError;

#[derive(AppError)]
pub enum E {
    A = 1,
    B,
}

fn main() {}
