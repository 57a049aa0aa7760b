//! Link this image with guest/link.ld (see guest/build-image.rs).
include!("../../guest/build-image.rs");
