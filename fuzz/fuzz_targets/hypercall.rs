//! Fuzz target: hypercall registers (18 words in kvm_regs order) decoded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_engine::testing::fuzz::hypercall(data);
});
