//! The guest images built into the `ferry` binary by `build.rs`'s nested
//! cargo build of the guest workspace.

mod generated {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/images.rs"));
}

/// `(name, ELF bytes)` of every image built into this binary.
pub use generated::BUILTIN_IMAGES;

/// The built-in image called `name`.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN_IMAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}

/// Names of all built-in images.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_IMAGES.iter().map(|(n, _)| *n)
}
