//! Per-image click traces and the dataset metrics computed from them:
//! NoC, NoF and mIoU after k clicks.

use serde::Serialize;

use super::clicker::Click;

/// NoC / NoF thresholds: IoU 0.85 and 0.90.
pub const NOC_THRESHOLDS: [f64; 2] = [0.85, 0.90];
/// mIoU is reported after this many clicks.
pub const MIOU_CLICKS: [usize; 3] = [1, 3, 5];

/// What happened on one image.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleResult {
    pub name: String,
    pub clicks: Vec<Click>,
    /// IoU after each click (`ious[k - 1]` after k clicks).
    pub ious: Vec<f64>,
    pub encode_ms: f64,
    /// Time of each decode, one per click.
    pub decode_ms: Vec<f64>,
}

impl SampleResult {
    /// IoU after `clicks` clicks. Once clicking stopped (early stop, or nothing
    /// left to fix) the last prediction stands.
    ///
    /// # Panics
    /// `clicks` is 0, or no click was made.
    pub fn iou_after(&self, clicks: usize) -> f64 {
        assert!(clicks > 0 && !self.ious.is_empty(), "IoU after {clicks} of {} clicks", self.ious.len());
        self.ious[clicks.min(self.ious.len()) - 1]
    }

    /// Clicks needed to reach `threshold`, `None` when it never was.
    pub fn clicks_to_reach(&self, threshold: f64) -> Option<usize> {
        self.ious.iter().position(|&iou| iou >= threshold).map(|i| i + 1)
    }

    /// NoC for one image: `max_clicks` when the threshold was never reached.
    pub fn noc(&self, threshold: f64, max_clicks: usize) -> usize {
        self.clicks_to_reach(threshold).unwrap_or(max_clicks)
    }
}

/// The metrics of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub max_clicks: usize,
    pub n: usize,
    pub noc85: f64,
    pub noc90: f64,
    /// Images that never reached IoU 0.85 (RITM's NoF counts NoC == max
    /// clicks, which also takes in images first reaching it at the last click).
    pub nof85: usize,
    pub nof90: usize,
    pub miou1: f64,
    pub miou3: f64,
    pub miou5: f64,
    /// Mean image encoding time.
    pub encode_ms: f64,
    /// Mean time of one decode (one click).
    pub decode_ms: f64,
}

impl Summary {
    /// # Panics
    /// A result has no clicks (the clicker always finds one on a non-empty object).
    pub fn of(results: &[SampleResult], max_clicks: usize) -> Summary {
        let [t85, t90] = NOC_THRESHOLDS;
        let [k1, k3, k5] = MIOU_CLICKS;
        let noc = |t| mean(results.iter().map(|r| r.noc(t, max_clicks) as f64));
        let nof = |t| results.iter().filter(|r| r.clicks_to_reach(t).is_none()).count();
        let miou = |k| mean(results.iter().map(|r| r.iou_after(k)));
        Summary {
            max_clicks,
            n: results.len(),
            noc85: noc(t85),
            noc90: noc(t90),
            nof85: nof(t85),
            nof90: nof(t90),
            miou1: miou(k1),
            miou3: miou(k3),
            miou5: miou(k5),
            encode_ms: mean(results.iter().map(|r| r.encode_ms)),
            decode_ms: mean(results.iter().flat_map(|r| r.decode_ms.iter().copied())),
        }
    }
}

/// Mean of the values, NaN (JSON `null`) for none.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ious: &[f64]) -> SampleResult {
        SampleResult {
            name: "x".into(),
            clicks: vec![Click { x: 0, y: 0, positive: true }; ious.len()],
            ious: ious.to_vec(),
            encode_ms: 100.0,
            decode_ms: vec![10.0; ious.len()],
        }
    }

    #[test]
    fn noc_counts_clicks_to_the_first_crossing() {
        let r = result(&[0.5, 0.86, 0.8, 0.91, 0.95]);
        assert_eq!((r.noc(0.85, 20), r.noc(0.90, 20)), (2, 4));
        assert_eq!(result(&[0.5, 0.6]).noc(0.85, 20), 20);
    }

    #[test]
    fn iou_after_stopping_is_the_last_one() {
        let r = result(&[0.5, 0.7, 0.92, 0.93, 0.95]);
        assert_eq!((r.iou_after(1), r.iou_after(3), r.iou_after(20)), (0.5, 0.92, 0.95));
    }

    #[test]
    fn summary_aggregates_over_images() {
        let mut slow = result(&[0.2, 0.4, 0.6, 0.8, 0.84, 0.86]);
        slow.decode_ms = vec![40.0; 6];
        slow.encode_ms = 300.0;
        // Reaches 0.90 only at the last of 6 allowed clicks: not a failure.
        let last = result(&[0.5, 0.5, 0.5, 0.5, 0.5, 0.9]);
        let quick = result(&[0.95, 0.95, 0.95, 0.96, 0.97]);
        let s = Summary::of(&[slow, last, quick], 6);
        assert_eq!(s.n, 3);
        assert_eq!(s.noc85, (6.0 + 6.0 + 1.0) / 3.0);
        assert_eq!(s.noc90, (6.0 + 6.0 + 1.0) / 3.0);
        assert_eq!((s.nof85, s.nof90), (0, 1));
        assert!((s.miou1 - (0.2 + 0.5 + 0.95) / 3.0).abs() < 1e-12);
        assert!((s.miou3 - (0.6 + 0.5 + 0.95) / 3.0).abs() < 1e-12);
        assert!((s.miou5 - (0.84 + 0.5 + 0.97) / 3.0).abs() < 1e-12);
        assert!((s.encode_ms - 500.0 / 3.0).abs() < 1e-9);
        // 6 decodes at 40 ms, 11 at 10 ms.
        assert!((s.decode_ms - (240.0 + 110.0) / 17.0).abs() < 1e-9);
    }
}
