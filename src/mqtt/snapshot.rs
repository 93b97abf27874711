//! The `snapshot` topic's picture: the newest answer's frame with its mask
//! drawn as the display draws it (or the newest frame, before any answer),
//! as a JPEG (libjpeg-turbo, the library that decodes the daemon's JPEGs).

use anyhow::{Context, Result};
use image::RgbImage;
use turbojpeg::{PixelFormat, Subsamp};

use crate::draw::Overlay;
use crate::draw::Canvas;
use crate::pipeline::Answer;

/// Small enough for a dashboard tile, sharp enough to see the mask.
const QUALITY: i32 = 80;

/// A JPEG of `answer`'s frame with its mask and prompt drawn.
///
/// # Errors
/// The encoder failed.
pub fn answer_jpeg(answer: &Answer) -> Result<Vec<u8>> {
    let mut canvas = Canvas::new((*answer.frame.image).clone());
    let caption =
        format!("frame {}  IoU {:.2}  stability {:.2}", answer.frame.id, answer.mask.predicted_iou, answer.mask.stability);
    Overlay { mask: &answer.mask.mask, prompt: &answer.prompt, caption: &caption }.render(&mut canvas);
    jpeg(canvas.image())
}

/// A JPEG of `image`.
///
/// # Errors
/// The encoder failed.
pub fn jpeg(image: &RgbImage) -> Result<Vec<u8>> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let pixels =
        turbojpeg::Image { pixels: image.as_raw().as_slice(), width, pitch: 3 * width, height, format: PixelFormat::RGB };
    let jpeg = turbojpeg::compress(pixels, QUALITY, Subsamp::Sub2x2).context("encoding the snapshot JPEG")?;
    Ok(jpeg.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_a_jpeg_of_the_frame() {
        let image = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 128]));
        let bytes = jpeg(&image).unwrap();
        assert_eq!(&bytes[..2], [0xFF, 0xD8]);
        let back = crate::picture::decode_rgb(&bytes).unwrap();
        assert_eq!((back.width(), back.height()), (64, 48));
    }
}
