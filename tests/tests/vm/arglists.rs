//! Every class of malformed argument list, sent by a real guest, gets its
//! own error code, and the callee is never entered.

use crate::common::{boot, ok, testguest};
use ferry_engine::manifest::Document;
use ferry_engine::shared_abi::layout::PAGE_SIZE;
use ferry_engine::shared_abi::ErrorCode;

#[test]
fn each_malformed_class_is_refused_with_its_code() {
    // The callee's stacks are small so a 200 KiB object exceeds its budget.
    let doc = Document::default()
        .domain(testguest("driver", &["b.sum_in"]).memory_mib(4))
        .domain(testguest("b", &[]).stacks(4, 16));
    let (_dog, sys) = boot("each_malformed_class_is_refused_with_its_code", doc);
    let driver = sys.domain_by_name("driver").unwrap();
    let guard = driver.layout.stack_bottom(0) - PAGE_SIZE;
    let cases: &[(u64, &str, ErrorCode)] = &[
        (0, "17 descriptors", ErrorCode::TooManyArgs),
        (1, "mode 9", ErrorCode::BadMode),
        (2, "the null page", ErrorCode::OutOfRange),
        (3, "the page tables", ErrorCode::OutOfRange),
        (4, "the GDT", ErrorCode::OutOfRange),
        (5, "a guard page", ErrorCode::OutOfRange),
        (6, "an overflowing range", ErrorCode::Overflow),
        (7, "overlapping outputs", ErrorCode::OverlappingOutputs),
        (
            8,
            "a 200 KiB object for a 16 KiB stack",
            ErrorCode::TooLarge,
        ),
        (9, "slot 1000", ErrorCode::BadSlot),
        (10, "an undefined flag bit", ErrorCode::BadMode),
        (11, "a wild request pointer", ErrorCode::BadPointer),
        (12, "hypercall 77", ErrorCode::UnknownHypercall),
        (14, "Hello after boot", ErrorCode::BootOver),
        (15, "Ready after boot", ErrorCode::BootOver),
    ];
    for &(case, what, code) in cases {
        let before = sys.counters().refused(code);
        let out = sys.run_thread("driver", "drive_raw", &[case, guard]);
        assert_eq!(ok(&out.result)[0], code as u64, "case {case} ({what})");
        let counted = sys.counters().refused(code) - before;
        assert_eq!(counted, 1, "case {case}: the VMM counted the refusal once");
    }
    assert_eq!(
        sys.counters().calls(),
        0,
        "no malformed call entered the callee"
    );
    // The well-formed control case goes through: the sum of bytes 0..16.
    let out = sys.run_thread("driver", "drive_raw", &[13, guard]);
    assert_eq!(ok(&out.result), [0, 120]);
    assert_eq!(sys.counters().calls(), 1);
}
