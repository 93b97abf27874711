//! A mask as a result carries it: its wire run-length encoding, and its
//! geometry in the wire's types (docs/PROTOCOL.md, section 4). Pure functions.

use std::num::NonZeroU8;

use thiserror::Error;

use super::message::{MaskHeader, Pixel, PointF, Rect};
use crate::model::{self, Mask};

/// Largest image side the protocol's u16 coordinates can address.
const MAX_SIDE: u32 = u16::MAX as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a {0}x{1} mask exceeds the protocol's {MAX_SIDE}-pixel coordinates")]
pub struct TooLarge(pub u32, pub u32);

/// A mask as sent on the wire: cropped to its bounding box, optionally
/// downscaled, as row-major runs starting with unset cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMask {
    pub x0: u16,
    pub y0: u16,
    pub downscale: u8,
    pub width: u16,
    pub height: u16,
    pub runs: Vec<u32>,
}

impl WireMask {
    /// Encodes `mask`; a grid cell is set when any pixel of its block is.
    /// `None` when the mask is empty.
    ///
    /// # Errors
    /// [`TooLarge`] when the mask is wider or taller than 65535 pixels.
    pub fn from_mask(mask: &Mask, downscale: NonZeroU8) -> Result<Option<WireMask>, TooLarge> {
        check_size(mask)?;
        let Some(bbox) = mask.bbox() else {
            return Ok(None);
        };
        let d = u32::from(downscale.get());
        let (width, height) = (bbox.width().div_ceil(d), bbox.height().div_ceil(d));
        let cell_set = |i: u32, j: u32| {
            let (xs, ys) = (bbox.x0 + i * d, bbox.y0 + j * d);
            (ys..(ys + d).min(bbox.y1 + 1))
                .any(|y| (xs..(xs + d).min(bbox.x1 + 1)).any(|x| mask.get(x, y)))
        };
        let mut runs = Vec::new();
        let (mut current, mut run) = (false, 0u32);
        for j in 0..height {
            for i in 0..width {
                let set = cell_set(i, j);
                if set != current {
                    runs.push(run);
                    (current, run) = (set, 0);
                }
                run += 1;
            }
        }
        runs.push(run);
        // Sizes fit: check_size bounds every coordinate and grid side by 65535.
        Ok(Some(WireMask {
            x0: bbox.x0 as u16,
            y0: bbox.y0 as u16,
            downscale: downscale.get(),
            width: width as u16,
            height: height as u16,
            runs,
        }))
    }

    /// The header announcing this mask in `chunks` MaskChunk frames.
    pub fn header(&self, chunks: u16) -> MaskHeader {
        MaskHeader {
            x0: self.x0,
            y0: self.y0,
            downscale: self.downscale,
            width: self.width,
            height: self.height,
            runs: self.runs.len() as u32,
            chunks,
        }
    }

    /// The grid cells, row-major, `true` for set.
    pub fn cells(&self) -> Vec<bool> {
        let mut cells = Vec::with_capacity(usize::from(self.width) * usize::from(self.height));
        for (i, &run) in self.runs.iter().enumerate() {
            cells.extend(std::iter::repeat_n(i % 2 == 1, run as usize));
        }
        cells
    }
}

/// The geometry fields of a SegmentResult.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub area: u32,
    /// Inclusive bounds.
    pub bbox: Rect,
    pub centroid: PointF,
    pub angle: f32,
    pub grasp: Pixel,
    pub clearance: f32,
}

/// Measures a mask for a SegmentResult ([`model::shape`](crate::model::shape)
/// in the wire's types); `None` when it is empty.
///
/// # Errors
/// [`TooLarge`] when the mask is wider or taller than 65535 pixels.
pub fn shape(mask: &Mask) -> Result<Option<Shape>, TooLarge> {
    check_size(mask)?;
    // Sizes fit: check_size bounds every coordinate by 65535.
    Ok(model::shape(mask).map(|s| Shape {
        area: s.area as u32,
        bbox: Rect { x0: s.bbox.x0 as u16, y0: s.bbox.y0 as u16, x1: s.bbox.x1 as u16, y1: s.bbox.y1 as u16 },
        centroid: PointF { x: s.centroid.0, y: s.centroid.1 },
        angle: s.angle,
        grasp: Pixel { x: s.grasp.0 as u16, y: s.grasp.1 as u16 },
        clearance: s.clearance,
    }))
}

fn check_size(mask: &Mask) -> Result<(), TooLarge> {
    if mask.width() > MAX_SIDE || mask.height() > MAX_SIDE {
        return Err(TooLarge(mask.width(), mask.height()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mask from ASCII art: `#` set, anything else unset.
    fn mask(rows: &[&str]) -> Mask {
        let rows: Vec<&[u8]> = rows.iter().map(|r| r.as_bytes()).collect();
        Mask::from_fn(rows[0].len() as u32, rows.len() as u32, |x, y| {
            rows[y as usize][x as usize] == b'#'
        })
    }

    fn one() -> NonZeroU8 {
        NonZeroU8::MIN
    }

    #[test]
    fn rle_crops_to_the_bbox_and_starts_with_unset() {
        // Art, then (x0, y0, width, height) of the grid, then its runs.
        type Case = (
            &'static [&'static str],
            (u16, u16, u16, u16),
            &'static [u32],
        );
        let cases: [Case; 3] = [
            (&["....", ".##.", ".#..", "...."], (1, 1, 2, 2), &[0, 3, 1]),
            (&["#"], (0, 0, 1, 1), &[0, 1]),
            (
                &[".....", "..#.#", "...#."],
                (2, 1, 3, 2),
                &[0, 1, 1, 1, 1, 1, 1],
            ),
        ];
        for (art, (x0, y0, width, height), runs) in cases {
            let wire = WireMask::from_mask(&mask(art), one())
                .expect("fits")
                .expect("not empty");
            assert_eq!(
                (wire.x0, wire.y0, wire.width, wire.height),
                (x0, y0, width, height),
                "{art:?}"
            );
            assert_eq!(wire.runs, runs, "{art:?}");
            assert_eq!(
                wire.runs.iter().sum::<u32>(),
                u32::from(width) * u32::from(height)
            );
        }
    }

    #[test]
    fn downscaled_cells_are_set_when_any_pixel_of_the_block_is() {
        let art = ["#....", ".....", "....#", "....#", "..#.."];
        let wire = WireMask::from_mask(&mask(&art), NonZeroU8::new(2).expect("2"))
            .expect("fits")
            .expect("set");
        assert_eq!((wire.width, wire.height, wire.downscale), (3, 3, 2));
        // Blocks: row 0 = {#.|..|.}, row 1 = {..|..|#}, row 2 = {..|#.|.}
        #[rustfmt::skip]
        let expected = [
            true, false, false,
            false, false, true,
            false, true, false,
        ];
        assert_eq!(wire.cells(), expected);
    }

    #[test]
    fn empty_masks_have_no_wire_mask_and_no_shape() {
        let empty = mask(&["...", "..."]);
        assert_eq!(WireMask::from_mask(&empty, one()), Ok(None));
        assert_eq!(shape(&empty), Ok(None));
    }

    #[test]
    fn masks_wider_than_u16_coordinates_are_refused() {
        let wide = Mask::from_fn(70_000, 1, |x, _| x == 3);
        assert_eq!(shape(&wide), Err(TooLarge(70_000, 1)));
    }
}
