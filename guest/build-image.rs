// Shared build script of every guest image: each `images/*/build.rs` is
// `include!("../../guest/build-image.rs");`. Link arguments emitted by a
// dependency's build script do not reach binaries, so every image needs this.
// An image that needs more (images/badabi) includes this inside a module and
// calls `link_image` from its own `main`.
#[allow(dead_code)] // `main` is unused when included inside a module.
fn main() {
    link_image();
}

/// Emit the link arguments every guest image needs.
pub fn link_image() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("../../guest/link.ld");
    let script = script.canonicalize().expect("guest/link.ld exists");
    println!("cargo:rerun-if-changed={}", script.display());
    for arg in [
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--gc-sections",
        "-Wl,--build-id=none",
        "-Wl,-z,norelro",
        "-Wl,-z,noexecstack",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
