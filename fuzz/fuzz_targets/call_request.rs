//! Fuzz target: a Call request read from guest memory and its argument list validated.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_engine::testing::fuzz::call_request(data);
});
