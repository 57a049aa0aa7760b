//! The bounded fuzz of `cargo test`: hostile hypercalls from several vCPUs
//! of the `fuzzer` image, every one judged by `ferry_hostile::fuzz`'s
//! oracle, plus canaries, system-page snapshots and pool checks after each
//! batch. A test binary of its own: it counts host threads.

mod common;

use ferry_engine::manifest::Document;
use ferry_hostile::fuzz::{Fuzz, FuzzDomains, Report};

#[test]
fn explore() {
    let domains = FuzzDomains::new("fz-");
    let mut doc = Document::default();
    for d in domains.domains() {
        doc = doc.domain(d);
    }
    let (_dog, sys) = common::boot("explore", doc);
    let mut fuzz = Fuzz::attach(&sys, &domains).unwrap();
    let mut total = Report::default();
    for seed in 0..2 {
        let b = fuzz.batch(seed, 3000).unwrap();
        if b.report.violation_count > 0 {
            std::fs::write(format!("/tmp/fuzz-stream-{seed}.log"), &b.stream).unwrap();
        }
        total.merge(&b.report);
    }
    println!("{}", total.summary());
    for v in total.violations.iter().take(12) {
        println!("{v}");
    }
}
