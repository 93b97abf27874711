//! SAM's input preprocessing: resize the longest side, normalize, zero-pad.
//!
//! This mirrors `ResizeLongestSide` and `Sam.preprocess` of the reference
//! implementation, so that embeddings (and masks) match PyTorch's.

use anyhow::{ensure, Result};
use image::RgbImage;
use ndarray::Array4;

use super::resize::resize_bilinear_rgb;

/// Width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub fn new(width: u32, height: u32) -> Size {
        Size { width, height }
    }
}

/// How an original image maps onto the model's square input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// The image as given.
    pub original: Size,
    /// The image resized so that its longest side is `input_side`, before padding.
    pub resized: Size,
    /// Side of the square model input.
    pub input_side: u32,
}

impl Geometry {
    /// SAM's `get_preprocess_shape`: scale the longest side to `input_side`,
    /// rounding each side with `int(x * scale + 0.5)`.
    pub fn new(original: Size, input_side: u32) -> Geometry {
        let scale = f64::from(input_side) / f64::from(original.width.max(original.height));
        let side = |x: u32| ((f64::from(x) * scale + 0.5) as u32).max(1);
        Geometry {
            original,
            resized: Size::new(side(original.width), side(original.height)),
            input_side,
        }
    }

    /// Maps a point of the original image to the model input frame
    /// (`ResizeLongestSide.apply_coords`).
    pub fn to_input(&self, x: f32, y: f32) -> (f32, f32) {
        (
            x * self.resized.width as f32 / self.original.width as f32,
            y * self.resized.height as f32 / self.original.height as f32,
        )
    }
}

/// Builds the encoder input: `[1, 3, side, side]`, normalized with `mean`/`std`
/// per channel, the resized image at the top-left and zeros elsewhere.
///
/// # Errors
/// The image is empty.
pub fn encoder_input(
    image: &RgbImage,
    geometry: &Geometry,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<Array4<f32>> {
    Ok(padded_input(&resized(image, geometry)?, geometry.input_side, mean, std))
}

/// The first step of [`encoder_input`]: the image at `geometry.resized`.
///
/// # Errors
/// The image is empty.
pub fn resized(image: &RgbImage, geometry: &Geometry) -> Result<RgbImage> {
    ensure!(image.width() > 0 && image.height() > 0, "the image is empty (0 pixels)");
    Ok(resize_bilinear_rgb(image, geometry.resized.width, geometry.resized.height))
}

/// The second step of [`encoder_input`]: `resized` normalized and padded
/// with zeros to `side` x `side`.
pub fn padded_input(resized: &RgbImage, side: u32, mean: [f32; 3], std: [f32; 3]) -> Array4<f32> {
    let side = side as usize;
    let mut input = Array4::<f32>::zeros((1, 3, side, side));
    for (x, y, pixel) in resized.enumerate_pixels() {
        for c in 0..3 {
            input[[0, c, y as usize, x as usize]] = (f32::from(pixel[c]) - mean[c]) / std[c];
        }
    }
    input
}

/// The first half of [`encoder_input`], for an encoder elsewhere that
/// normalizes and pads itself (encoder offload): the resized image as planar
/// RGB bytes, `[3, resized.height, resized.width]`.
pub fn planar_pixels(image: &RgbImage, geometry: &Geometry) -> Vec<u8> {
    let resized = resize_bilinear_rgb(image, geometry.resized.width, geometry.resized.height);
    let plane = (geometry.resized.width * geometry.resized.height) as usize;
    let mut bytes = vec![0u8; 3 * plane];
    for (i, pixel) in resized.pixels().enumerate() {
        for c in 0..3 {
            bytes[c * plane + i] = pixel[c];
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_side_becomes_input_side_and_other_side_rounds_half_up() {
        let g = Geometry::new(Size::new(640, 427), 1024);
        assert_eq!(g.resized, Size::new(1024, 683)); // 427 * 1.6 = 683.2
        let g = Geometry::new(Size::new(300, 451), 1024);
        assert_eq!(g.resized, Size::new(681, 1024)); // 300 * 1024 / 451 = 681.15
        let g = Geometry::new(Size::new(2048, 1), 1024);
        assert_eq!(g.resized, Size::new(1024, 1)); // never collapses to 0
        let g = Geometry::new(Size::new(512, 512), 1024);
        assert_eq!(g.resized, Size::new(1024, 1024));
    }

    #[test]
    fn points_scale_per_axis_like_apply_coords() {
        let g = Geometry::new(Size::new(640, 427), 1024);
        let (x, y) = g.to_input(320.0, 427.0);
        assert!((x - 512.0).abs() < 1e-4);
        assert!((y - 683.0).abs() < 1e-4);
        assert_eq!(g.to_input(0.0, 0.0), (0.0, 0.0));
    }

    #[test]
    fn input_is_normalized_and_zero_padded() {
        let image = RgbImage::from_pixel(4, 2, image::Rgb([10, 20, 30]));
        let g = Geometry::new(Size::new(4, 2), 8);
        assert_eq!(g.resized, Size::new(8, 4));
        let input = encoder_input(&image, &g, [10.0, 10.0, 10.0], [2.0, 5.0, 10.0]).unwrap();
        assert_eq!(input.shape(), &[1, 3, 8, 8]);
        for y in 0..8 {
            for x in 0..8 {
                let inside = y < 4;
                let expected = if inside { [0.0, 2.0, 2.0] } else { [0.0; 3] };
                for c in 0..3 {
                    assert_eq!(input[[0, c, y, x]], expected[c], "c={c} x={x} y={y}");
                }
            }
        }
    }

    #[test]
    fn empty_image_is_an_error() {
        let image = RgbImage::new(0, 0);
        let g = Geometry::new(Size::new(1, 1), 8);
        let err = encoder_input(&image, &g, [0.0; 3], [1.0; 3]).unwrap_err();
        assert!(err.to_string().contains("empty"));
    }
}
