//! Which decoded masks are good enough to propose: SAM's quality filters
//! and its rule against masks cut off by a crop's edge.

use super::crops::CropBox;
use crate::model::{PixelBox, Size};

/// How close (pixels) a mask's box may come to a crop edge that is not an
/// image edge before the mask counts as cut off (SAM's `atol`).
pub const CROP_EDGE_TOLERANCE: f32 = 20.0;

/// SAM's first quality filter: predicted IoU strictly above
/// `pred_iou_thresh` (0 turns it off). It needs no pixels, so it runs
/// before a mask is upscaled.
pub fn passes_iou(predicted_iou: f32, pred_iou_thresh: f32) -> bool {
    pred_iou_thresh <= 0.0 || predicted_iou > pred_iou_thresh
}

/// SAM's second quality filter: stability at least `stability_thresh` (0
/// turns it off). An empty mask never passes (SAM's score is 0/0 there).
pub fn is_stable(stability: f32, area: u64, stability_thresh: f32) -> bool {
    stability_thresh <= 0.0 || (area > 0 && stability >= stability_thresh)
}

/// SAM's `is_box_near_crop_edge`: whether a mask's box (image frame,
/// inclusive ends) comes within [`CROP_EDGE_TOLERANCE`] of an edge of
/// `crop` that is not also an edge of the image. Such a mask probably
/// continues outside the crop; another crop (or the whole image) sees it whole.
pub fn near_crop_edge(bbox: &PixelBox, crop: &CropBox, image: Size) -> bool {
    let b = [bbox.x0, bbox.y0, bbox.x1, bbox.y1].map(|v| v as f32);
    let c = [crop.x0, crop.y0, crop.x1, crop.y1].map(|v| v as f32);
    let i = [0.0, 0.0, image.width as f32, image.height as f32];
    let close = |a: f32, b: f32| (a - b).abs() <= CROP_EDGE_TOLERANCE;
    (0..4).any(|k| close(b[k], c[k]) && !close(b[k], i[k]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both filters, in SAM's order.
    fn passes_quality(predicted_iou: f32, stability: f32, area: u64, pred_iou_thresh: f32, stability_thresh: f32) -> bool {
        passes_iou(predicted_iou, pred_iou_thresh) && is_stable(stability, area, stability_thresh)
    }

    #[test]
    fn predicted_iou_is_strict_and_stability_inclusive() {
        assert!(!passes_quality(0.88, 1.0, 10, 0.88, 0.95));
        assert!(passes_quality(0.8801, 0.95, 10, 0.88, 0.95));
        assert!(!passes_quality(0.99, 0.9499, 10, 0.88, 0.95));
        assert!(passes_quality(0.1, 0.1, 10, 0.0, 0.0), "zero thresholds filter nothing");
    }

    #[test]
    fn empty_masks_fail_the_stability_filter() {
        assert!(!passes_quality(0.99, 1.0, 0, 0.88, 0.95));
        assert!(passes_quality(0.99, 1.0, 0, 0.88, 0.0));
    }

    #[test]
    fn only_inner_crop_edges_cut_masks_off() {
        let image = Size::new(640, 427);
        let crop = CropBox { x0: 0, y0: 0, x1: 393, y1: 286, layer: 1 };
        let inside = PixelBox { x0: 100, y0: 100, x1: 200, y1: 200 };
        assert!(!near_crop_edge(&inside, &crop, image));
        // Touching the image's own left and top edges is fine...
        assert!(!near_crop_edge(&PixelBox { x0: 0, y0: 0, x1: 200, y1: 200 }, &crop, image));
        // ...the crop's right edge (an inner edge) is not, within 20 px.
        assert!(near_crop_edge(&PixelBox { x0: 100, y0: 100, x1: 373, y1: 200 }, &crop, image));
        assert!(!near_crop_edge(&PixelBox { x0: 100, y0: 100, x1: 372, y1: 200 }, &crop, image));
        // The whole image as a crop never cuts anything off.
        let whole = CropBox::whole(image);
        assert!(!near_crop_edge(&PixelBox { x0: 0, y0: 0, x1: 639, y1: 426 }, &whole, image));
    }
}
