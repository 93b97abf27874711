//! Crop layers: the whole image, then overlapping tiles, each decoded
//! against its own embedding so small objects get more pixels.

use serde::Serialize;

use crate::model::Size;

/// A region of the image, `x0..x1` by `y0..y1` (ends exclusive), and the
/// crop layer it belongs to (0 is the whole image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CropBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
    pub layer: usize,
}

impl CropBox {
    /// The layer-0 crop: the whole image.
    pub fn whole(size: Size) -> CropBox {
        CropBox { x0: 0, y0: 0, x1: size.width, y1: size.height, layer: 0 }
    }

    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width()) * u64::from(self.height())
    }

    /// `[x, y, width, height]`, as SAM's records write `crop_box`.
    pub fn xywh(&self) -> [u32; 4] {
        [self.x0, self.y0, self.width(), self.height()]
    }
}

/// SAM's `generate_crop_boxes`: the whole image, then for layer `i` a
/// `2^i` x `2^i` tiling whose tiles overlap by `overlap_ratio` of the short
/// side (scaled down in later layers). Tiles go column by column.
pub fn crop_boxes(size: Size, layers: usize, overlap_ratio: f64) -> Vec<CropBox> {
    let (w, h) = (size.width, size.height);
    let short_side = f64::from(w.min(h));
    let mut boxes = vec![CropBox::whole(size)];
    for layer in 1..=layers {
        let per_side = 1u32 << layer;
        let overlap = (overlap_ratio * short_side * (2.0 / f64::from(per_side))) as u32;
        let crop_len = |len: u32| ((f64::from(overlap) * f64::from(per_side - 1) + f64::from(len)) / f64::from(per_side)).ceil() as u32;
        let (crop_w, crop_h) = (crop_len(w), crop_len(h));
        for i in 0..per_side {
            for j in 0..per_side {
                let (x0, y0) = ((crop_w - overlap) * i, (crop_h - overlap) * j);
                boxes.push(CropBox { x0, y0, x1: (x0 + crop_w).min(w), y1: (y0 + crop_h).min(h), layer });
            }
        }
    }
    boxes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_one_matches_sam_generate_crop_boxes() {
        // generate_crop_boxes((427, 640), 1, 512 / 1500):
        // overlap int(512/1500 * 427) = 145, crop_w ceil((145 + 640) / 2) = 393,
        // crop_h ceil((145 + 427) / 2) = 286, x0 in (0, 248), y0 in (0, 141).
        let boxes = crop_boxes(Size::new(640, 427), 1, 512.0 / 1500.0);
        let xyxy: Vec<[u32; 4]> = boxes.iter().map(|b| [b.x0, b.y0, b.x1, b.y1]).collect();
        assert_eq!(
            xyxy,
            vec![[0, 0, 640, 427], [0, 0, 393, 286], [0, 141, 393, 427], [248, 0, 640, 286], [248, 141, 640, 427]]
        );
        assert_eq!(boxes.iter().map(|b| b.layer).collect::<Vec<_>>(), vec![0, 1, 1, 1, 1]);
    }

    #[test]
    fn no_layers_is_the_whole_image() {
        assert_eq!(crop_boxes(Size::new(5, 3), 0, 0.3), vec![CropBox { x0: 0, y0: 0, x1: 5, y1: 3, layer: 0 }]);
        assert_eq!(CropBox::whole(Size::new(5, 3)).xywh(), [0, 0, 5, 3]);
    }
}
