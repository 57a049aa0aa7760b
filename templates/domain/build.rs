//! Link this image as a Ferry guest: Ferry's linker script and link
//! arguments (and a clear error if the target or flags are not the guest's).
fn main() {
    ferry_image_build::link_image();
}
