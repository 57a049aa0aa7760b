//! Link this image like every other (guest/build-image.rs), but enter at
//! `badabi_start` instead of the runtime's `_start` (`-e` takes precedence
//! over `ENTRY(_start)` in guest/link.ld).
mod image {
    include!("../../guest/build-image.rs");
}

fn main() {
    image::link_image();
    println!("cargo:rustc-link-arg-bins=-Wl,--entry=badabi_start");
}
