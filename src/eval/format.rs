//! How each benchmark encodes its ground-truth masks.

use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use super::ground_truth::GroundTruth;
use crate::model::Mask;
use crate::picture;

/// Grey level above which a mask pixel is object (GrabCut, Berkeley, COCO-MVal).
pub const OBJECT_ABOVE: u8 = 128;
/// GrabCut's uncertain band around the object boundary, excluded from scoring.
pub const GRABCUT_IGNORE: u8 = 128;

/// A benchmark's mask encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 8-bit grey BMP: 255 object, 0 background, 128 ignore band.
    GrabCut,
    /// Grey (or grey RGB) PNG: above 128 is object.
    Berkeley,
    /// Palette PNG: every non-zero index is object (any non-black pixel for
    /// masks saved without a palette).
    Davis,
    /// Grey PNG: 255 object (above 128, as Berkeley).
    CocoMval,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::GrabCut, Format::Berkeley, Format::Davis, Format::CocoMval];

    /// The name used on the command line and in reports.
    pub fn key(self) -> &'static str {
        match self {
            Format::GrabCut => "grabcut",
            Format::Berkeley => "berkeley",
            Format::Davis => "davis",
            Format::CocoMval => "coco-mval",
        }
    }

    /// The format named by a dataset folder: its name lowercased with every
    /// non-alphanumeric dropped contains `grabcut`, `berkeley`, `davis` or
    /// `mval` (`COCO_MVal`, `coco-mval`).
    pub fn from_folder_name(name: &str) -> Option<Format> {
        let name: String = name.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
        let keys = [
            ("grabcut", Format::GrabCut),
            ("berkeley", Format::Berkeley),
            ("davis", Format::Davis),
            ("mval", Format::CocoMval),
        ];
        keys.into_iter().find_map(|(key, format)| name.contains(key).then_some(format))
    }

    /// Reads a mask file in this encoding.
    ///
    /// # Errors
    /// The file is unreadable, not an image, or holds no object pixel.
    pub fn read_mask(self, path: &Path) -> Result<GroundTruth> {
        let bytes = std::fs::read(path).with_context(|| format!("reading mask {}", path.display()))?;
        self.decode_mask(&bytes).with_context(|| format!("mask {}", path.display()))
    }

    fn decode_mask(self, bytes: &[u8]) -> Result<GroundTruth> {
        if self == Format::Davis {
            if let Some(indices) = palette_indices(bytes)? {
                return GroundTruth::new(Mask::from_gray(&indices, 0), None);
            }
            let rgb = picture::decode_rgb(bytes)?;
            let object = Mask::from_fn(rgb.width(), rgb.height(), |x, y| rgb.get_pixel(x, y).0 != [0; 3]);
            return GroundTruth::new(object, None);
        }
        let grey = picture::decode(bytes)?.to_luma8();
        let object = Mask::from_gray(&grey, OBJECT_ABOVE);
        let ignore = (self == Format::GrabCut)
            .then(|| Mask::from_fn(grey.width(), grey.height(), |x, y| grey.get_pixel(x, y)[0] == GRABCUT_IGNORE));
        GroundTruth::new(object, ignore)
    }
}

