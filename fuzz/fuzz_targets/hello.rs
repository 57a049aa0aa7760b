//! Fuzz target: a booting guest's hello and entry table decoded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_engine::testing::fuzz::hello(data);
});
