//! A binary mask at image resolution, its geometry and its encodings.

use std::io::Cursor;

use anyhow::{ensure, Context, Result};
use image::GrayImage;
use serde::{Deserialize, Serialize};

/// An axis-aligned pixel box: `x0..=x1`, `y0..=y1`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PixelBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl PixelBox {
    pub fn width(&self) -> u32 {
        self.x1 - self.x0 + 1
    }

    pub fn height(&self) -> u32 {
        self.y1 - self.y0 + 1
    }
}

/// A binary mask, row-major, one byte per pixel (0 or 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Mask {
    /// A mask of `width` x `height` where `inside(x, y)` says which pixels are set.
    pub fn from_fn(width: u32, height: u32, mut inside: impl FnMut(u32, u32) -> bool) -> Mask {
        let mut pixels = Vec::with_capacity(width as usize * height as usize);
        for y in 0..height {
            for x in 0..width {
                pixels.push(u8::from(inside(x, y)));
            }
        }
        Mask { width, height, pixels }
    }

    /// Reads a greyscale image: pixels above `threshold` are set.
    pub fn from_gray(image: &GrayImage, threshold: u8) -> Mask {
        Mask::from_fn(image.width(), image.height(), |x, y| image.get_pixel(x, y)[0] > threshold)
    }

    pub(crate) fn from_pixels(width: u32, height: u32, pixels: Vec<u8>) -> Mask {
        debug_assert_eq!(pixels.len(), width as usize * height as usize);
        Mask { width, height, pixels }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn get(&self, x: u32, y: u32) -> bool {
        self.pixels[y as usize * self.width as usize + x as usize] != 0
    }

    /// Number of set pixels.
    pub fn area(&self) -> u64 {
        self.pixels.iter().map(|&p| u64::from(p)).sum()
    }

    /// The tightest box around the set pixels, `None` when the mask is empty.
    pub fn bbox(&self) -> Option<PixelBox> {
        let mut b: Option<PixelBox> = None;
        for (y, row) in self.rows().enumerate() {
            let Some(first) = row.iter().position(|&p| p != 0) else { continue };
            let last = row.iter().rposition(|&p| p != 0).unwrap_or(first);
            let (y, first, last) = (y as u32, first as u32, last as u32);
            b = Some(match b {
                None => PixelBox { x0: first, y0: y, x1: last, y1: y },
                Some(b) => PixelBox { x0: b.x0.min(first), y0: b.y0, x1: b.x1.max(last), y1: y },
            });
        }
        b
    }

    /// Mean position of the set pixels (pixel centres at integer coordinates).
    pub fn centroid(&self) -> Option<(f32, f32)> {
        let (mut n, mut sx, mut sy) = (0u64, 0u64, 0u64);
        for (y, row) in self.rows().enumerate() {
            for (x, &p) in row.iter().enumerate() {
                if p != 0 {
                    n += 1;
                    sx += x as u64;
                    sy += y as u64;
                }
            }
        }
        (n > 0).then(|| (sx as f32 / n as f32, sy as f32 / n as f32))
    }

    /// Intersection over union with a mask of the same size (1 when both are empty).
    pub fn iou(&self, other: &Mask) -> f64 {
        assert_eq!((self.width, self.height), (other.width, other.height), "masks differ in size");
        let (mut inter, mut union) = (0u64, 0u64);
        for (&a, &b) in self.pixels.iter().zip(&other.pixels) {
            inter += u64::from(a & b);
            union += u64::from(a | b);
        }
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        }
    }

    /// 8-bit greyscale: 255 for set pixels, 0 elsewhere.
    pub fn to_gray(&self) -> GrayImage {
        let data = self.pixels.iter().map(|&p| p * 255).collect();
        GrayImage::from_raw(self.width, self.height, data).expect("buffer matches dimensions")
    }

    /// The mask as an 8-bit greyscale PNG (255 = object).
    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut png = Vec::new();
        self.to_gray()
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .context("encoding mask as PNG")?;
        Ok(png)
    }

    /// COCO run-length encoding: column-major runs, starting with a run of zeros.
    pub fn to_rle(&self) -> Rle {
        let mut counts = Vec::new();
        let (mut current, mut run) = (0u8, 0u32);
        for x in 0..self.width as usize {
            for y in 0..self.height as usize {
                let p = self.pixels[y * self.width as usize + x];
                if p != current {
                    counts.push(run);
                    current = p;
                    run = 0;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle { size: [self.height, self.width], counts }
    }

    fn rows(&self) -> impl Iterator<Item = &[u8]> {
        self.pixels.chunks_exact(self.width.max(1) as usize)
    }
}

/// COCO-style uncompressed RLE: `size` is `[height, width]`, `counts` are
/// alternating runs of 0s and 1s in column-major order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    pub size: [u32; 2],
    pub counts: Vec<u32>,
}

impl Rle {
    /// Decodes back to a mask.
    ///
    /// # Errors
    /// The runs do not add up to `height * width`.
    pub fn to_mask(&self) -> Result<Mask> {
        let [h, w] = self.size;
        let total: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        ensure!(total == u64::from(h) * u64::from(w), "RLE runs cover {total} pixels, size {h}x{w} needs {}", h * w);
        let mut pixels = vec![0u8; h as usize * w as usize];
        let mut i = 0usize;
        for (k, &run) in self.counts.iter().enumerate() {
            let value = (k % 2) as u8;
            for j in i..i + run as usize {
                let (x, y) = (j / h as usize, j % h as usize);
                pixels[y * w as usize + x] = value;
            }
            i += run as usize;
        }
        Ok(Mask::from_pixels(w, h, pixels))
    }

    /// pycocotools' compact string form (`rleToString`): LEB128-like 6-bit
    /// groups as ASCII 48..111, runs after the third stored as deltas.
    pub fn to_coco_string(&self) -> String {
        let mut s = String::new();
        for (i, &count) in self.counts.iter().enumerate() {
            let mut x = i64::from(count);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push(char::from(c + 48));
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parses pycocotools' compact string form (`rleFrString`).
    ///
    /// # Errors
    /// A character outside the alphabet, or a truncated group.
    pub fn from_coco_string(size: [u32; 2], s: &str) -> Result<Rle> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let (mut x, mut k) = (0i64, 0u32);
            loop {
                let byte = *bytes.get(p).context("RLE string ends inside a run")?;
                ensure!((48..112).contains(&byte), "RLE string has invalid character {:?}", byte as char);
                let c = i64::from(byte - 48);
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += i64::from(counts[m - 2]);
            }
            counts.push(u32::try_from(x).context("RLE string decodes to a negative run")?);
        }
        Ok(Rle { size, counts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Mask {
        // 5x4, a set ring around an unset centre pixel, left column unset.
        Mask::from_fn(5, 4, |x, y| x >= 1 && x <= 3 && y <= 2 && !(x == 2 && y == 1))
    }

    #[test]
    fn geometry_of_a_small_mask() {
        let m = ring();
        assert_eq!(m.area(), 8);
        assert_eq!(m.bbox(), Some(PixelBox { x0: 1, y0: 0, x1: 3, y1: 2 }));
        assert_eq!(m.centroid(), Some((2.0, 1.0)));
        let empty = Mask::from_fn(3, 3, |_, _| false);
        assert_eq!((empty.area(), empty.bbox(), empty.centroid()), (0, None, None));
    }

    #[test]
    fn rle_is_column_major_and_starts_with_zeros() {
        let m = Mask::from_fn(2, 2, |x, y| x == 0 && y == 1 || x == 1);
        // column 0: [0, 1], column 1: [1, 1]
        assert_eq!(m.to_rle().counts, vec![1, 3]);
        let full = Mask::from_fn(2, 1, |_, _| true);
        assert_eq!(full.to_rle().counts, vec![0, 2]);
    }

    #[test]
    fn rle_round_trips_through_counts_and_coco_string() {
        let mut state = 12345u32;
        let noisy = Mask::from_fn(37, 23, |_, _| {
            state = state.wrapping_mul(1103515245).wrapping_add(12345);
            (state >> 16) % 3 == 0
        });
        for m in [ring(), noisy, Mask::from_fn(300, 200, |x, y| (x / 40 + y / 30) % 2 == 0)] {
            let rle = m.to_rle();
            assert_eq!(rle.to_mask().unwrap(), m);
            let s = rle.to_coco_string();
            assert_eq!(Rle::from_coco_string(rle.size, &s).unwrap(), rle);
        }
    }

    #[test]
    fn coco_string_matches_pycocotools() {
        // Worked through pycocotools' rleToString by hand: runs after the third are
        // deltas (8 - 7 = 1), values >= 16 spill into a continuation character.
        assert_eq!(Rle { size: [2, 2], counts: vec![1, 3] }.to_coco_string(), "13");
        assert_eq!(Rle { size: [4, 5], counts: vec![3, 7, 2, 8] }.to_coco_string(), "3721");
        assert_eq!(Rle { size: [1, 100], counts: vec![50, 1, 49] }.to_coco_string(), "b11a1");
    }

    #[test]
    fn bad_rle_is_an_error() {
        assert!(Rle { size: [2, 2], counts: vec![1, 2] }.to_mask().is_err());
        assert!(Rle::from_coco_string([2, 2], "1 3").is_err());
        assert!(Rle::from_coco_string([2, 2], "b").is_err());
    }

    #[test]
    fn png_holds_255_for_object() {
        let png = ring().encode_png().unwrap();
        let back = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(back.get_pixel(1, 0)[0], 255);
        assert_eq!(back.get_pixel(0, 0)[0], 0);
        assert_eq!(Mask::from_gray(&back, 128), ring());
    }
}
