//! The knobs of automatic mask generation, with SAM's defaults.

use anyhow::{ensure, Result};

/// How densely to prompt and how strictly to filter. `Default` gives
/// `SamAutomaticMaskGenerator`'s defaults. The stability offset and the
/// mask threshold are the model's (`STABILITY_OFFSET`, `MASK_THRESHOLD`),
/// which are SAM's defaults too.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Grid points per image side in crop layer 0 (`points_per_side`).
    pub points_per_side: usize,
    /// Prompts decoded per batch; only memory and progress granularity
    /// depend on it, never the result (`points_per_batch`).
    pub points_per_batch: usize,
    /// Keep masks whose predicted IoU is above this (`pred_iou_thresh`; 0 keeps all).
    pub pred_iou_thresh: f32,
    /// Keep masks whose stability score is at least this (`stability_score_thresh`; 0 keeps all).
    pub stability_thresh: f32,
    /// Box IoU above which a lower-scored mask of the same crop is a duplicate (`box_nms_thresh`).
    pub box_nms_iou: f32,
    /// Crop layers after the whole image: layer `i` tiles the image `2^i` x `2^i` (`crop_n_layers`).
    pub crop_layers: usize,
    /// Box IoU above which masks from different crops are duplicates (`crop_nms_thresh`).
    pub crop_nms_iou: f32,
    /// How much neighbouring crops of layer 1 overlap, as a fraction of the short side (`crop_overlap_ratio`).
    pub crop_overlap_ratio: f64,
    /// Points per side shrink by this factor per crop layer (`crop_n_points_downscale_factor`).
    pub crop_points_downscale: usize,
    /// Fill holes and drop islands smaller than this many pixels, then
    /// deduplicate again; 0 turns it off (`min_mask_region_area`).
    pub min_area: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            points_per_side: 32,
            points_per_batch: 64,
            pred_iou_thresh: 0.88,
            stability_thresh: 0.95,
            box_nms_iou: 0.7,
            crop_layers: 0,
            crop_nms_iou: 0.7,
            crop_overlap_ratio: 512.0 / 1500.0,
            crop_points_downscale: 1,
            min_area: 0,
        }
    }
}

impl Settings {
    /// # Errors
    /// A setting outside its range, named.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.points_per_side >= 1, "points per side must be at least 1");
        ensure!(self.points_per_batch >= 1, "points per batch must be at least 1");
        ensure!(self.crop_points_downscale >= 1, "crop points downscale factor must be at least 1");
        for (name, value) in [
            ("predicted IoU threshold", self.pred_iou_thresh),
            ("stability threshold", self.stability_thresh),
            ("box NMS IoU", self.box_nms_iou),
            ("crop NMS IoU", self.crop_nms_iou),
        ] {
            ensure!((0.0..=1.0).contains(&value), "{name} must be in 0..=1, got {value}");
        }
        ensure!(
            (0.0..1.0).contains(&self.crop_overlap_ratio),
            "crop overlap ratio must be in 0..1, got {}",
            self.crop_overlap_ratio
        );
        let last = self.crop_layers;
        let deepest = super::grid::points_per_side(self.points_per_side, last, self.crop_points_downscale);
        ensure!(deepest >= 1, "{} points per side downscaled by {} leaves no points in crop layer {last}", self.points_per_side, self.crop_points_downscale);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(Settings::default().validate().is_ok());
        let bad = Settings { pred_iou_thresh: 1.5, ..Settings::default() };
        assert_eq!(bad.validate().unwrap_err().to_string(), "predicted IoU threshold must be in 0..=1, got 1.5");
        let bad = Settings { points_per_side: 0, ..Settings::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("points per side"));
        let bad = Settings { points_per_side: 3, crop_layers: 2, crop_points_downscale: 2, ..Settings::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("crop layer 2"));
    }
}
