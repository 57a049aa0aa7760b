//! Link this image with Ferry's guest linker script and link arguments
//! (`ferry_image_build`, the same helper images built out of tree use).

fn main() {
    ferry_image_build::link_image();
}
