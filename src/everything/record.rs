//! Proposed masks as the records SAM's generator writes
//! (`output_mode="coco_rle"`), so tools that read SAM's JSON read ours.

use serde::{Deserialize, Serialize};

use super::generator::ProposedMask;

/// COCO's compressed RLE: `size` is `[height, width]`, `counts` the
/// pycocotools string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoRle {
    pub size: [u32; 2],
    pub counts: String,
}

/// One record of SAM's `SamAutomaticMaskGenerator.generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamRecord {
    pub segmentation: CocoRle,
    pub area: u64,
    /// `[x0, y0, x1 - x0, y1 - y0]` with `x1`, `y1` the last pixel, as SAM
    /// writes it (one less than the pixel width and height).
    pub bbox: [u32; 4],
    pub predicted_iou: f32,
    pub point_coords: [[f64; 2]; 1],
    pub stability_score: f32,
    /// `[x, y, width, height]` of the crop the mask was decoded in.
    pub crop_box: [u32; 4],
}

impl From<&ProposedMask> for SamRecord {
    fn from(m: &ProposedMask) -> SamRecord {
        let b = m.bbox;
        SamRecord {
            segmentation: CocoRle { size: m.rle.size, counts: m.rle.to_coco_string() },
            area: m.area,
            bbox: [b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0],
            predicted_iou: m.predicted_iou,
            point_coords: [m.point],
            stability_score: m.stability,
            crop_box: m.crop.xywh(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::everything::CropBox;
    use crate::model::{Mask, PixelBox, Rle, Size};

    #[test]
    fn record_round_trips_through_sam_json() {
        let mask = Mask::from_fn(40, 30, |x, y| (5..=20).contains(&x) && (3..=9).contains(&y));
        let proposed = ProposedMask {
            rle: mask.to_rle(),
            bbox: mask.bbox().unwrap(),
            area: mask.area(),
            predicted_iou: 0.93,
            stability: 0.97,
            point: [10.625, 6.5],
            crop: CropBox::whole(Size::new(40, 30)),
        };
        assert_eq!(proposed.bbox, PixelBox { x0: 5, y0: 3, x1: 20, y1: 9 });
        let record = SamRecord::from(&proposed);
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""bbox":[5,3,15,6]"#) && text.contains(r#""crop_box":[0,0,40,30]"#), "{text}");
        assert!(text.contains(r#""point_coords":[[10.625,6.5]]"#), "{text}");
        let back: SamRecord = serde_json::from_str(&text).unwrap();
        let rle = Rle::from_coco_string(back.segmentation.size, &back.segmentation.counts).unwrap();
        assert_eq!(back.segmentation.size, [30, 40]);
        assert_eq!(rle.to_mask().unwrap(), mask);
        assert_eq!(back, record);
    }
}
