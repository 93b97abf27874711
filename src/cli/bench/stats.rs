//! Percentiles of timing samples.

use serde::{Deserialize, Serialize};

/// The median and the 95th percentile of a set of samples, with their count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        Some(Summary { n: samples.len(), p50: percentile(samples, 50.0)?, p95: percentile(samples, 95.0)? })
    }
}

/// The `q`-th percentile (0 to 100), interpolating linearly between the two
/// nearest ranks as NumPy's default does; `None` for no samples.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    let rank = q.clamp(0.0, 100.0) / 100.0 * last as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks_like_numpy() {
        let samples = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&samples, 50.0), Some(2.5));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&samples, 100.0), Some(4.0));
        // numpy.percentile([1, 2, 3, 4], 95) == 3.85
        assert!((percentile(&samples, 95.0).unwrap() - 3.85).abs() < 1e-12);
    }

    #[test]
    fn percentile_of_one_sample_is_that_sample_and_of_none_is_none() {
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn summary_counts_and_orders_samples() {
        let samples: Vec<f64> = (1..=21).rev().map(f64::from).collect();
        assert_eq!(Summary::of(&samples), Some(Summary { n: 21, p50: 11.0, p95: 20.0 }));
    }
}
