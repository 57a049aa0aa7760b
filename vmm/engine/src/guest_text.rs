//! What a guest can put into the VMM's log, made harmless: its text escaped
//! (so it cannot forge log lines or drive the terminal), its prints
//! rate-limited, and its refused hypercalls counted rather than logged one
//! by one.
//!
//! - [`escape`]: control characters (C0, DEL, C1, including `\n`, `\r`,
//!   ESC), Unicode bidi controls and line/paragraph separators are shown
//!   as `\n`, `\x1b`, `\u{202e}`…, and a backslash as `\\`, so what the log
//!   shows is unambiguous and always one line.
//! - [`PrintLimiter`]: a token bucket per domain, [`PRINTS_PER_SECOND`]
//!   lines per second with bursts of [`PRINT_BURST`]; dropped lines are
//!   counted and reported in a summary line at most once per
//!   [`DROP_REPORT_PERIOD`] (and when a run ends).
//! - [`RefusalLog`]: refusals per [`ErrorCode`], summarised at most once per
//!   [`REFUSAL_SUMMARY_PERIOD`] (and when a run ends).

use shared_abi::ErrorCode;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Whether `c` must not reach a log as itself: it breaks or hides lines,
/// moves the cursor, or reorders what a reader sees.
fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL and C1 (U+0080..=U+009F)
        || matches!(
            c,
            '\u{061C}' // Arabic letter mark
                | '\u{200E}' | '\u{200F}' // LRM, RLM
                | '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
                | '\u{2066}'..='\u{2069}' // bidi isolates
        )
}

/// Guest text as it may be logged or shown: one line, every character
/// that could break, hide or reorder a line escaped (see the module docs).
pub fn escape(text: &str) -> String {
    if !text.chars().any(|c| needs_escape(c) || c == '\\') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        // Writing to a String cannot fail.
        let _ = match c {
            '\\' => out.write_str("\\\\"),
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            '\t' => out.write_str("\\t"),
            c if needs_escape(c) && u32::from(c) < 0x80 => write!(out, "\\x{:02x}", u32::from(c)),
            c if needs_escape(c) => write!(out, "\\u{{{:x}}}", u32::from(c)),
            c => out.write_char(c),
        };
    }
    out
}

/// Most bytes of one guest `Print` the VMM reads.
pub const MAX_PRINT: u64 = 4096;

/// A guest's `Print` text as its log line: trailing line breaks dropped,
/// the rest escaped (one line, nothing that breaks, hides or reorders it).
pub fn print_line(text: &str) -> String {
    escape(text.trim_end_matches(['\n', '\r']))
}

/// Guest print lines per second a domain may log, on average.
pub const PRINTS_PER_SECOND: f64 = 100.0;
/// Guest print lines a domain may log in one burst.
pub const PRINT_BURST: f64 = 200.0;

/// Shortest time between two "lines dropped" reports of one domain (the
/// count accumulates meanwhile), so the reports cannot flood the log either.
pub const DROP_REPORT_PERIOD: Duration = Duration::from_secs(1);

/// What to do with one print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintVerdict {
    /// Log it; first report `dropped` lines dropped since the last report
    /// (0 while a report was made less than [`DROP_REPORT_PERIOD`] ago).
    Log {
        /// Lines dropped before this one.
        dropped: u64,
    },
    /// Drop it (counted).
    Drop,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    dropped: u64,
    last_report: Instant,
}

/// A domain's print budget: a token bucket ([`PRINTS_PER_SECOND`],
/// [`PRINT_BURST`]) and the count of lines it dropped.
#[derive(Debug)]
pub struct PrintLimiter {
    bucket: Mutex<Bucket>,
}

impl Default for PrintLimiter {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: PRINT_BURST,
                last: Instant::now(),
                dropped: 0,
                last_report: Instant::now(),
            }),
        }
    }
}

impl PrintLimiter {
    /// Whether a print arriving at `now` may be logged.
    pub fn admit(&self, now: Instant) -> PrintVerdict {
        // Three plain numbers: consistent after any panic.
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * PRINTS_PER_SECOND).min(PRINT_BURST);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            let report =
                b.dropped > 0 && now.saturating_duration_since(b.last_report) >= DROP_REPORT_PERIOD;
            if report {
                b.last_report = now;
            }
            PrintVerdict::Log {
                dropped: if report {
                    std::mem::take(&mut b.dropped)
                } else {
                    0
                },
            }
        } else {
            b.dropped += 1;
            PrintVerdict::Drop
        }
    }

    /// Lines dropped and not yet reported (and forget them).
    pub fn take_dropped(&self) -> u64 {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        b.last_report = Instant::now();
        std::mem::take(&mut b.dropped)
    }
}

