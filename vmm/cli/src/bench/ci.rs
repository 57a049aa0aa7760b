//! A distribution-free confidence interval for a median, from order
//! statistics: the figure of each round is one observation, and the
//! interval is `[x(k), x(n+1-k)]` of the sorted observations, whose
//! coverage follows from the binomial distribution alone (each observation
//! falls below the true median with probability ½), whatever the host's
//! noise looks like.
//!
//! With 10 rounds the interval is the 2nd to the 9th order statistic, at
//! 1 − 2 · P(Bin(10, ½) ≤ 1) = 1 − 22/1024 ≈ 97.9 % confidence.

use serde::Serialize;

/// The confidence the interval aims for (at least this, when the number
/// of observations allows it).
pub const TARGET: f64 = 0.95;

/// A median and its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// The median of the observations.
    pub median: f64,
    /// The interval's lower end: the `k`-th smallest observation.
    pub lo: f64,
    /// Its upper end: the `k`-th largest.
    pub hi: f64,
    /// The exact coverage of `[lo, hi]` for the true median (0 when there
    /// are too few observations for any interval, then `lo`/`hi` are the
    /// extremes).
    pub confidence: f64,
    /// Observations (rounds).
    pub n: usize,
}

impl Estimate {
    /// Whether this interval lies wholly below `other`'s (a difference the
    /// noise does not explain, at the two intervals' confidence).
    pub fn below(&self, other: &Estimate) -> bool {
        self.hi < other.lo
    }
}

/// P(Bin(n, ½) ≤ j), exactly (n ≤ 1000 keeps the sum in range).
fn binomial_cdf_half(n: usize, j: usize) -> f64 {
    let mut coef = 1.0f64; // C(n, 0)
    let mut sum = 0.0;
    for i in 0..=j.min(n) {
        if i > 0 {
            coef = coef * (n + 1 - i) as f64 / i as f64;
        }
        sum += coef;
    }
    sum / 2f64.powi(i32::try_from(n).unwrap_or(i32::MAX))
}

/// The order statistic `k` (1-based from each end) for `n` observations:
/// the largest `k` whose interval still has at least [`TARGET`] coverage,
/// and that coverage. `None` if even `k = 1` falls short.
pub fn order_statistic(n: usize) -> Option<(usize, f64)> {
    let coverage = |k: usize| 1.0 - 2.0 * binomial_cdf_half(n, k - 1);
    (1..=n.div_ceil(2))
        .take_while(|&k| coverage(k) >= TARGET)
        .last()
        .map(|k| (k, coverage(k)))
}

/// The median of `values` with its order-statistic interval; `None` for
/// no values (or a NaN among them).
pub fn median_ci(values: &[f64]) -> Option<Estimate> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let at = |i: usize| v.get(i).copied();
    let median = if n % 2 == 1 {
        at(n / 2)?
    } else {
        (at(n / 2 - 1)? + at(n / 2)?) / 2.0
    };
    let (lo, hi, confidence) = match order_statistic(n) {
        Some((k, c)) => (at(k - 1)?, at(n - k)?, c),
        None => (at(0)?, at(n - 1)?, 0.0),
    };
    Some(Estimate {
        median,
        lo,
        hi,
        confidence,
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_rounds_use_the_second_and_ninth_order_statistics() {
        let (k, c) = order_statistic(10).unwrap();
        assert_eq!(k, 2);
        assert!((c - (1.0 - 22.0 / 1024.0)).abs() < 1e-12, "{c}");
        // k = 3 would be 1 - 2 * 56/1024 ≈ 0.891 < 0.95.
        assert!(1.0 - 2.0 * binomial_cdf_half(10, 2) < TARGET);
    }

    #[test]
    fn too_few_rounds_give_no_interval() {
        // n = 5: even [min, max] covers only 1 - 2/32 = 0.9375.
        assert_eq!(order_statistic(5), None);
        let (k, c) = order_statistic(6).unwrap();
        assert_eq!(k, 1);
        assert!((c - (1.0 - 2.0 / 64.0)).abs() < 1e-12);
        let e = median_ci(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((e.median, e.lo, e.hi, e.confidence), (2.0, 1.0, 3.0, 0.0));
    }

    #[test]
    fn binomial_sums_are_exact() {
        assert_eq!(binomial_cdf_half(4, 4), 1.0);
        assert_eq!(binomial_cdf_half(4, 0), 1.0 / 16.0);
        assert_eq!(binomial_cdf_half(4, 1), 5.0 / 16.0);
        assert!((binomial_cdf_half(100, 50) - 0.539_794_618).abs() < 1e-6);
    }

    #[test]
    fn median_and_interval_of_ten_rounds() {
        let v = [1.3, 0.9, 1.1, 1.0, 1.2, 5.0, 1.05, 0.95, 1.15, 1.25];
        let e = median_ci(&v).unwrap();
        assert!((e.median - 1.125).abs() < 1e-12);
        assert_eq!((e.lo, e.hi, e.n), (0.95, 1.3, 10));
        // A ratio whose median is below 1 but whose interval reaches 1 is noise.
        let noisy = median_ci(&[0.9, 0.95, 0.97, 0.98, 0.99, 0.99, 1.0, 1.01, 1.02, 1.2]).unwrap();
        assert!(noisy.median < 1.0 && noisy.hi >= 1.0);
        let a = median_ci(&[1.0; 10]).unwrap();
        let b = median_ci(&[2.0; 10]).unwrap();
        assert!(a.below(&b) && !b.below(&a));
        assert_eq!(median_ci(&[]), None);
        assert_eq!(median_ci(&[f64::NAN]), None);
    }
}
