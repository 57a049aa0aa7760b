// expect: ferry: AppError derives only for a fieldless enum
use ferry_interface::AppError;

#[derive(AppError)]
pub struct E {
    pub code: u32,
}

fn main() {}
