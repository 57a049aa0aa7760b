//! Order statistics of one measured figure, from raw TSC-cycle samples.

use hdrhistogram::Histogram;
use serde::Serialize;

/// min / p50 / p90 / p99 / max of a figure, in TSC cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Samples.
    pub count: u64,
    /// Smallest sample.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
}

pub use ferry_engine::stats::{histogram, record};

impl Stats {
    /// Statistics of `samples` (cycles); `None` when there are none.
    pub fn from_cycles(samples: &[u64]) -> Option<Self> {
        let mut h = histogram()?;
        for &s in samples {
            record(&mut h, s);
        }
        (!h.is_empty()).then(|| Self::from_histogram(&h))
    }

    /// Statistics of a filled histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// `(quantile, cycles)` points of the empirical CDF of `samples`, at most
/// `points` of them (for plotting; exact at the quantiles it lists).
pub fn cdf(samples: &[u64], points: usize) -> Vec<(f64, u64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 || points == 0 {
        return Vec::new();
    }
    let step = (n / points).max(1);
    let mut out: Vec<(f64, u64)> = sorted
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, &v)| ((i + 1) as f64 / n as f64, v))
        .collect();
    if let Some(&last) = sorted.last() {
        if out.last().map(|p| p.0) != Some(1.0) {
            out.push((1.0, last));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics() {
        let samples: Vec<u64> = (1..=1000).collect();
        let s = Stats::from_cycles(&samples).unwrap();
        assert_eq!((s.count, s.min, s.max), (1000, 1, 1000));
        assert!((499..=501).contains(&s.p50), "{s:?}");
        assert!((899..=901).contains(&s.p90));
        assert!((989..=991).contains(&s.p99));
        assert_eq!(Stats::from_cycles(&[]), None);
    }

    #[test]
    fn cdf_is_monotone_and_ends_at_one() {
        let samples: Vec<u64> = (0..10_000).map(|i| (i * 7919) % 10_007).collect();
        let c = cdf(&samples, 100);
        assert!(c.len() <= 102 && c.len() >= 100);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(c.last().unwrap().0, 1.0);
    }
}
