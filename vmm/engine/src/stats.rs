//! Latency statistics from the guests' own `rdtsc` samples, with the exit
//! floor measured in the same run: on a nested host an exit costs ~100 µs,
//! so the ratio to the floor is the figure that carries to other machines.

use crate::domain::Domain;
use crate::ids::Slot;
use crate::thread::caps::CapTable;
use hdrhistogram::Histogram;
use shared_abi::FLOOR_SLOT;
use std::fmt;

/// Highest value tracked (about 7 minutes at 2.6 GHz).
const MAX_TRACKED: u64 = 1 << 40;

/// An empty histogram of TSC cycles (3 significant digits, up to ~7
/// minutes): one shape for every latency figure, so they can be merged.
pub fn histogram() -> Option<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, MAX_TRACKED, 3).ok()
}

/// Record `cycles` into `h`, clamped into the tracked range (a wild sample
/// is kept at the edge rather than lost).
pub fn record(h: &mut Histogram<u64>, cycles: u64) {
    let _ = h.record(cycles.clamp(1, MAX_TRACKED));
}

/// Label of the floor row.
pub const FLOOR: &str = "floor (null out round trip)";

/// One row of the summary: one callee entry (or the floor).
#[derive(Clone, Debug)]
pub struct Row {
    /// `domain.entry`, or [`FLOOR`].
    pub label: String,
    /// The samples, in TSC cycles.
    pub hist: Histogram<u64>,
}

impl Row {
    /// Median in cycles.
    pub fn p50(&self) -> u64 {
        self.hist.value_at_quantile(0.5)
    }
    /// 99th percentile in cycles.
    pub fn p99(&self) -> u64 {
        self.hist.value_at_quantile(0.99)
    }
}

/// Per-entry call latency and the floor, as the guests measured them.
#[derive(Clone, Debug, Default)]
pub struct LatencySummary {
    /// The floor: one `Nop` hypercall round trip.
    pub floor: Option<Row>,
    /// One row per callee entry, sorted by label.
    pub calls: Vec<Row>,
    /// Guest TSC frequency (0 when unknown: ns columns are then omitted).
    pub tsc_khz: u32,
}

impl LatencySummary {
    /// Read every domain's sample ring; `caps` names each sample's callee.
    pub fn collect(domains: &[Domain], caps: &CapTable) -> Self {
        let mut s = LatencySummary {
            tsc_khz: domains.first().map_or(0, |d| d.tsc_khz),
            ..Default::default()
        };
        for d in domains {
            for sample in d.read_samples() {
                let label = if sample.slot == FLOOR_SLOT {
                    FLOOR.to_owned()
                } else {
                    match caps
                        .get(d.id, Slot::new(sample.slot))
                        .and_then(|c| Some((domains.get(c.domain.index())?, c.entry)))
                    {
                        Some((callee, entry)) => {
                            format!("{}.{}", callee.name, callee.entry_name(entry))
                        }
                        None => continue, // refused calls (bad slot) have no callee
                    }
                };
                s.record(&label, sample.cycles);
            }
        }
        s.calls.sort_by(|a, b| a.label.cmp(&b.label));
        s
    }

    /// Add one sample.
    pub fn record(&mut self, label: &str, cycles: u64) {
        let row = if label == FLOOR {
            if self.floor.is_none() {
                self.floor = histogram().map(|hist| Row {
                    label: label.to_owned(),
                    hist,
                });
            }
            self.floor.as_mut()
        } else {
            if !self.calls.iter().any(|r| r.label == label) {
                if let Some(hist) = histogram() {
                    self.calls.push(Row {
                        label: label.to_owned(),
                        hist,
                    });
                }
            }
            self.calls.iter_mut().find(|r| r.label == label)
        };
        if let Some(r) = row {
            record(&mut r.hist, cycles);
        }
    }

    /// Median floor in cycles.
    pub fn floor_p50(&self) -> Option<u64> {
        self.floor.as_ref().map(Row::p50).filter(|v| *v > 0)
    }

    /// `call median / (2 × floor median)`: a call+return is two exits.
    pub fn ratio_to_floor(&self, row: &Row) -> Option<f64> {
        self.floor_p50()
            .map(|f| row.p50() as f64 / (2.0 * f as f64))
    }

    /// Cycles to microseconds.
    pub fn us(&self, cycles: u64) -> Option<f64> {
        (self.tsc_khz > 0).then(|| cycles as f64 * 1000.0 / f64::from(self.tsc_khz))
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |c: u64| {
            self.us(c)
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
        };
        writeln!(
            f,
            "{:<28} {:>7} {:>12} {:>12} {:>9} {:>9} {:>10}",
            "latency (guest rdtsc)",
            "count",
            "p50 cycles",
            "p99 cycles",
            "p50 µs",
            "p99 µs",
            "p50/floor"
        )?;
        let mut row = |r: &Row, ratio: String| {
            writeln!(
                f,
                "{:<28} {:>7} {:>12} {:>12} {:>9} {:>9} {:>10}",
                r.label,
                r.hist.len(),
                r.p50(),
                r.p99(),
                us(r.p50()),
                us(r.p99()),
                ratio
            )
        };
        if let Some(r) = &self.floor {
            row(r, "1 exit".to_owned())?;
        }
        for r in &self.calls {
            row(
                r,
                self.ratio_to_floor(r)
                    .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}×2")),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_against_two_exits() {
        let mut s = LatencySummary {
            tsc_khz: 1_000_000,
            ..Default::default()
        };
        for _ in 0..100 {
            s.record(FLOOR, 1000);
            s.record("kv.put", 2100);
        }
        let r = s.calls[0].clone();
        let ratio = s.ratio_to_floor(&r).unwrap();
        assert!((ratio - 1.05).abs() < 0.01, "{ratio}");
        assert!((s.us(1000).unwrap() - 1.0).abs() < 1e-9);
        let text = s.to_string();
        assert!(text.contains("kv.put") && text.contains("floor"));
    }
}
