//! Duplicate removal: non-maximum suppression on mask boxes, with mask IoU
//! deciding between masks whose boxes are identical.

use crate::model::{PixelBox, Rle};

/// A box as SAM's NMS sees it: `[x0, y0, x1, y1]` with the inclusive pixel
/// ends of `PixelBox`, so its area is `(x1 - x0) * (y1 - y0)` as in torchvision.
pub type NmsBox = [f32; 4];

pub fn nms_box(b: &PixelBox) -> NmsBox {
    [b.x0 as f32, b.y0 as f32, b.x1 as f32, b.y1 as f32]
}

/// torchvision's box IoU, in float32 like its CPU kernel (a zero-area pair
/// gives NaN, which suppresses nothing).
pub fn box_iou(a: &NmsBox, b: &NmsBox) -> f32 {
    let area = |r: &NmsBox| (r[2] - r[0]) * (r[3] - r[1]);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / (area(a) + area(b) - inter)
}

/// Greedy NMS as torchvision's `nms`: visit boxes by descending score (ties
/// in input order), keep a box unless a kept one overlaps it by more than
/// `threshold`. Boxes alone cannot tell apart two masks that share a box
/// (an object and its background both spanning the frame), so for identical
/// boxes `mask_iou(kept, other)` decides instead. Returns the kept indices
/// by descending score.
pub fn nms(boxes: &[NmsBox], scores: &[f32], threshold: f32, mut mask_iou: impl FnMut(usize, usize) -> f64) -> Vec<usize> {
    assert_eq!(boxes.len(), scores.len(), "one score per box");
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // A stable sort keeps equal scores in input order, as torchvision does.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[rank + 1..] {
            if suppressed[j] {
                continue;
            }
            let overlap = if boxes[i] == boxes[j] { mask_iou(i, j) } else { f64::from(box_iou(&boxes[i], &boxes[j])) };
            if overlap > f64::from(threshold) {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// IoU of two masks of the same size straight from their COCO runs, without
/// decoding them (1 when both are empty).
pub fn rle_iou(a: &Rle, b: &Rle) -> f64 {
    assert_eq!(a.size, b.size, "masks differ in size");
    let (ra, rb) = (set_runs(a), set_runs(b));
    let area = |runs: &[(u64, u64)]| runs.iter().map(|(s, e)| e - s).sum::<u64>();
    let (mut i, mut j, mut inter) = (0, 0, 0u64);
    while i < ra.len() && j < rb.len() {
        let (s, e) = (ra[i].0.max(rb[j].0), ra[i].1.min(rb[j].1));
        inter += e.saturating_sub(s);
        if ra[i].1 < rb[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    let union = area(&ra) + area(&rb) - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// The runs of set pixels as `[start, end)` positions in column-major order.
fn set_runs(rle: &Rle) -> Vec<(u64, u64)> {
    let mut runs = Vec::with_capacity(rle.counts.len() / 2);
    let mut at = 0u64;
    for (k, &count) in rle.counts.iter().enumerate() {
        let end = at + u64::from(count);
        if k % 2 == 1 && count > 0 {
            runs.push((at, end));
        }
        at = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mask;

    fn no_masks(_: usize, _: usize) -> f64 {
        panic!("no boxes are identical here")
    }

    #[test]
    fn box_iou_uses_torchvision_areas() {
        assert_eq!(box_iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]), 50.0 / 150.0);
        assert_eq!(box_iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!(box_iou(&[3.0, 0.0, 3.0, 10.0], &[3.0, 0.0, 3.0, 10.0]).is_nan());
    }

    #[test]
    fn overlapping_boxes_keep_the_best_score() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 11.0]];
        let scores = [0.90, 0.95, 0.5, 0.91];
        // 1 suppresses 0 (IoU 90 / 110) and 3 (IoU 90 / 120); 2 stands alone.
        assert_eq!(nms(&boxes, &scores, 0.7, no_masks), vec![1, 2]);
        // At a looser threshold 3 survives.
        assert_eq!(nms(&boxes, &scores, 0.8, no_masks), vec![1, 3, 2]);
    }

    #[test]
    fn suppression_needs_more_than_the_threshold() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0]]; // IoU exactly 0.5
        assert_eq!(nms(&boxes, &[1.0, 0.5], 0.5, no_masks), vec![0, 1]);
        assert_eq!(nms(&boxes, &[1.0, 0.5], 0.49, no_masks), vec![0]);
    }

    #[test]
    fn equal_scores_keep_input_order() {
        let boxes = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0], [0.0, 0.0, 10.0, 9.0]];
        assert_eq!(nms(&boxes, &[0.5, 0.5, 0.5], 0.7, no_masks), vec![0]);
        assert_eq!(nms(&boxes, &[0.5, 0.6, 0.5], 0.7, no_masks), vec![1]);
    }

    #[test]
    fn identical_boxes_are_duplicates_only_when_their_masks_overlap() {
        // An object and its complement share the full-frame box.
        let object = Mask::from_fn(20, 20, |x, y| x == 0 || y == 0 || x == 19 || y == 19 || (x > 5 && x < 15));
        let background = Mask::from_fn(20, 20, |x, y| !object.get(x, y) || x == 0 || y == 0 || x == 19 || y == 19);
        let near_copy = Mask::from_fn(20, 20, |x, y| object.get(x, y) || (x == 5 && y == 5));
        let rles = [object.to_rle(), background.to_rle(), near_copy.to_rle()];
        let frame = nms_box(&object.bbox().unwrap());
        let boxes = [frame; 3];
        let kept = nms(&boxes, &[0.9, 0.8, 0.7], 0.7, |a, b| rle_iou(&rles[a], &rles[b]));
        assert_eq!(kept, vec![0, 1], "the background is kept, the near copy of the object is not");
    }

    #[test]
    fn rle_iou_matches_pixel_iou() {
        let mut state = 7u32;
        let mut noisy = || {
            Mask::from_fn(23, 17, |x, _| {
                state = state.wrapping_mul(1103515245).wrapping_add(12345);
                x > 3 && (state >> 16) % 3 == 0
            })
        };
        let (a, b) = (noisy(), noisy());
        let empty = Mask::from_fn(23, 17, |_, _| false);
        for (p, q) in [(&a, &b), (&a, &a), (&a, &empty), (&empty, &empty)] {
            assert!((rle_iou(&p.to_rle(), &q.to_rle()) - p.iou(q)).abs() < 1e-12);
        }
    }
}
