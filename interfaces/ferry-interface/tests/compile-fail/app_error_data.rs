// expect: ferry: AppError variant `Io` carries data
use ferry_interface::AppError;

#[derive(AppError)]
pub enum E {
    A = 1,
    Io(u32),
}

fn main() {}
