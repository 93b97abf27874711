//! From low-resolution logits to a mask at original resolution.
//!
//! The reference `Sam.postprocess_masks` upsamples to the model input size,
//! crops the padding away, then resizes to the original image, both steps
//! bilinear with `align_corners=False`; the mask is `logits > 0`.

use ndarray::{Array2, ArrayView2};

use super::mask::Mask;
use super::preprocess::Geometry;

/// Logit threshold separating object from background.
pub const MASK_THRESHOLD: f32 = 0.0;
/// Offset of SAM's stability score: the mask must hold when the threshold
/// moves by this much either way.
pub const STABILITY_OFFSET: f32 = 1.0;

/// A mask at original resolution with its stability score.
pub struct Upscaled {
    pub mask: Mask,
    pub stability: f32,
}

/// Upscales one low-res logit map to the original image and thresholds it.
pub fn upscale(low_res: ArrayView2<f32>, geometry: &Geometry) -> Upscaled {
    let side = geometry.input_side as usize;
    let (crop_w, crop_h) = (geometry.resized.width as usize, geometry.resized.height as usize);
    let input_frame = resize_bilinear(low_res, side, side, crop_w, crop_h);
    let (w, h) = (geometry.original.width as usize, geometry.original.height as usize);
    let logits = resize_bilinear(input_frame.view(), w, h, w, h);
    let (mut strict, mut loose) = (0u64, 0u64);
    let pixels = logits
        .iter()
        .map(|&l| {
            strict += u64::from(l > MASK_THRESHOLD + STABILITY_OFFSET);
            loose += u64::from(l > MASK_THRESHOLD - STABILITY_OFFSET);
            u8::from(l > MASK_THRESHOLD)
        })
        .collect();
    // An empty loose mask is perfectly stable: nothing can flip.
    let stability = if loose == 0 { 1.0 } else { strict as f32 / loose as f32 };
    Upscaled { mask: Mask::from_pixels(w as u32, h as u32, pixels), stability }
}

/// Bilinear resampling of `src` as if resized to `full_w` x `full_h`
/// (`torch.nn.functional.interpolate`, `align_corners=False`, no antialias),
/// keeping only the top-left `out_w` x `out_h` of the result.
fn resize_bilinear(
    src: ArrayView2<f32>,
    full_w: usize,
    full_h: usize,
    out_w: usize,
    out_h: usize,
) -> Array2<f32> {
    let (src_h, src_w) = src.dim();
    let xs = taps(src_w, full_w, out_w);
    let ys = taps(src_h, full_h, out_h);
    // Horizontal pass over every source row, then vertical.
    let mut rows = Array2::<f32>::zeros((src_h, out_w));
    for (y, mut row) in rows.outer_iter_mut().enumerate() {
        let line = src.row(y);
        for (out, t) in row.iter_mut().zip(&xs) {
            *out = line[t.i0] * (1.0 - t.frac) + line[t.i1] * t.frac;
        }
    }
    let mut out = Array2::<f32>::zeros((out_h, out_w));
    for (mut row, t) in out.outer_iter_mut().zip(&ys) {
        let (a, b) = (rows.row(t.i0), rows.row(t.i1));
        for ((o, &va), &vb) in row.iter_mut().zip(&a).zip(&b) {
            *o = va * (1.0 - t.frac) + vb * t.frac;
        }
    }
    out
}

/// The two source samples and the weight of the second for one output index.
struct Tap {
    i0: usize,
    i1: usize,
    frac: f32,
}

fn taps(src: usize, full: usize, count: usize) -> Vec<Tap> {
    let scale = src as f32 / full as f32;
    (0..count)
        .map(|i| {
            let s = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s as usize).min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            Tap { i0, i1, frac: s - i0 as f32 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::preprocess::Size;
    use ndarray::array;

    #[test]
    fn bilinear_matches_torch_interpolate() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]),
        //   size=(4, 4), mode="bilinear", align_corners=False)
        let src = array![[0.0f32, 1.0], [2.0, 3.0]];
        let out = resize_bilinear(src.view(), 4, 4, 4, 4);
        let expected = array![
            [0.0f32, 0.25, 0.75, 1.0],
            [0.5, 0.75, 1.25, 1.5],
            [1.5, 1.75, 2.25, 2.5],
            [2.0, 2.25, 2.75, 3.0]
        ];
        assert!(out.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6), "{out}");
    }

    #[test]
    fn cropping_keeps_the_top_left_of_the_full_resize() {
        let src = array![[0.0f32, 1.0], [2.0, 3.0]];
        let full = resize_bilinear(src.view(), 4, 4, 4, 4);
        let crop = resize_bilinear(src.view(), 4, 4, 3, 2);
        assert_eq!(crop, full.slice(ndarray::s![..2, ..3]));
    }

    #[test]
    fn upscale_thresholds_at_zero_and_scores_stability() {
        // Left half strongly positive, right half weakly positive: the weak
        // half is in the mask but not stable.
        let low_res = Array2::from_shape_fn((8, 8), |(_, x)| if x < 4 { 5.0 } else { 0.5 });
        let geometry = Geometry::new(Size::new(16, 16), 16);
        let up = upscale(low_res.view(), &geometry);
        assert_eq!(up.mask.area(), 256);
        assert!((up.stability - 0.5).abs() < 0.1, "{}", up.stability);
    }

    #[test]
    fn padding_is_cropped_before_resizing_to_original() {
        // Model input 16x16, original 8x4 -> resized 16x8: only the top half
        // of the low-res map is image; the bottom half (padding) is positive.
        let low_res = Array2::from_shape_fn((8, 8), |(y, _)| if y < 4 { -5.0 } else { 5.0 });
        let geometry = Geometry::new(Size::new(8, 4), 16);
        assert_eq!(geometry.resized, Size::new(16, 8));
        let up = upscale(low_res.view(), &geometry);
        assert_eq!((up.mask.width(), up.mask.height()), (8, 4));
        assert_eq!(up.mask.area(), 0);
    }
}
