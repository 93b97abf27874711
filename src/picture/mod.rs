//! Image files and bytes to RGB pixels, decoded as the PyTorch reference
//! decodes them, so that maskd's masks match its masks on the same file.
//!
//! The reference loads photos with Pillow (`Image.open(path).convert("RGB")`),
//! whose JPEG decoder is libjpeg-turbo; JPEG files and camera MJPEG frames
//! therefore go through libjpeg-turbo here too ([`decode_jpeg`]), with
//! Pillow's settings. PNG and BMP are lossless: every decoder gives the same
//! pixels, and the `image` crate reads them. Pure compute, except
//! [`read_rgb`], the thin file reader on top.
//!
//! ```
//! let photo = maskd::picture::read_rgb("tests/golden/jpeg/chelsea_420.jpg")?;
//! assert_eq!(photo.dimensions(), (61, 43));
//! # Ok::<(), anyhow::Error>(())
//! ```

mod jpeg;

pub use jpeg::{decode_jpeg, MAX_PIXELS};

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use image::{DynamicImage, RgbImage};

/// The first bytes of every JPEG: SOI, then the next marker's 0xFF.
const JPEG_START: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Whether `bytes` start as a JPEG file or MJPEG frame does.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&JPEG_START)
}

/// Decodes an image file's bytes, JPEG, PNG or BMP (told apart by their first
/// bytes, not by a file name); JPEG comes out as RGB.
///
/// # Errors
/// Not one of those formats, corrupt or truncated, empty, or a JPEG over
/// [`MAX_PIXELS`].
pub fn decode(bytes: &[u8]) -> Result<DynamicImage> {
    let image = if is_jpeg(bytes) {
        DynamicImage::ImageRgb8(decode_jpeg(bytes)?)
    } else {
        let Ok(format) = image::guess_format(bytes) else {
            let start: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            bail!("neither PNG, JPEG nor BMP (it starts with the bytes {})", start.join(" "));
        };
        image::load_from_memory_with_format(bytes, format).with_context(|| format!("decoding the {format:?}"))?
    };
    ensure!(image.width() > 0 && image.height() > 0, "the image is empty ({}x{} pixels)", image.width(), image.height());
    Ok(image)
}

/// [`decode`] to RGB: a greyscale image has its grey in all three channels,
/// as Pillow's `convert("RGB")` gives it.
///
/// # Errors
/// As [`decode`].
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    Ok(decode(bytes)?.into_rgb8())
}

/// Reads an image file (JPEG, PNG or BMP) as RGB.
///
/// # Errors
/// The file is unreadable, or [`decode_rgb`] fails; the message names the file.
pub fn read_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).with_context(|| format!("opening image {}", path.display()))?;
    decode_rgb(&bytes).with_context(|| format!("{} is not an image maskd can read", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn encode(image: impl Into<DynamicImage>, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.into().write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    #[test]
    fn png_and_bmp_decode_losslessly() {
        let rgb = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
        for format in [image::ImageFormat::Png, image::ImageFormat::Bmp] {
            assert_eq!(decode_rgb(&encode(rgb.clone(), format)).unwrap(), rgb, "{format:?}");
        }
        let grey = image::GrayImage::from_fn(4, 2, |x, _| image::Luma([x as u8 * 60]));
        let decoded = decode_rgb(&encode(grey, image::ImageFormat::Png)).unwrap();
        assert_eq!(decoded.get_pixel(3, 1).0, [180; 3], "grey in all three channels");
    }

    #[test]
    fn jpeg_is_told_by_its_first_bytes_not_its_name() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/jpeg/chelsea_420.jpg");
        let bytes = std::fs::read(&fixture).unwrap();
        assert!(is_jpeg(&bytes));
        let renamed = std::env::temp_dir().join(format!("maskd-jpeg-named-png-{}.png", std::process::id()));
        std::fs::write(&renamed, &bytes).unwrap();
        assert_eq!(read_rgb(&renamed).unwrap(), decode_jpeg(&bytes).unwrap());
        std::fs::remove_file(renamed).unwrap();
    }

    #[test]
    fn non_images_and_missing_files_are_named() {
        let dir = std::env::temp_dir();
        let text = dir.join(format!("maskd-not-an-image-{}.png", std::process::id()));
        std::fs::write(&text, "hello").unwrap();
        let err = format!("{:#}", read_rgb(&text).unwrap_err());
        assert!(err.contains("is not an image") && err.contains(&text.display().to_string()), "{err}");
        std::fs::remove_file(&text).unwrap();
        let missing = dir.join("maskd-no-such-image.png");
        let err = format!("{:#}", read_rgb(&missing).unwrap_err());
        assert!(err.contains("opening image") && err.contains("maskd-no-such-image.png"), "{err}");
    }
}