/// Longest a domain's refusals go without an info-level summary while
/// more keep coming.
pub const REFUSAL_SUMMARY_PERIOD: Duration = Duration::from_secs(10);

/// Room for every [`ErrorCode`] value.
const CODES: usize = 32;

/// A domain's refused hypercalls since their last summary, per code.
#[derive(Debug)]
pub struct RefusalLog {
    counts: [AtomicU64; CODES],
    /// When the first refusal not yet summarised arrived.
    since: Mutex<Option<Instant>>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            since: Mutex::new(None),
        }
    }
}

impl RefusalLog {
    /// Count a refusal at `now`; the summary to log if the period since the
    /// first unsummarised refusal is over.
    pub fn record(&self, code: ErrorCode, now: Instant) -> Option<String> {
        if let Some(c) = self.counts.get(code as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let due = {
            let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
            let start = *since.get_or_insert(now);
            now.saturating_duration_since(start) >= REFUSAL_SUMMARY_PERIOD
        };
        if due {
            self.summary()
        } else {
            None
        }
    }

    /// "1234 refusals (UnknownHypercall 1200, BootOver 34)" for the refusals
    /// not yet summarised (and start counting afresh); `None` if there were none.
    pub fn summary(&self) -> Option<String> {
        *self.since.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let mut total = 0u64;
        let mut parts = Vec::new();
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.swap(0, Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            total += n;
            match ErrorCode::from_u64(i as u64) {
                Some(code) => parts.push(format!("{code:?} {n}")),
                None => parts.push(format!("code {i} {n}")),
            }
        }
        (total > 0).then(|| format!("{total} refusals ({})", parts.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_shown_escaped() {
        assert_eq!(escape("plain text: ok"), "plain text: ok");
        assert_eq!(
            escape("a\nb\r\x1b[2K\u{7f}\u{85}\u{202e}\u{2028}\u{2066}\\n\tz"),
            r"a\nb\r\x1b[2K\x7f\u{85}\u{202e}\u{2028}\u{2066}\\n\tz"
        );
        assert_eq!(escape("é ✓ 漢"), "é ✓ 漢");
    }

    #[test]
    fn prints_beyond_the_burst_are_dropped_and_counted() {
        let l = PrintLimiter::default();
        let t0 = Instant::now();
        for _ in 0..200 {
            assert_eq!(l.admit(t0), PrintVerdict::Log { dropped: 0 });
        }
        for _ in 0..50 {
            assert_eq!(l.admit(t0), PrintVerdict::Drop);
        }
        // 100 ms later: 10 tokens back, no report yet (too soon).
        let t1 = t0 + Duration::from_millis(100);
        for _ in 0..10 {
            assert_eq!(l.admit(t1), PrintVerdict::Log { dropped: 0 });
        }
        assert_eq!(l.admit(t1), PrintVerdict::Drop);
        // A period later the first line reports every drop so far.
        let t2 = t0 + DROP_REPORT_PERIOD;
        assert_eq!(l.admit(t2), PrintVerdict::Log { dropped: 51 });
        assert_eq!(l.admit(t2), PrintVerdict::Log { dropped: 0 });
        while l.admit(t2) != PrintVerdict::Drop {}
        assert_eq!(l.take_dropped(), 1);
        assert_eq!(l.take_dropped(), 0);
    }

    #[test]
    fn refusals_are_summarised_once_per_period() {
        let r = RefusalLog::default();
        let t0 = Instant::now();
        for _ in 0..1200 {
            assert_eq!(r.record(ErrorCode::UnknownHypercall, t0), None);
        }
        assert_eq!(r.record(ErrorCode::BootOver, t0), None);
        let later = t0 + REFUSAL_SUMMARY_PERIOD;
        assert_eq!(
            r.record(ErrorCode::BootOver, later).as_deref(),
            Some("1202 refusals (UnknownHypercall 1200, BootOver 2)")
        );
        assert_eq!(r.summary(), None);
    }
}
