//! Link this image like every other (`ferry_image_build::link_image`), but
//! enter at `badabi_start` instead of the runtime's `_start` (`-e` takes
//! precedence over `ENTRY(_start)` in the linker script).

fn main() {
    ferry_image_build::link_image();
    println!("cargo:rustc-link-arg-bins=-Wl,--entry=badabi_start");
}