/// The palette indices of an indexed-colour PNG as a grey image, `None` for
/// any other image (the `image` crate would expand the palette to colours).
pub(super) fn palette_indices(bytes: &[u8]) -> Result<Option<image::GrayImage>> {
    if !bytes.starts_with(b"\x89PNG") {
        return Ok(None);
    }
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().context("reading PNG header")?;
    if reader.info().color_type != png::ColorType::Indexed {
        return Ok(None);
    }
    let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let frame = reader.next_frame(&mut buf).context("decoding PNG")?;
    let bits = frame.bit_depth as usize;
    let (w, h) = (frame.width, frame.height);
    let mut indices = image::GrayImage::new(w, h);
    for (y, row) in buf.chunks(frame.line_size).take(h as usize).enumerate() {
        for x in 0..w as usize {
            // Indices of 1, 2 or 4 bits are packed high bits first.
            let bit = x * bits;
            let shift = 8 - bits - bit % 8;
            let index = (row[bit / 8] >> shift) & (((1u16 << bits) - 1) as u8);
            indices.put_pixel(x as u32, y as u32, image::Luma([index]));
        }
    }
    Ok(Some(indices))
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Format> {
        match Format::ALL.into_iter().find(|f| f.key() == s) {
            Some(format) => Ok(format),
            None => bail!("unknown dataset format {s:?} (grabcut, berkeley, davis, coco-mval)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: impl Into<image::DynamicImage>, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.into().write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    /// A 4x2 indexed PNG with `bits`-bit indices, row-major `indices`.
    fn palette_png(bits: png::BitDepth, indices: &[u8]) -> Vec<u8> {
        let depth = bits as usize;
        let mut data = Vec::new();
        for row in indices.chunks(4) {
            let mut packed = vec![0u8; (4 * depth).div_ceil(8)];
            for (x, &i) in row.iter().enumerate() {
                packed[x * depth / 8] |= i << (8 - depth - x * depth % 8);
            }
            data.extend(packed);
        }
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, 4, 2);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(bits);
        // Index 2 is black: it must still count as object.
        encoder.set_palette(vec![0, 0, 0, 128, 0, 0, 0, 0, 0, 0, 128, 0]);
        encoder.write_header().unwrap().write_image_data(&data).unwrap();
        bytes
    }

    #[test]
    fn davis_objects_are_non_zero_palette_indices() {
        let indices = [0, 1, 2, 0, 3, 0, 0, 1];
        for bits in [png::BitDepth::Two, png::BitDepth::Eight] {
            let truth = Format::Davis.decode_mask(&palette_png(bits, &indices)).unwrap();
            let expected = Mask::from_fn(4, 2, |x, y| indices[(y * 4 + x) as usize] != 0);
            assert_eq!(truth, GroundTruth::new(expected, None).unwrap(), "{bits:?}");
        }
    }

    #[test]
    fn davis_masks_without_palette_count_non_black_pixels() {
        let rgb = image::RgbImage::from_fn(3, 1, |x, _| image::Rgb(if x == 1 { [0, 0, 9] } else { [0; 3] }));
        let truth = Format::Davis.decode_mask(&encode(rgb, image::ImageFormat::Png)).unwrap();
        assert_eq!(truth, GroundTruth::new(Mask::from_fn(3, 1, |x, _| x == 1), None).unwrap());
    }

    #[test]
    fn grabcut_128_is_an_ignore_band_elsewhere_background() {
        let grey = image::GrayImage::from_raw(4, 1, vec![0, 128, 255, 200]).unwrap();
        let bmp = encode(grey, image::ImageFormat::Bmp);
        let object = Mask::from_fn(4, 1, |x, _| x >= 2);
        let band = Mask::from_fn(4, 1, |x, _| x == 1);
        assert_eq!(Format::GrabCut.decode_mask(&bmp).unwrap(), GroundTruth::new(object.clone(), Some(band)).unwrap());
        let berkeley = Format::Berkeley.decode_mask(&bmp).unwrap();
        assert_eq!(berkeley, GroundTruth::new(object, None).unwrap());
        assert!(!berkeley.is_ignored(1, 0));
    }

    #[test]
    fn berkeley_reads_grey_rgb() {
        let rgb = image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([255 * x as u8; 3]));
        let truth = Format::Berkeley.decode_mask(&encode(rgb, image::ImageFormat::Png)).unwrap();
        assert_eq!(truth, GroundTruth::new(Mask::from_fn(2, 1, |x, _| x == 1), None).unwrap());
    }

    #[test]
    fn folder_names_pick_formats() {
        assert_eq!(Format::from_folder_name("GrabCut"), Some(Format::GrabCut));
        assert_eq!(Format::from_folder_name("Berkeley"), Some(Format::Berkeley));
        assert_eq!(Format::from_folder_name("DAVIS345"), Some(Format::Davis));
        assert_eq!(Format::from_folder_name("COCO_MVal"), Some(Format::CocoMval));
        assert_eq!(Format::from_folder_name("coco-mval"), Some(Format::CocoMval));
        assert_eq!(Format::from_folder_name("PascalVOC"), None);
        assert_eq!("coco-mval".parse::<Format>().unwrap(), Format::CocoMval);
        assert!("grab".parse::<Format>().unwrap_err().to_string().contains("unknown dataset format"));
    }
}
