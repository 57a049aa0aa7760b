//! Fuzz target: the manifest parser, on any bytes; what it accepts has a
//! domain and threads that start in exported entries.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(system) = ferry_engine::manifest::System::parse(&text, None) {
        assert!(!system.domains.is_empty());
        for t in &system.threads {
            let home = &system.domains[t.domain];
            assert!(home.exports.contains(&t.entry));
        }
    }
});
