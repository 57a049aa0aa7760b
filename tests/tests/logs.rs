//! Log hygiene, seen through a capturing logger (its own test binary: a
//! process has one logger). Guest text arrives escaped, a print flood is
//! rate-limited, and refusals log nothing above debug until their summary.

mod common;

use common::{boot, ok, testguest};
use ferry_engine::manifest::{Document, ThreadEntry};
use ferry_engine::shared_abi::ErrorCode;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// One log record as captured.
#[derive(Clone, Debug)]
struct Record {
    level: log::Level,
    target: String,
    text: String,
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        let rec = Record {
            level: r.level(),
            target: r.target().to_owned(),
            text: r.args().to_string(),
        };
        if let Ok(mut all) = RECORDS.lock() {
            all.push(rec);
        }
    }

    fn flush(&self) {}
}

fn capture() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Records whose text mentions `what`.
fn records_about(what: &str) -> Vec<Record> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.text.contains(what))
        .cloned()
        .collect()
}

#[test]
fn a_forged_log_line_arrives_escaped() {
    capture();
    let doc = Document::default().domain(testguest("forger", &[]));
    let (_dog, sys) = boot("a_forged_log_line_arrives_escaped", doc);
    ok(&sys.run_thread("forger", "print_forged", &[]).result);
    let got = records_about("[forger]");
    assert_eq!(got.len(), 1, "one record for one print: {got:?}");
    let text = &got[0].text;
    for bad in ['\n', '\r', '\x1b', '\u{202e}', '\u{2028}', '\u{85}'] {
        assert!(!text.contains(bad), "{bad:?} reached the log: {text:?}");
    }
    for shown in [r"\n", r"\r", r"\x1b", r"\u{202e}", r"\u{2028}", r"\u{85}"] {
        assert!(
            text.contains(shown),
            "{shown} is not shown escaped: {text:?}"
        );
    }
    assert!(
        text.contains(r"innocent\ndomain `victim` restarted (generation 7)"),
        "{text:?}"
    );
}

#[test]
fn a_panic_message_arrives_escaped() {
    capture();
    let doc = Document::default().domain(testguest("panicker", &[]));
    let (_dog, sys) = boot("a_panic_message_arrives_escaped", doc);
    let out = sys.run_thread("panicker", "panic", &[]);
    let ferry_engine::thread::ThreadResult::Faulted(report) = &out.result else {
        panic!("{:?}", out.result);
    };
    // The testguest's panic message has no control characters; a forged
    // one in a report is shown escaped.
    let mut forged = report.clone();
    forged.message = Some("boom\ndomain `victim` restarted\x1b[0m".into());
    let shown = forged.to_string();
    assert!(
        !shown.contains('\n') && !shown.contains('\x1b'),
        "{shown:?}"
    );
    assert!(
        shown.contains(r"boom\ndomain `victim` restarted\x1b[0m"),
        "{shown:?}"
    );
}

#[test]
fn a_print_flood_is_rate_limited_and_summarised() {
    capture();
    let doc = Document::default().domain(testguest("flooder", &[]));
    let (_dog, sys) = boot("a_print_flood_is_rate_limited_and_summarised", doc);
    let start = Instant::now();
    ok(&sys.run_thread("flooder", "print_flood", &[3_000]).result);
    let secs = start.elapsed().as_secs_f64();
    let logged = records_about("flood line").len() as f64;
    assert!(
        logged <= 200.0 + 100.0 * secs + 1.0,
        "{logged} of 3000 lines logged in {secs:.2} s"
    );
    // A period later, the next line comes after a report of the drops:
    // every line was either logged or counted.
    std::thread::sleep(Duration::from_millis(1_100));
    ok(&sys.run_thread("flooder", "print_flood", &[1]).result);
    let logged = records_about("flood line").len() as u64;
    let reports = records_about("lines from `flooder` dropped");
    let dropped: u64 = reports
        .iter()
        .filter_map(|r| r.text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(!reports.is_empty());
    assert!(
        reports.len() as f64 <= 2.0 + secs,
        "{} reports in {secs:.2} s",
        reports.len()
    );
    assert_eq!(logged + dropped, 3_001, "{reports:?}");
}

#[test]
fn unknown_hypercalls_log_nothing_above_debug() {
    capture();
    let doc = Document::default().domain(testguest("prober", &[]));
    let (_dog, sys) = boot("unknown_hypercalls_log_nothing_above_debug", doc);
    assert_eq!(
        ok(&sys.run_thread("prober", "unknown_flood", &[500]).result),
        [500, 0]
    );
    let loud: Vec<Record> = records_about("prober")
        .into_iter()
        .filter(|r| r.level < log::Level::Debug)
        .collect();
    assert!(
        loud.is_empty(),
        "{} loud records: {:?}",
        loud.len(),
        loud.first()
    );
    assert!(sys.counters().refused(ErrorCode::UnknownHypercall) >= 500);
}

#[test]
fn refusals_are_summarised_when_the_run_ends() {
    capture();
    let doc = Document::default()
        .domain(testguest("summed", &[]))
        .thread(ThreadEntry::new("summed", "unknown_flood", &[50]));
    let (_dog, sys) = boot("refusals_are_summarised_when_the_run_ends", doc);
    let outcomes = sys.run();
    assert_eq!(ok(&outcomes[0].result), [50, 0]);
    let summary: Vec<Record> = records_about("domain `summed`: 50 refusals")
        .into_iter()
        .filter(|r| r.level <= log::Level::Info)
        .collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert!(
        summary[0].text.contains("UnknownHypercall 50"),
        "{summary:?}"
    );
    let _ = &summary[0].target;
}
