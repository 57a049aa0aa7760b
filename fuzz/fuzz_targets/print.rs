//! Fuzz target: a Print/Panic text read from guest memory and escaped for the log.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_engine::testing::fuzz::print(data);
});
